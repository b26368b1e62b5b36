package web_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"collabd/collab/web"
	"collabd/nats/natstest"
)

// A connection's writer runs only while there is something to send: it starts for a burst,
// ends, lets go of what the burst grew once the connection has been idle for a ping, and
// starts again for the next burst. Everything arrives, in order, across those cycles, and
// the pings keep going while nothing else is sent.
func TestWriterStartsAndEndsWithTheWork(t *testing.T) {
	in := startCluster(t, 1, instanceOpts{web: web.Config{PingInterval: 20 * time.Millisecond}})[0]
	a := join(t, in, "bursts", "ann")
	b := join(t, in, "bursts", "bob")
	a.until("presence.diff", nil)
	b.expect("presence.state")

	big := strings.Repeat("x", 3000) // a burst grows the writer's frame buffer past what it keeps
	n := 0
	for cycle := range 3 {
		for i := range 20 {
			b.send("broadcast", "", map[string]any{"event": "burst", "data": map[string]any{"n": n, "pad": big}})
			n++
			if i%5 == 4 {
				b.send("cursor", "", map[string]int{"x": cycle, "y": i})
			}
		}
		want, cursor := n-20, fmt.Sprintf(`{"x":%d,"y":19}`, cycle)
		for seenCursor := false; want < n || !seenCursor; {
			switch f := a.next(5 * time.Second); f.Type {
			case "broadcast":
				var p struct{ Data struct{ N int } }
				if err := json.Unmarshal(f.Payload, &p); err != nil || p.Data.N != want {
					t.Fatalf("cycle %d: got broadcast %.80s, want n=%d", cycle, f.Payload, want)
				}
				want++
			case "cursors":
				for _, e := range decodeCursors(t, f.Payload) {
					if e.ID != b.id {
						t.Fatalf("cursors entry of %s, want only bob's: %s", e.ID, f.Payload)
					}
					seenCursor = seenCursor || string(e.Data) == cursor
				}
			}
		}
		// Idle for a few pings: the writer ends between them and trims what it held.
		seen := a.pings.Load()
		natstest.WaitFor(t, 5*time.Second, func() bool { return a.pings.Load() >= seen+3 })
	}
	if b.pings.Load() == 0 {
		t.Fatal("the sender was never pinged")
	}
	a.quiet("broadcast", 50*time.Millisecond)
}
