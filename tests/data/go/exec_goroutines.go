// os/exec from several goroutines at once (issue 9 item 2): every start is
// Go's clone(CLONE_VM|CLONE_VFORK) on the parent's stack, then pipes,
// descriptors, a working directory and the environment set up in the child,
// and execve (or its failure reported back through a pipe). Output is in a
// fixed order, whatever order the goroutines finished in.
package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
)

const goroutines = 6
const rounds = 8

func one(g, i int) string {
	switch i % 6 {
	case 0: // stdout through a pipe
		out, err := exec.Command("/bin/echo", "goroutine", fmt.Sprint(g), "round", fmt.Sprint(i)).Output()
		if err != nil {
			return "echo: " + err.Error()
		}
		return "echo: " + strings.TrimSpace(string(out))
	case 1: // exit status
		err := exec.Command("/bin/sh", "-c", fmt.Sprintf("exit %d", g+i)).Run()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return fmt.Sprintf("sh exit: %d", ee.ExitCode())
		}
		return fmt.Sprintf("sh exit: err=%v", err)
	case 2: // stdin and stdout
		c := exec.Command("/bin/cat")
		c.Stdin = strings.NewReader(strings.Repeat(fmt.Sprintf("%d-%d ", g, i), 1000))
		out, err := c.Output()
		return fmt.Sprintf("cat: %d bytes, err=%v, same=%v", len(out), err, bytes.Equal(out, []byte(strings.Repeat(fmt.Sprintf("%d-%d ", g, i), 1000))))
	case 3: // environment and working directory
		c := exec.Command("/bin/sh", "-c", "echo $GO_TEST_VALUE $(pwd)")
		c.Env = []string{"GO_TEST_VALUE=value-" + fmt.Sprint(g*100+i), "PATH=/usr/bin:/bin"}
		c.Dir = "/"
		out, err := c.CombinedOutput()
		return fmt.Sprintf("env+dir: %s err=%v", strings.TrimSpace(string(out)), err)
	case 4: // execve fails in the child: the error comes back through a pipe
		err := exec.Command("/nonexistent/go-test-binary").Run()
		return fmt.Sprintf("missing: %v", err)
	default: // stderr and stdout separately
		c := exec.Command("/bin/sh", "-c", "echo out; echo err >&2; exit 3")
		var so, se bytes.Buffer
		c.Stdout, c.Stderr = &so, &se
		err := c.Run()
		return fmt.Sprintf("split: out=%q err=%q status=%v", so.String(), se.String(), err)
	}
}

func main() {
	var results [goroutines][rounds]string
	var wg sync.WaitGroup
	for g := 0; g < goroutines; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < rounds; i++ {
				results[g][i] = one(g, i)
			}
		}(g)
	}
	wg.Wait()
	for g := range results {
		for i, r := range results[g] {
			fmt.Printf("%d.%d %s\n", g, i, r)
		}
	}
	// Started and waited for separately, with a pipe read while it runs.
	c := exec.Command("/bin/sh", "-c", "for i in 1 2 3; do echo line $i; done")
	pipe, err := c.StdoutPipe()
	if err != nil {
		fmt.Println("StdoutPipe:", err)
		os.Exit(1)
	}
	if err := c.Start(); err != nil {
		fmt.Println("Start:", err)
		os.Exit(1)
	}
	var buf bytes.Buffer
	buf.ReadFrom(pipe)
	fmt.Printf("pipe: %q wait=%v\n", buf.String(), c.Wait())
}
