package main

import (
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"testing"
	"time"

	"collabd/collab"
	"collabd/collab/web"
	"collabd/nats"
	"collabd/nats/natstest"
)

// startCollabd runs one collabd instance (bus, hub, web server) on loopback and returns its
// ws:// base URL; it stops when the test ends.
func startCollabd(t *testing.T, natsURL string) string {
	t.Helper()
	ctx := context.Background()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	bus, err := nats.Open(ctx, nats.Options{URL: natsURL, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	hub, err := collab.NewHub(ctx, bus, collab.Config{Heartbeat: 100 * time.Millisecond, DownAfter: 400 * time.Millisecond, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	srv := web.New(hub, web.Config{Logger: quiet, Ready: bus.Connected})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		hub.Drain()
		if err := srv.Shutdown(5 * time.Second); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		<-done
		hub.Close()
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		bus.Close(cctx)
	})
	return "ws://" + ln.Addr().String()
}

// TestFanoutAgainstCollabd runs a short fan-out against two real collabd instances on one
// NATS: every client connects, positions cross between the instances, and the summary
// carries the figures. Only their presence is checked: figures are reported, not asserted.
func TestFanoutAgainstCollabd(t *testing.T) {
	ns := natstest.NewServer(t)
	a, b := startCollabd(t, ns.URL()), startCollabd(t, ns.URL())
	pid := strconv.Itoa(os.Getpid())
	cfg, err := parseFlags([]string{"-url", a + "," + b, "-docs", "2", "-clients", "4", "-rate", "20",
		"-warmup", "200ms", "-duration", "1s", "-drain", "500ms", "-server-pid", pid, "-quiet"})
	if err != nil {
		t.Fatal(err)
	}
	ad, err := newAdapter(cfg.adapter, cfg.adapterOpts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s := newRun(cfg, ad).execute(ctx)
	if s.Connected != 8 {
		t.Fatalf("connected %d, want 8 (errors %+v)", s.Connected, s.Errors)
	}
	if s.Sent == 0 || s.Delivered == 0 || s.DeliveryRatio == 0 {
		t.Fatalf("sent %d, delivered %d, ratio %v: nothing went through", s.Sent, s.Delivered, s.DeliveryRatio)
	}
	if s.Errors.Server+s.Errors.Decode+s.Errors.Write+s.UnexpectedCloses != 0 {
		t.Errorf("errors: %+v, unexpected closes %d", s.Errors, s.UnexpectedCloses)
	}
	if s.LatencyMS == nil || s.Server == nil || s.ServerUSPerDelivery <= 0 {
		t.Errorf("summary lacks latency or server figures: %+v %+v %v", s.LatencyMS, s.Server, s.ServerUSPerDelivery)
	}
}

// TestIdleAgainstCollabd holds idle connections and reports memory per connection.
func TestIdleAgainstCollabd(t *testing.T) {
	ns := natstest.NewServer(t)
	u := startCollabd(t, ns.URL())
	cfg, err := parseFlags([]string{"-url", u, "-mode", "idle", "-docs", "3", "-clients", "5",
		"-settle", "100ms", "-duration", "100ms", "-server-pid", strconv.Itoa(os.Getpid()), "-quiet"})
	if err != nil {
		t.Fatal(err)
	}
	ad, err := newAdapter(cfg.adapter, cfg.adapterOpts)
	if err != nil {
		t.Fatal(err)
	}
	s := newRun(cfg, ad).execute(context.Background())
	if s.Connected != 15 || s.Idle == nil || s.Idle.Connections != 15 {
		t.Fatalf("connected %d, idle %+v: want 15 connections held", s.Connected, s.Idle)
	}
}
