package collab_test

import (
	"encoding/json"
	"sync"
	"testing"
	"time"

	"collabd/collab"
	"collabd/nats/natstest"
)

// Broadcasts sent while NATS is away reach the members on the other instance once it is
// back, each once and in order: the sender keeps its recent broadcasts, and a receiver that
// sees a gap (or learns of a missed tail from a snapshot) asks for them again.
func TestBroadcastsSurviveNATSOutage(t *testing.T) {
	ns := natstest.NewServer(t)
	h1, bus1 := newHub(t, ns.URL(), collab.Config{MessageRate: 1e6, MessageBurst: 1e6})
	h2, bus2 := newHub(t, ns.URL(), collab.Config{})
	peersKnown(t, 1, h1, h2)
	a := joinHub(t, h1, "doc", "ann", 0)
	b := joinHub(t, h2, "doc", "bob", 0)
	b.waitState(map[string]string{a.s.ID: "ann", b.s.ID: "bob"})

	var mu sync.Mutex
	var got []int
	collect := func() {
		events, _ := b.out.Drain(nil, nil)
		mu.Lock()
		defer mu.Unlock()
		for _, ev := range events {
			if ev.Kind == collab.EventBroadcast {
				var n int
				if err := json.Unmarshal(ev.Data, &n); err != nil {
					t.Errorf("broadcast data %s: %v", ev.Data, err)
				}
				got = append(got, n)
			}
		}
	}
	sent := 0
	send := func(until func() bool) {
		for !until() {
			if ce := a.s.Handle(collab.Command{Kind: collab.CmdBroadcast, Name: "n", Data: json.RawMessage(itoa(sent))}); ce != nil {
				t.Fatal(ce)
			}
			sent++
			collect()
			time.Sleep(2 * time.Millisecond) // a steady sender, about 400 a second
		}
	}
	deadline := func(d time.Duration) func() bool {
		end := time.Now().Add(d)
		return func() bool { return time.Now().After(end) }
	}
	send(deadline(200 * time.Millisecond))
	ns.Stop()
	send(deadline(time.Second))
	ns.Start()
	send(func() bool { return bus1.Connected() && bus2.Connected() })
	send(deadline(300 * time.Millisecond))

	end := time.Now().Add(10 * time.Second)
	for {
		collect()
		mu.Lock()
		n := len(got)
		mu.Unlock()
		if n >= sent {
			break
		}
		if time.Now().After(end) {
			t.Fatalf("received %d of %d broadcasts within 10 s", n, sent)
		}
		time.Sleep(5 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != sent {
		t.Fatalf("received %d broadcasts, sent %d", len(got), sent)
	}
	for i, n := range got {
		if n != i {
			t.Fatalf("broadcast %d is %d: want every broadcast once, in order (got %v...)", i, n, got[max(0, i-3):min(len(got), i+3)])
		}
	}
	t.Logf("%d broadcasts across a 1 s NATS outage, all delivered in order", sent)
}
