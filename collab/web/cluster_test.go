package web_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"collabd/nats/natstest"
)

// Two instances on one NATS: cursors, broadcasts and presence cross both ways.
func TestTwoInstances(t *testing.T) {
	ins := startCluster(t, 2, instanceOpts{})
	a := join(t, ins[0], "shared", "ann")
	a.expect("presence.state")
	b := join(t, ins[1], "shared", "bob")
	// bob's first state already holds ann, who joined on the other instance.
	st := decodeMembers(t, b.expect("presence.state").Payload)
	if len(st) != 2 || st[a.id].User != "ann" || st[b.id].User != "bob" {
		t.Fatalf("bob's state %v, want ann (instance A) and bob", st)
	}
	if d := decodeDiff(t, a.until("presence.diff", nil).Payload); d.Joins[b.id].User != "bob" {
		t.Fatalf("ann's diff %+v, want bob's join", d)
	}

	a.send("presence.track", "", map[string]string{"name": "Ann"})
	d := decodeDiff(t, b.until("presence.diff", nil).Payload)
	if string(d.Joins[a.id].State) != `{"name":"Ann"}` || len(d.Leaves) != 0 {
		t.Fatalf("bob's diff %+v, want ann's update as a join only", d)
	}

	for _, pair := range []struct {
		from, to *client
	}{{a, b}, {b, a}} {
		pair.from.send("cursor", "", map[string]float64{"x": 0.5, "y": 0.25})
		f := pair.to.until("cursors", nil)
		cs := decodeCursors(t, f.Payload)
		if len(cs) != 1 || cs[0].ID != pair.from.id || string(cs[0].Data) != `{"x":0.5,"y":0.25}` {
			t.Fatalf("cursors %s, want the other instance's member's cursor", f.Payload)
		}
		for i := range 20 {
			pair.from.send("broadcast", "", map[string]any{"event": "n", "data": i})
		}
		for i := range 20 {
			f := pair.to.until("broadcast", nil)
			var p struct {
				From string
				Data int
			}
			json.Unmarshal(f.Payload, &p)
			if p.From != pair.from.id || p.Data != i {
				t.Fatalf("broadcast %d across instances: %s", i, f.Payload)
			}
		}
	}

	// A newcomer on B gets A's member's last cursor.
	c := join(t, ins[1], "shared", "cy")
	c.expect("presence.state")
	natstest.WaitFor(t, 5*time.Second, func() bool {
		f := c.until("cursors", nil)
		for _, e := range decodeCursors(t, f.Payload) {
			if e.ID == a.id {
				return true
			}
		}
		return false
	})

	// Leaving crosses too.
	a.ws.Close()
	for _, o := range []*client{b, c} {
		o.until("presence.diff", func(f frame) bool {
			_, ok := decodeDiff(t, f.Payload).Leaves[a.id]
			return ok
		})
	}
}

// The instance drains: its clients get 1012 and the other instance sees them leave at
// once, long before the down-after period.
func TestDrainClosesWith1012AndLeavesAtOnce(t *testing.T) {
	o := instanceOpts{}
	o.hub.Heartbeat, o.hub.DownAfter = time.Second, time.Minute
	ins := startCluster(t, 2, o)
	a := join(t, ins[0], "drain", "ann")
	b := join(t, ins[1], "drain", "bob")
	a.until("presence.diff", nil)
	ins[1].hub.Drain()
	if ce := b.waitClose(5 * time.Second); ce == nil || ce.Code != 1012 {
		t.Fatalf("close %v, want 1012", ce)
	}
	a.until("presence.diff", func(f frame) bool {
		_, ok := decodeDiff(t, f.Payload).Leaves[b.id]
		return ok
	})
}

// A dead instance (silent on the bus) loses its members everywhere after down-after.
func TestSilentInstanceEvicted(t *testing.T) {
	ins := startCluster(t, 2, instanceOpts{})
	a := join(t, ins[0], "evict", "ann")
	b := join(t, ins[1], "evict", "bob")
	a.until("presence.diff", nil)
	// Cut B off the bus without a goodbye: its heartbeats stop, as when it crashes.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	ins[1].bus.Close(ctx)
	a.until("presence.diff", func(f frame) bool {
		_, ok := decodeDiff(t, f.Payload).Leaves[b.id]
		return ok
	})
	t.Logf("evicted after %s (heartbeat 100ms, down-after 400ms)", time.Since(start).Round(time.Millisecond))
}
