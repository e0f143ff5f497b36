// net/http server and client on loopback (issue 9 item 2): the netpoller
// (epoll), many goroutines across threads, keep-alive connections, request
// bodies. A fixed number of requests; the output does not depend on timing.
package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"
)

func main() {
	mux := http.NewServeMux()
	mux.HandleFunc("/square/", func(w http.ResponseWriter, r *http.Request) {
		n, err := strconv.Atoi(r.URL.Path[len("/square/"):])
		if err != nil {
			http.Error(w, "bad number", http.StatusBadRequest)
			return
		}
		fmt.Fprintf(w, "%d", n*n)
	})
	mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("X-Length", strconv.Itoa(len(b)))
		w.Write(bytes.ToUpper(b))
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Println("listen:", err)
		os.Exit(1)
	}
	srv := &http.Server{Handler: mux}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	base := "http://" + ln.Addr().String()
	client := &http.Client{Timeout: 30 * time.Second}

	const workers, each = 4, 50
	var sums [workers]int
	var failures [workers]int
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < each; i++ {
				n := w*each + i
				resp, err := client.Get(fmt.Sprintf("%s/square/%d", base, n))
				if err != nil {
					failures[w]++
					continue
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				v, err := strconv.Atoi(string(b))
				if err != nil || v != n*n {
					failures[w]++
				}
				sums[w] += v
			}
		}(w)
	}
	wg.Wait()
	total, bad := 0, 0
	for w := range sums {
		total += sums[w]
		bad += failures[w]
	}
	fmt.Printf("GET: %d requests, sum of squares %d, failures %d\n", workers*each, total, bad)

	body := bytes.Repeat([]byte("usertrap go http "), 4096)
	resp, err := client.Post(base+"/echo", "text/plain", bytes.NewReader(body))
	if err != nil {
		fmt.Println("POST:", err)
		os.Exit(1)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	fmt.Printf("POST: status %d, X-Length %s, body upper-cased %v\n", resp.StatusCode, resp.Header.Get("X-Length"), bytes.Equal(b, bytes.ToUpper(body)))

	resp, err = client.Get(base + "/square/x")
	if err == nil {
		fmt.Printf("bad request: status %d\n", resp.StatusCode)
		resp.Body.Close()
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	fmt.Println("shutdown:", srv.Shutdown(ctx))
	fmt.Println("serve returned:", <-done)
}
