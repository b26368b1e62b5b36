package web_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/fasthttp/websocket"

	"collabd/collab/web"
	"collabd/nats/natstest"
)

func TestJoinWelcomeStateAndDiff(t *testing.T) {
	in := startCluster(t, 1, instanceOpts{})[0]
	a := join(t, in, "doc-1", "ann")
	st := decodeMembers(t, a.expect("presence.state").Payload)
	if len(st) != 1 || st[a.id].User != "ann" || string(st[a.id].State) != "{}" {
		t.Fatalf("state %v, want only ann with {}", st)
	}

	b := join(t, in, "doc-1", "bob")
	st = decodeMembers(t, b.expect("presence.state").Payload)
	if len(st) != 2 || st[a.id].User != "ann" || st[b.id].User != "bob" {
		t.Fatalf("bob's state %v, want ann and bob", st)
	}
	d := decodeDiff(t, a.until("presence.diff", nil).Payload)
	if len(d.Joins) != 1 || d.Joins[b.id].User != "bob" || len(d.Leaves) != 0 {
		t.Fatalf("ann got diff %+v, want bob's join", d)
	}

	// An update is a join only.
	b.send("presence.track", "t1", map[string]any{"name": "Bob", "color": "#f00"})
	b.until("ok", func(f frame) bool { return f.Ref == "t1" })
	d = decodeDiff(t, a.until("presence.diff", nil).Payload)
	if len(d.Leaves) != 0 || string(d.Joins[b.id].State) != `{"color":"#f00","name":"Bob"}` && string(d.Joins[b.id].State) != `{"name":"Bob","color":"#f00"}` {
		t.Fatalf("update diff %+v, want a join with the new state and no leave", d)
	}

	// Untrack is a leave while staying connected.
	b.send("presence.untrack", "u1", nil)
	b.until("ok", func(f frame) bool { return f.Ref == "u1" })
	d = decodeDiff(t, a.until("presence.diff", nil).Payload)
	if _, ok := d.Leaves[b.id]; !ok || len(d.Joins) != 0 {
		t.Fatalf("untrack diff %+v, want bob's leave", d)
	}
	b.send("ping", "p1", map[string]int{"n": 7})
	if p := b.until("pong", nil); p.Ref != "p1" || string(p.Payload) != `{"n":7}` {
		t.Fatalf("pong %+v, want ref p1 and the ping's payload", p)
	}

	// Closing is a leave for everyone else.
	b.send("presence.track", "t2", map[string]any{"name": "Bob"})
	a.until("presence.diff", nil)
	b.ws.Close()
	d = decodeDiff(t, a.until("presence.diff", nil).Payload)
	if _, ok := d.Leaves[b.id]; !ok {
		t.Fatalf("diff %+v after bob closed, want bob's leave", d)
	}
}

func TestCursorsRelayBatchAndNoEcho(t *testing.T) {
	in := startCluster(t, 1, instanceOpts{})[0]
	a := join(t, in, "canvas", "ann")
	b := join(t, in, "canvas", "bob")
	a.until("presence.diff", nil)

	for i := range 50 {
		a.send("cursor", "", map[string]int{"x": i, "y": i})
	}
	var last int
	natstest.WaitFor(t, 5*time.Second, func() bool {
		f := b.until("cursors", nil)
		cs := decodeCursors(t, f.Payload)
		seen := map[string]bool{}
		for _, c := range cs {
			if seen[c.ID] {
				t.Fatalf("cursors frame %s has two entries of one sender", f.Payload)
			}
			seen[c.ID] = true
			if c.ID != a.id {
				t.Fatalf("cursor from %s, want only ann (%s)", c.ID, a.id)
			}
			var p struct{ X int }
			json.Unmarshal(c.Data, &p)
			last = p.X
		}
		return last == 49
	})
	// Never its own: by the time bob's cursor reaches ann, none of hers came back.
	b.send("cursor", "", map[string]int{"x": 1, "y": 1})
	cursorsUntil(t, a, b.id, `{"x":1,"y":1}`, a.id)

	// A newcomer starts with the last known cursors right after presence.state.
	c := join(t, in, "canvas", "cy")
	c.expect("presence.state")
	got := map[string]string{}
	for _, e := range decodeCursors(t, c.expect("cursors").Payload) {
		got[e.ID] = string(e.Data)
	}
	if len(got) != 2 || got[a.id] != `{"x":49,"y":49}` || got[b.id] != `{"x":1,"y":1}` {
		t.Fatalf("newcomer cursors %v, want ann's and bob's last", got)
	}

	// null hides the cursor, once: the second null hides nothing shown and is not relayed.
	a.send("cursor", "", nil)
	a.sendRaw([]byte(`{"type":"cursor","payload":null}`))
	a.send("ping", "p", nil) // its pong says both nulls were taken
	a.until("pong", nil)
	f := b.until("cursors", func(f frame) bool { return strings.Contains(string(f.Payload), "null") })
	if cs := decodeCursors(t, f.Payload); len(cs) != 1 || cs[0].ID != a.id {
		t.Fatalf("hide %s, want ann's only", f.Payload)
	}
	// A newcomer, who never saw ann's cursor, gets no hide for it: neither in its snapshot
	// nor after; and bob gets no second hide.
	d := join(t, in, "canvas", "dee")
	d.expect("presence.state")
	c.send("cursor", "", map[string]int{"x": 2, "y": 2})
	cursorsUntil(t, d, c.id, `{"x":2,"y":2}`, a.id)
	cursorsUntil(t, b, c.id, `{"x":2,"y":2}`, a.id)
}

