package collab_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"collabd/collab"
	"collabd/nats"
	"collabd/nats/natstest"
)

// A join still waiting for the other instances' presence when the drain starts fails with
// the restart code instead of becoming a member that nobody closes.
func TestJoinWaitingOnSyncFailsOnDrain(t *testing.T) {
	ns := natstest.NewServer(t)
	h, _ := newHub(t, ns.URL(), collab.Config{SyncTimeout: 3 * time.Second})
	// An instance that heartbeats but never answers sync requests keeps the join waiting.
	bus, err := nats.Open(context.Background(), nats.Options{URL: ns.URL(), Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	defer bus.Close(context.Background())
	natstest.WaitFor(t, 5*time.Second, func() bool {
		_ = bus.Publish(bus.NodeSubject("hb"), []byte(`{"n":"mute"}`))
		return len(h.Peers()) == 1
	})
	type result struct {
		s   *collab.Session
		err error
	}
	done := make(chan result, 1)
	go func() {
		s, err := h.Join(context.Background(), collab.NewOutbox(0), collab.JoinOptions{Doc: "doc", User: "late", Present: true, Presence: true})
		done <- result{s, err}
	}()
	natstest.WaitFor(t, 5*time.Second, func() bool { return h.Docs() == 1 })
	h.Drain()
	select {
	case r := <-done:
		if !errors.Is(r.err, collab.ErrShutdown) {
			t.Fatalf("join during drain: got session %v, error %v; want error %v", r.s != nil, r.err, collab.ErrShutdown)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("join did not return")
	}
	if n := h.Sessions(); n != 0 {
		t.Fatalf("got %d sessions after the drain, want 0", n)
	}
}

// Close may be called from several goroutines at once (a signal and a deferred close).
func TestHubCloseTwiceConcurrently(t *testing.T) {
	ns := natstest.NewServer(t)
	h, _ := newHub(t, ns.URL(), collab.Config{})
	joinHub(t, h, "doc", "ann", 0)
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() { defer wg.Done(); h.Close() }()
	}
	wg.Wait()
	h.Resync() // after Close: nothing to do, and its timer must not fire into closed documents
}
