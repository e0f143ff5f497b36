// Goroutines handing 20,000 values through a channel, each read of a value
// followed by a 1-byte read of /dev/zero (Go's own syscall stubs: no libc),
// for the fast path's share (tests/go.rs: go_reads_are_fast). One read
// first, alone: its trap patches the site Go's reads share, so the count
// of slow reads does not depend on how long a contended patch takes
// (while one thread patches, the others' reads at that site stay slow).
package main

import (
	"fmt"
	"os"
	"sync"
)

func main() {
	warm, err := os.Open("/dev/zero")
	if err != nil {
		panic(err)
	}
	if _, err := warm.Read(make([]byte, 1)); err != nil {
		panic(err)
	}
	warm.Close()
	ch := make(chan int)
	var wg sync.WaitGroup
	var mu sync.Mutex
	zeros := 0
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 1)
			f, err := os.Open("/dev/zero")
			if err != nil {
				panic(err)
			}
			n := 0
			for range ch {
				if k, err := f.Read(buf); k == 1 && err == nil && buf[0] == 0 {
					n++
				}
			}
			f.Close()
			mu.Lock()
			zeros += n
			mu.Unlock()
		}()
	}
	for i := 0; i < 20000; i++ {
		ch <- i
	}
	close(ch)
	wg.Wait()
	fmt.Println("zero bytes read:", zeros)
}
