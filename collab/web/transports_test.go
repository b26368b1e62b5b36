package web_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"collabd/collab/web"
	"collabd/nats/natstest"
)

func hasLeave(t *testing.T, id string) func(frame) bool {
	return func(f frame) bool {
		_, ok := decodeDiff(t, f.Payload).Leaves[id]
		return ok
	}
}

func broadcastFrom(t *testing.T, id string, data string) func(frame) bool {
	return func(f frame) bool {
		var p struct {
			From string
			Data json.RawMessage
		}
		json.Unmarshal(f.Payload, &p)
		return p.From == id && string(p.Data) == data
	}
}

// SSE and long-polling sessions are members like any other: presence, cursors and
// broadcasts cross between them and a WebSocket client on the other instance.
func TestHTTPTransportsAcrossInstances(t *testing.T) {
	ins := startCluster(t, 2, instanceOpts{})
	ann := join(t, ins[0], "mixed", "ann")
	ann.expect("presence.state")

	sam := joinSSE(t, ins[1], "mixed", "sam")
	st := decodeMembers(t, sam.expect("presence.state").Payload)
	if st[ann.id].User != "ann" || st[sam.id].User != "sam" {
		t.Fatalf("sam's state %s, want ann (other instance) and sam", sam.id)
	}
	ann.until("presence.diff", func(f frame) bool { return decodeDiff(t, f.Payload).Joins[sam.id].User == "sam" })

	pat := joinPoll(t, ins[1], "mixed", "pat")
	st = decodeMembers(t, pat.expect("presence.state").Payload)
	if len(st) != 3 || st[pat.id].User != "pat" {
		t.Fatalf("pat's state %v, want ann, sam and pat", st)
	}
	ann.until("presence.diff", func(f frame) bool { return decodeDiff(t, f.Payload).Joins[pat.id].User == "pat" })

	// Presence, cursors and a broadcast from the SSE session, in one POST.
	if status, body := sam.send(
		`{"type":"presence.track","ref":"t1","payload":{"name":"Sam"}}`,
		`{"type":"cursor","payload":{"x":0.5,"y":0.25}}`,
		`{"type":"broadcast","payload":{"event":"wave","data":"from sam"}}`,
	); status != http.StatusNoContent {
		t.Fatalf("POST: %d %s, want 204", status, body)
	}
	sam.until("ok", func(f frame) bool { return f.Ref == "t1" })
	ann.until("presence.diff", func(f frame) bool { return string(decodeDiff(t, f.Payload).Joins[sam.id].State) == `{"name":"Sam"}` })
	ann.until("broadcast", broadcastFrom(t, sam.id, `"from sam"`))
	pat.until("broadcast", broadcastFrom(t, sam.id, `"from sam"`))
	natstest.WaitFor(t, 5*time.Second, func() bool {
		for _, c := range decodeCursors(t, ann.until("cursors", nil).Payload) {
			if c.ID == sam.id && string(c.Data) == `{"x":0.5,"y":0.25}` {
				return true
			}
		}
		return false
	})

	// From the poller.
	if status, body := pat.send(`{"type":"broadcast","payload":{"event":"wave","data":"from pat"}}`); status != http.StatusNoContent {
		t.Fatalf("POST: %d %s, want 204", status, body)
	}
	ann.until("broadcast", broadcastFrom(t, pat.id, `"from pat"`))
	sam.until("broadcast", broadcastFrom(t, pat.id, `"from pat"`))

	// To both, from the WebSocket client on the other instance.
	ann.send("cursor", "", map[string]float64{"x": 1, "y": 2})
	ann.send("broadcast", "", map[string]any{"event": "wave", "data": "from ann"})
	sam.until("broadcast", broadcastFrom(t, ann.id, `"from ann"`))
	pat.until("broadcast", broadcastFrom(t, ann.id, `"from ann"`))
	pat.until("cursors", func(f frame) bool { return strings.Contains(string(f.Payload), ann.id) })

	// The end of the stream is a leave at once.
	sam.cancel()
	ann.until("presence.diff", hasLeave(t, sam.id))
}