// cursorsUntil reads c's frames until a cursors entry of sender from with data want, and
// fails if any cursors entry of sender never came before it.
func cursorsUntil(t *testing.T, c *client, from, want, never string) {
	t.Helper()
	c.until("cursors", func(f frame) bool {
		found := false
		for _, e := range decodeCursors(t, f.Payload) {
			if e.ID == never {
				t.Fatalf("unexpected cursors entry of %s: %s", never, f.Payload)
			}
			found = found || (e.ID == from && string(e.Data) == want)
		}
		return found
	})
}

func TestBroadcastOrderAndNoEcho(t *testing.T) {
	in := startCluster(t, 1, instanceOpts{})[0]
	a := join(t, in, "room", "ann")
	b := join(t, in, "room", "bob")
	const n = 90 // within the default burst of the message rate limit
	for i := range n {
		a.send("broadcast", fmt.Sprintf("r%d", i), map[string]any{"event": "tick", "data": i})
	}
	for i := range n {
		f := b.until("broadcast", nil)
		var p struct {
			From, Event string
			Data        int
		}
		json.Unmarshal(f.Payload, &p)
		if p.From != a.id || p.Event != "tick" || p.Data != i {
			t.Fatalf("broadcast %d: got %s, want tick %d from ann", i, f.Payload, i)
		}
	}
	for i := range n {
		if f := a.until("ok", nil); f.Ref != fmt.Sprintf("r%d", i) {
			t.Fatalf("ok %d has ref %q", i, f.Ref)
		}
	}
	a.quiet("broadcast", 100*time.Millisecond)
}

func TestErrorFrames(t *testing.T) {
	in := startCluster(t, 1, instanceOpts{})[0]
	a := join(t, in, "errs", "ann")
	a.expect("presence.state")
	cases := []struct {
		name, frame, ref, code string
	}{
		{"malformed JSON", `{"type":`, "", "bad_json"},
		{"not an object", `[1,2]`, "", "bad_json"},
		{"no type", `{"ref":"r1"}`, "r1", "bad_json"},
		{"unknown type", `{"type":"dance","ref":"r2"}`, "r2", "unknown_type"},
		{"cursor not an object", `{"type":"cursor","ref":"r3","payload":[1]}`, "r3", "bad_payload"},
		{"cursor too large", `{"type":"cursor","ref":"r4","payload":{"s":"` + strings.Repeat("x", 600) + `"}}`, "r4", "payload_too_large"},
		{"state too large", `{"type":"presence.track","ref":"r5","payload":{"s":"` + strings.Repeat("x", 5000) + `"}}`, "r5", "payload_too_large"},
		{"state not an object", `{"type":"presence.track","ref":"r6","payload":"me"}`, "r6", "bad_payload"},
		{"broadcast without event", `{"type":"broadcast","ref":"r7","payload":{"data":1}}`, "r7", "bad_payload"},
		{"broadcast too large", `{"type":"broadcast","ref":"r8","payload":{"event":"e","data":"` + strings.Repeat("x", 17000) + `"}}`, "r8", "payload_too_large"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a.t = t
			a.sendRaw([]byte(tc.frame))
			f := a.until("error", nil)
			var p struct{ Code, Message string }
			json.Unmarshal(f.Payload, &p)
			if p.Code != tc.code || f.Ref != tc.ref || p.Message == "" {
				t.Fatalf("got error ref %q %+v, want ref %q code %s with a message", f.Ref, p, tc.ref, tc.code)
			}
		})
	}
	// Still connected and working.
	a.t = t
	a.send("ping", "alive", nil)
	a.until("pong", nil)
}

