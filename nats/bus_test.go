package nats_test

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"collabd/nats"
	"collabd/nats/natstest"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func open(t *testing.T, o nats.Options) *nats.Bus {
	t.Helper()
	o.Logger = quiet()
	b, err := nats.Open(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		b.Close(ctx)
	})
	return b
}

func TestDocSubjectIsSafeAndReversible(t *testing.T) {
	b := open(t, nats.Options{Listen: "off"})
	for _, doc := range []string{"a", "realtime:room-1", "a.b.c", "x>y", "sp ace", "*", strings.Repeat("z", 128), "ünï"} {
		subj := b.DocSubject(doc, "cursor")
		token := strings.TrimSuffix(strings.TrimPrefix(subj, "collab.doc."), ".cursor")
		if doc != nats.AnyDoc && strings.ContainsAny(token, ".*> \t\r\n") {
			t.Errorf("DocSubject(%q) = %q: the document token holds a subject metacharacter", doc, subj)
		}
		if doc == nats.AnyDoc {
			if subj != "collab.doc.*.cursor" {
				t.Errorf("DocSubject(AnyDoc) = %q, want the wildcard", subj)
			}
			continue
		}
		if got, ok := b.DocFromSubject(subj); !ok || got != doc {
			t.Errorf("DocFromSubject(%q) = %q, %v; want %q", subj, got, ok, doc)
		}
	}
	if _, ok := b.DocFromSubject("other.doc.x.cursor"); ok {
		t.Error("DocFromSubject accepted a subject of another prefix")
	}
}

// Two buses on an embedded server: messages cross, but a bus never hears itself (NoEcho).
func TestEmbeddedServerAndNoEcho(t *testing.T) {
	a := open(t, nats.Options{Listen: "127.0.0.1:0"})
	if a.ListenURL() == "" {
		t.Fatal("embedded server does not listen")
	}
	b := open(t, nats.Options{URL: a.ListenURL()})
	got := make(chan string, 4)
	for _, bus := range []*nats.Bus{a, b} {
		name := "a"
		if bus == b {
			name = "b"
		}
		if _, err := bus.Subscribe("t.>", func(subject string, data []byte) { got <- name + ":" + string(data) }); err != nil {
			t.Fatal(err)
		}
		if err := bus.Flush(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.Publish("t.x", []byte("from-a")); err != nil {
		t.Fatal(err)
	}
	if m := <-got; m != "b:from-a" {
		t.Fatalf("got %q, want b to hear a", m)
	}
	if err := b.Publish("t.x", []byte("from-b")); err != nil {
		t.Fatal(err)
	}
	if m := <-got; m != "a:from-b" {
		t.Fatalf("got %q, want a to hear b (and neither to hear itself)", m)
	}
}

// An external server that is not up yet: the bus opens disconnected, connects when the
// server starts, and runs the reconnect callbacks then.
func TestExternalServerLateAndRestarted(t *testing.T) {
	ns := natstest.NewServer(t)
	ns.Stop()
	b := open(t, nats.Options{URL: ns.URL()})
	if b.Connected() {
		t.Fatal("connected to a stopped server")
	}
	calls := make(chan struct{}, 4)
	b.OnReconnect(func() { calls <- struct{}{} })
	ns.Start()
	natstest.WaitFor(t, 10*time.Second, b.Connected)
	select {
	case <-calls:
	case <-time.After(5 * time.Second):
		t.Fatal("no callback on the first connection")
	}
	if n := b.Reconnects(); n != 0 {
		t.Errorf("Reconnects() = %d after a late first connection, want 0", n)
	}
	ns.Stop()
	natstest.WaitFor(t, 10*time.Second, func() bool { return !b.Connected() })
	ns.Start()
	natstest.WaitFor(t, 10*time.Second, b.Connected)
	select {
	case <-calls:
	case <-time.After(5 * time.Second):
		t.Fatal("no callback on reconnection")
	}
	if n := b.Reconnects(); n != 1 {
		t.Errorf("Reconnects() = %d after one reconnection, want 1", n)
	}
}

func TestEmbeddedPortInUse(t *testing.T) {
	a := open(t, nats.Options{Listen: "127.0.0.1:0"})
	addr := strings.TrimPrefix(a.ListenURL(), "nats://")
	_, err := nats.Open(context.Background(), nats.Options{Listen: addr, Logger: quiet()})
	if err == nil || !strings.Contains(err.Error(), "port in use") {
		t.Fatalf("second embedded server on %s: err %v, want a clear port-in-use error", addr, err)
	}
}
