//go:build pprof

// Built with -tags pprof (profiling builds only, see docs/benchmarks.md), collabd serves
// net/http/pprof on the address in COLLABD_PPROF (for example 127.0.0.1:6060).
package main

import (
	"net/http"
	_ "net/http/pprof"
	"os"
)

func init() {
	if addr := os.Getenv("COLLABD_PPROF"); addr != "" {
		go func() { _ = http.ListenAndServe(addr, nil) }() // lives as long as the process
	}
}