// A poller that stops polling leaves after PollTimeout + PollGrace without a poll.
func TestPollerThatVanishesLeaves(t *testing.T) {
	const pollTimeout, grace = 300 * time.Millisecond, 300 * time.Millisecond
	in := startCluster(t, 1, instanceOpts{web: web.Config{PollTimeout: pollTimeout, PollGrace: grace}})[0]
	watcher := join(t, in, "vanish", "watcher")

	t.Run("between polls", func(t *testing.T) {
		p := joinPoll(t, in, "vanish", "gone")
		start := time.Now() // the opening answer was the last poll
		watcher.until("presence.diff", hasLeave(t, p.id))
		t.Logf("left %s after its last poll ended (bound %s)", time.Since(start).Round(time.Millisecond), pollTimeout+grace)
		status, a := p.poll()
		if status != http.StatusGone || a.Close == nil || a.Close.Reason == "" {
			t.Fatalf("poll after the end: %d %s, want 410 with the close", status, a.Raw)
		}
	})

	t.Run("with a poll outstanding", func(t *testing.T) {
		p := joinPoll(t, in, "vanish", "gone2")
		ctx, cancel := context.WithCancel(context.Background())
		go getPoll(t, ctx, p.base+"?sid="+p.sid) // the client goes away while it waits
		time.Sleep(50 * time.Millisecond)        // let the poll reach the server
		cancel()
		start := time.Now()
		watcher.until("presence.diff", hasLeave(t, p.id))
		t.Logf("left %s after the client went away mid-poll (bound %s)", time.Since(start).Round(time.Millisecond), 2*pollTimeout+grace)
	})
}

// A newer poll makes the older answer at once; a poll with nothing to say answers an
// empty list after PollTimeout.
func TestPollSupersedeAndTimeout(t *testing.T) {
	in := startCluster(t, 1, instanceOpts{web: web.Config{PollTimeout: 2 * time.Second}})[0]
	p := joinPoll(t, in, "supersede", "pat")
	p.until("presence.state", nil)
	if len(p.buf) > 0 {
		p.poll() // whatever else the join sent
	}
	older := make(chan pollAnswer, 1)
	go func() {
		_, a, _ := getPoll(t, context.Background(), p.base+"?sid="+p.sid)
		older <- a
	}()
	time.Sleep(100 * time.Millisecond) // the older poll is waiting
	newer := make(chan pollAnswer, 1)
	go func() {
		_, a, _ := getPoll(t, context.Background(), p.base+"?sid="+p.sid)
		newer <- a
	}()
	select {
	case a := <-older:
		if len(a.Messages) != 0 || a.Close != nil {
			t.Fatalf("superseded poll answered %s, want no messages", a.Raw)
		}
	case <-time.After(time.Second):
		t.Fatal("the older poll did not answer when a newer one came")
	}
	select {
	case a := <-newer:
		if len(a.Messages) != 0 || a.Close != nil {
			t.Fatalf("timed-out poll answered %s, want no messages", a.Raw)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the poll did not answer after its timeout")
	}
}

// Bad input to the HTTP transports gets a clear answer, never a silent drop.
func TestHTTPTransportErrors(t *testing.T) {
	in := startCluster(t, 1, instanceOpts{web: web.Config{JWTSecret: testSecret}})[0]
	tok := token(t, "sam", time.Hour, nil)

	for _, path := range []string{"/sse/", "/poll/"} {
		for _, tc := range []struct {
			name, url string
			header    http.Header
			want      int
		}{
			{"no token", path + "doc", nil, 401},
			{"bad token", path + "doc?token=nope", nil, 401},
			{"expired token", path + "doc?token=" + token(t, "sam", -time.Hour, nil), nil, 401},
			{"other document", path + "doc", http.Header{"Authorization": {"Bearer " + token(t, "sam", time.Hour, map[string]any{"docs": []string{"team-*"}})}}, 403},
			{"bad document id", path + "a%20b?token=" + tok, nil, 400},
		} {
			t.Run(path+tc.name, func(t *testing.T) {
				req, _ := http.NewRequest(http.MethodGet, in.url+tc.url, nil)
				for k, v := range tc.header {
					req.Header[k] = v
				}
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != tc.want {
					t.Fatalf("got HTTP %d, want %d", resp.StatusCode, tc.want)
				}
			})
		}
	}

	sam, _ := openSSE(t, in, "doc?token="+tok, nil)
	sam.expect("welcome")
	cases := []struct {
		name, body string
		want       int
		inBody     string
	}{
		{"oversized", `{"type":"broadcast","payload":{"event":"e","data":"` + strings.Repeat("x", 32<<10) + `"}}`, 413, "larger"},
		{"not JSON", "{\"type\":\"ping\",\"ref\":\"before\"}\nnonsense\n{\"type\":\"ping\",\"ref\":\"after\"}", 400, "line 2"},
		{"not UTF-8", "{\"type\":\"broadcast\",\"payload\":{\"event\":\"e\",\"data\":\"\xff\"}}", 400, "UTF-8"},
		{"a frame but a bad message", `{"type":"dance","ref":"d1"}`, 204, ""},
	}
	for _, tc := range cases {
		t.Run("POST "+tc.name, func(t *testing.T) {
			status, body := sam.send(tc.body)
			if status != tc.want || !strings.Contains(body, tc.inBody) {
				t.Fatalf("got %d %q, want %d mentioning %q", status, body, tc.want, tc.inBody)
			}
		})
	}
	// The line before the bad one was handled, the one after not; the bad message got an
	// error frame on the stream.
	if f := sam.until("pong", nil); f.Ref != "before" {
		t.Fatalf("pong %q, want the one before the bad line", f.Ref)
	}
	if f := sam.until("error", nil); f.Ref != "d1" || !strings.Contains(string(f.Payload), "unknown_type") {
		t.Fatalf("error frame %s %s, want unknown_type for d1", f.Ref, f.Payload)
	}

	for _, tc := range []struct{ name, url string }{
		{"unknown sid", in.url + "/sse/doc?sid=0123456789abcdef0123456789abcdef"},
		{"another transport's sid", in.url + "/poll/doc?sid=" + sam.sid},
		{"another document", in.url + "/sse/other?sid=" + sam.sid},
	} {
		if status, body := postText(t, tc.url, `{"type":"ping"}`); status != http.StatusNotFound {
			t.Errorf("POST with %s: %d %s, want 404", tc.name, status, body)
		}
	}

	// After the session ended, its sid answers 410 with the close.
	sam.cancel()
	natstest.WaitFor(t, 5*time.Second, func() bool {
		status, _ := postText(t, in.url+sam.post, `{"type":"ping"}`)
		return status == http.StatusGone
	})
	if _, body := postText(t, in.url+sam.post, `{"type":"ping"}`); !strings.Contains(body, `"close"`) {
		t.Fatalf("410 body %q, want the close", body)
	}
}

// An SSE stream whose client stopped reading is closed as a slow consumer: it leaves at
// once, and the server ends the stream without waiting for the client to read.
func TestSSEStreamNotRead(t *testing.T) {
	o := instanceOpts{web: web.Config{QueueBytes: 64 << 10, WriteTimeout: time.Minute}}
	o.hub.MessageRate, o.hub.MessageBurst = 1e6, 1e6
	in := startCluster(t, 1, o)[0]
	watcher := join(t, in, "sse-slow", "watcher")
	fast := join(t, in, "sse-slow", "fast")
	// A client that reads the response head and nothing more.
	resp, err := http.Get(in.url + "/sse/sse-slow?user=stuck")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("open SSE: %v %v", resp, err)
	}
	defer resp.Body.Close()
	blob := strings.Repeat("y", 8000)
	var stuckID string
	watcher.until("presence.diff", func(f frame) bool {
		for id, m := range decodeDiff(t, f.Payload).Joins {
			if m.User == "stuck" {
				stuckID = id
			}
		}
		return stuckID != ""
	})
	natstest.WaitFor(t, 20*time.Second, func() bool {
		fast.send("broadcast", "", map[string]any{"event": "blob", "data": blob})
		time.Sleep(time.Millisecond)
		return leftDoc(watcher, stuckID)
	})
	natstest.WaitFor(t, 10*time.Second, func() bool { return metric(t, in, "collabd_connections") == 2 })
}

