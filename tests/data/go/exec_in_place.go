// syscall.Exec (execve on the calling thread, no fork). Failed execs return
// to the program, which must go on unharmed: a missing file, and an
// argument list too long (E2BIG), which the interposer only learns from the
// real execve, after preparing everything for the launcher. Its handler
// runs on the thread's alternate stack: Go's own, 32 KiB, allocated from the
// heap with live objects right below it. The last exec replaces the program.
package main

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync"
	"syscall"
)

func main() {
	big := strings.Repeat("x", 100000)
	args := []string{"true"}
	for i := 0; i < 40; i++ {
		args = append(args, big)
	}
	for i := 0; i < 10; i++ {
		e1 := syscall.Exec("/nonexistent/go-test-binary", []string{"x"}, os.Environ())
		e2 := syscall.Exec("/bin/true", args, os.Environ())
		if i == 0 {
			fmt.Println("missing file:", e1)
			fmt.Println("argument list of 4 MB:", e2)
		}
	}
	// Work that touches the runtime's state: goroutines, allocation, GC.
	var wg sync.WaitGroup
	var mu sync.Mutex
	total := 0
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			var keep [][]byte
			for i := 0; i < 200; i++ {
				keep = append(keep, make([]byte, 1024+g))
			}
			runtime.GC()
			mu.Lock()
			total += len(keep)
			mu.Unlock()
		}(g)
	}
	wg.Wait()
	fmt.Println("still running after 20 failed execs;", total, "allocations")
	err := syscall.Exec("/bin/echo", []string{"echo", "replaced by echo"}, os.Environ())
	fmt.Println("exec failed:", err)
	os.Exit(1)
}
