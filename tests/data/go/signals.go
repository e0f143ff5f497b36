// Go's own signal handling under the interposer (issue 9 item 2): every
// handler is installed with SA_ONSTACK and runs on the 32 KiB alternate
// stack Go gives each thread; os/signal.Notify; asynchronous preemption
// (sysmon sends SIGURG to a goroutine that never yields); a nil dereference
// turned into a recoverable panic by Go's SIGSEGV handler; the garbage
// collector stopping goroutines that spin (it preempts them with signals).
package main

import (
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

type node struct{ next *node }

//go:noinline
func deref(p *node) *node { return p.next }

func notify() {
	c := make(chan os.Signal, 64)
	signal.Notify(c, syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGHUP, syscall.SIGINT)
	counts := map[os.Signal]int{}
	for _, s := range []syscall.Signal{syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGHUP, syscall.SIGINT} {
		for i := 0; i < 10; i++ {
			syscall.Kill(os.Getpid(), s)
			select {
			case got := <-c:
				counts[got]++
			case <-time.After(20 * time.Second):
				fmt.Println("no signal delivered for", s)
				os.Exit(1)
			}
		}
	}
	signal.Stop(c)
	fmt.Printf("notify: SIGUSR1 %d, SIGUSR2 %d, SIGHUP %d, SIGINT %d\n",
		counts[syscall.SIGUSR1], counts[syscall.SIGUSR2], counts[syscall.SIGHUP], counts[syscall.SIGINT])

	// Ignored, then default again for a signal that does not kill.
	signal.Ignore(syscall.SIGUSR1)
	syscall.Kill(os.Getpid(), syscall.SIGUSR1)
	signal.Reset(syscall.SIGWINCH)
	syscall.Kill(os.Getpid(), syscall.SIGWINCH)
	fmt.Println("ignored SIGUSR1 and default SIGWINCH: still running")
}

// With one P, main can only run again once the spinning goroutine is
// preempted, and it never reaches a preemption point on its own.
func preemption() {
	prev := runtime.GOMAXPROCS(1)
	var stop, started int32
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		atomic.StoreInt32(&started, 1)
		n := 0
		for atomic.LoadInt32(&stop) == 0 {
			n++
		}
	}()
	for atomic.LoadInt32(&started) == 0 {
		runtime.Gosched()
	}
	time.Sleep(20 * time.Millisecond)
	atomic.StoreInt32(&stop, 1)
	wg.Wait()
	runtime.GOMAXPROCS(prev)
	fmt.Println("preemption: the spinning goroutine was preempted")
}

func nilPanic() {
	defer func() {
		r := recover()
		fmt.Printf("nil dereference recovered: %v\n", r)
	}()
	debug.SetPanicOnFault(false)
	var p *node
	deref(p)
}

func gcWhileSpinning() {
	var stop int32
	var wg sync.WaitGroup
	for i := 0; i < 2; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			x := 0
			for atomic.LoadInt32(&stop) == 0 {
				x++
			}
		}()
	}
	var keep [][]byte
	for i := 0; i < 40; i++ {
		keep = append(keep, make([]byte, 64<<10))
		if len(keep) > 16 {
			keep = keep[1:]
		}
		if i%4 == 0 {
			runtime.GC()
		}
	}
	atomic.StoreInt32(&stop, 1)
	wg.Wait()
	fmt.Printf("gc: 10 collections forced while 2 goroutines spun, kept %d buffers\n", len(keep))
}

func main() {
	notify()
	preemption()
	nilPanic()
	gcWhileSpinning()
	fmt.Println("done")
}