func TestRepeatedBadFramesClose4000(t *testing.T) {
	in := startCluster(t, 1, instanceOpts{})[0]
	a := join(t, in, "bad", "ann")
	other := join(t, in, "bad", "bob")
	a.sendUntilClosed([]byte(`nonsense`), 30)
	if ce := a.waitClose(5 * time.Second); ce == nil || ce.Code != 4000 {
		t.Fatalf("close %v, want 4000", ce)
	}
	other.send("ping", "still", nil)
	other.until("pong", nil)
}

func TestFrameTooLargeCloses1009(t *testing.T) {
	in := startCluster(t, 1, instanceOpts{})[0]
	a := join(t, in, "big", "ann")
	// The write may fail: the server stops reading at the limit.
	_ = a.ws.WriteMessage(websocket.TextMessage, []byte(`{"type":"broadcast","payload":{"event":"e","data":"`+strings.Repeat("x", 64<<10)+`"}}`))
	if ce := a.waitClose(5 * time.Second); ce == nil || ce.Code != 1009 {
		t.Fatalf("close %v, want 1009", ce)
	}
}

func TestRateLimit(t *testing.T) {
	in := startCluster(t, 1, instanceOpts{})[0]
	a := join(t, in, "fast", "ann")
	for range 300 { // over the default burst of 200
		a.send("broadcast", "", map[string]any{"event": "spam"})
	}
	f := a.until("error", nil)
	if !strings.Contains(string(f.Payload), `"rate_limited"`) {
		t.Fatalf("error %s, want rate_limited", f.Payload)
	}
	// Keeping it up ends the connection.
	for i := 0; i < 5000; i++ {
		if err := a.ws.WriteMessage(websocket.TextMessage, []byte(`{"type":"cursor","payload":{"x":1}}`)); err != nil {
			break
		}
	}
	if ce := a.waitClose(5 * time.Second); ce == nil || ce.Code != 4029 {
		t.Fatalf("close %v, want 4029", ce)
	}
}

func TestBadDocumentIDs(t *testing.T) {
	in := startCluster(t, 1, instanceOpts{})[0]
	for _, id := range []string{"a%20b", "a%2Fb", strings.Repeat("x", 129), "caf%C3%A9", "a*b", "a%3Eb"} {
		_, resp, err := dial(t, in, "/ws/"+id, nil)
		if err == nil || resp == nil || resp.StatusCode != http.StatusBadRequest {
			t.Errorf("doc %q: got %v %v, want HTTP 400", id, resp, err)
		}
	}
	// A plain HTTP request learns the same, with the reason in the body.
	resp, err := http.Get(in.url + "/ws/a%20b")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "document id") {
		t.Errorf("plain GET of a bad id: %d %q, want 400 naming the document id", resp.StatusCode, body)
	}
	for _, id := range []string{"realtime:room-1", "a.b_c-d", strings.Repeat("x", 128)} {
		c := join(t, in, id, "u")
		c.expect("presence.state")
	}
}

func TestSlowConsumerClosed4008(t *testing.T) {
	// The client reads again within CloseTimeout: it reads what was on its way, then 4008.
	o := instanceOpts{web: web.Config{QueueBytes: 64 << 10, CloseTimeout: time.Minute}}
	o.hub.MessageRate, o.hub.MessageBurst = 1e6, 1e6 // the fast sender must not be limited
	in := startCluster(t, 1, o)[0]
	slow := join(t, in, "slow", "slow")
	// The slow client stops reading: its test reader is parked by filling the socket.
	fast := join(t, in, "slow", "fast")
	watcher := join(t, in, "slow", "watcher")
	slow.pause()
	blob := strings.Repeat("y", 8000)
	sent := 0
	natstest.WaitFor(t, 20*time.Second, func() bool {
		fast.send("broadcast", "", map[string]any{"event": "blob", "data": blob})
		sent++
		time.Sleep(time.Millisecond)
		return leftDoc(watcher, slow.id)
	})
	slow.unpause()
	if ce := slow.waitClose(15 * time.Second); ce == nil || ce.Code != 4008 {
		t.Fatalf("slow client close %v, want 4008 (after %d broadcasts)", ce, sent)
	}
	fast.send("ping", "ok?", nil)
	fast.until("pong", nil)
}
