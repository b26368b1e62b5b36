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

// main turns the first SIGINT or SIGTERM into the end of run's context (a graceful
// shutdown) and a second into the end of the drain delay (the clients are closed at once,
// still gracefully).
func main() {
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	ctx, shutdown := context.WithCancel(context.Background())
	hurry, cutDelay := context.WithCancel(context.Background())
	go func() { // ends at the second signal or when main returns
		for _, end := range []context.CancelFunc{shutdown, cutDelay} {
			select {
			case <-sigs:
				end()
			case <-hurry.Done():
				return
			}
		}
	}()
	err := run(withSkipDelay(ctx, hurry.Done()), os.Args[1:], os.Getenv, os.Stderr)
	cutDelay()
	signal.Stop(sigs)
	if err != nil {
		fmt.Fprintln(os.Stderr, "collabd:", err)
		os.Exit(1)
	}
}

type skipDelayKey struct{}

// withSkipDelay returns ctx carrying skip: when skip closes, a shutdown under way ends its
// drain delay at once.
func withSkipDelay(ctx context.Context, skip <-chan struct{}) context.Context {
	return context.WithValue(ctx, skipDelayKey{}, skip)
}

// skipDelay is the channel withSkipDelay put in ctx, or nil (never ready) when there is none.
func skipDelay(ctx context.Context) <-chan struct{} {
	skip, _ := ctx.Value(skipDelayKey{}).(<-chan struct{})
	return skip
}
