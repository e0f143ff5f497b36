//go:build cgo

// Linked into every test program: with CGO_ENABLED=1 this makes the binary a
// cgo one (dynamically linked against libc, threads started by
// pthread_create, so it runs with LD_PRELOAD); with CGO_ENABLED=0 the file
// is left out and the binary is static (it runs through the launcher).
package main

import "C"
