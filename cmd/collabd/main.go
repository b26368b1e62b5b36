// Command collabd serves live cursors, presence and broadcasts for collaborative documents
// over WebSocket, shared between instances through NATS. With no NATS URL it embeds a
// nats-server, so one command runs a complete system.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "collabd:", err)
		os.Exit(1)
	}
}
