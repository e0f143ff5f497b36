// syscall.Exec (execve on the calling thread, no fork): a failing one
// returns to the program, which must go on unharmed; the last one replaces
// it. The interposer emulates execve in its handler, which Go runs on its
// own 32 KiB alternate stack.
package main

import (
	"fmt"
	"os"
	"runtime"
	"syscall"
)

func main() {
	for i := 0; i < 20; i++ {
		err := syscall.Exec("/nonexistent/go-test-binary", []string{"x"}, os.Environ())
		if i == 0 {
			fmt.Println("failed exec:", err)
		}
		runtime.GC()
	}
	garbage := make([][]byte, 0)
	for i := 0; i < 1000; i++ {
		garbage = append(garbage, make([]byte, 1024))
	}
	runtime.GC()
	fmt.Println("still running after 20 failed execs;", len(garbage), "allocations")
	err := syscall.Exec("/bin/echo", []string{"echo", "replaced by echo"}, os.Environ())
	fmt.Println("exec failed:", err)
	os.Exit(1)
}