// A token that expires ends an SSE stream with a 4001 close event and a poll session with
// a 4001 close, then 410.
func TestHTTPTransportsTokenExpiry(t *testing.T) {
	in := startCluster(t, 1, instanceOpts{web: web.Config{JWTSecret: testSecret}})[0]
	s, _ := openSSE(t, in, "exp?token="+token(t, "sam", time.Second, nil), nil)
	if ci := s.waitEnd(10 * time.Second); ci == nil || ci.Code != 4001 || ci.Reason != "token expired" {
		t.Fatalf("SSE close %+v, want 4001 token expired", ci)
	}

	p := &poller{t: t, base: in.url + "/poll/exp"}
	status, a, _ := getPoll(t, context.Background(), p.base+"?token="+token(t, "pat", time.Second, nil))
	if status != http.StatusOK {
		t.Fatalf("open: %d %s", status, a.Raw)
	}
	p.sid = a.Sid
	for p.end == nil {
		p.poll()
	}
	if p.end.Code != 4001 {
		t.Fatalf("poll close %+v, want 4001", p.end)
	}
	if status, a := p.poll(); status != http.StatusGone || a.Close == nil || a.Close.Code != 4001 {
		t.Fatalf("poll after the end: %d %s, want 410 with 4001", status, a.Raw)
	}
}
