package collab_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"collabd/collab"
	"collabd/nats/natstest"
)

// manualTick makes a hub's documents flush their cursors only when the test says so.
const manualTick = time.Hour

// cursorsOf drains m's outbox and returns its cursors frames as sender -> data maps,
// checking that no frame names a sender twice.
func cursorsOf(t *testing.T, m *member) []map[string]string {
	t.Helper()
	var out []map[string]string
	for _, frame := range drainCursors(t, m.out) {
		f := map[string]string{}
		for _, e := range frame {
			if _, dup := f[e.ID]; dup {
				t.Fatalf("two entries of %s in one frame", e.ID)
			}
			f[e.ID] = string(e.Data)
		}
		out = append(out, f)
	}
	return out
}

func move(m *member, data string) {
	m.s.Handle(collab.Command{Kind: collab.CmdCursor, Data: json.RawMessage(data)})
}

// wantCursors checks what m receives now: one frame with exactly want, or nothing.
func wantCursors(t *testing.T, m *member, name string, want map[string]string) {
	t.Helper()
	got := cursorsOf(t, m)
	if len(want) == 0 {
		if len(got) != 0 {
			t.Fatalf("%s got %v, want no cursors", name, got)
		}
		return
	}
	if len(got) != 1 || fmt.Sprint(got[0]) != fmt.Sprint(want) {
		t.Fatalf("%s got %v, want one frame %v", name, got, want)
	}
}

// The rules of one document's batches: the sender never gets its own entry; a hide goes
// only to members shown the position; a newcomer gets no change its snapshot already held.
func TestCursorBatchRules(t *testing.T) {
	ns := natstest.NewServer(t)
	h, _ := newHub(t, ns.URL(), collab.Config{CursorTick: manualTick})
	a := joinHub(t, h, "doc", "ann", 0)
	b := joinHub(t, h, "doc", "bob", 0)
	c := joinHub(t, h, "doc", "cy", 0)
	flush := func() { h.FlushCursors("doc") }

	move(a, `{"x":1}`)
	flush()
	wantCursors(t, a, "ann", nil)
	wantCursors(t, b, "bob", map[string]string{a.s.ID: `{"x":1}`})
	wantCursors(t, c, "cy", map[string]string{a.s.ID: `{"x":1}`})

	move(a, `{"x":2}`)
	move(b, `{"x":3}`)
	move(a, `{"x":4}`) // latest wins within a tick
	flush()
	wantCursors(t, a, "ann", map[string]string{b.s.ID: `{"x":3}`})
	wantCursors(t, b, "bob", map[string]string{a.s.ID: `{"x":4}`})
	wantCursors(t, c, "cy", map[string]string{a.s.ID: `{"x":4}`, b.s.ID: `{"x":3}`})

	// Shown and hidden within one tick, with nobody joining: nobody saw it, nothing goes out.
	move(c, `{"x":5}`)
	move(c, `null`)
	flush()
	for _, m := range []*member{a, b, c} {
		wantCursors(t, m, m.s.User, nil)
	}

	// A hide pending when a newcomer joins: the newcomer's snapshot has no ann, and it
	// gets no hide; the others get one, once.
	move(a, `null`)
	d := joinHub(t, h, "doc", "dee", 0)
	wantCursors(t, d, "dee's snapshot", map[string]string{b.s.ID: `{"x":3}`})
	move(a, `null`)
	flush()
	wantCursors(t, d, "dee", nil)
	wantCursors(t, b, "bob", map[string]string{a.s.ID: `null`})
	wantCursors(t, c, "cy", map[string]string{a.s.ID: `null`})
	move(a, `null`)
	flush()
	wantCursors(t, b, "bob", nil)

	// A position pending when a newcomer joins is in its snapshot, and not sent again.
	move(b, `{"x":6}`)
	e := joinHub(t, h, "doc", "eve", 0)
	wantCursors(t, e, "eve's snapshot", map[string]string{b.s.ID: `{"x":6}`})
	flush()
	wantCursors(t, e, "eve", nil)
	for _, m := range []*member{a, c, d} {
		wantCursors(t, m, m.s.User, map[string]string{b.s.ID: `{"x":6}`})
	}
	wantCursors(t, b, "bob", nil)

	// Shown only to a newcomer's snapshot, then hidden in the same tick: only it gets the hide.
	move(c, `{"x":7}`)
	f := joinHub(t, h, "doc", "fay", 0)
	wantCursors(t, f, "fay's snapshot", map[string]string{b.s.ID: `{"x":6}`, c.s.ID: `{"x":7}`})
	move(c, `null`)
	flush()
	wantCursors(t, f, "fay", map[string]string{c.s.ID: `null`})
	for _, m := range []*member{a, b, d, e} {
		wantCursors(t, m, m.s.User, nil)
	}
}

// A flush takes at most CursorFrameMax entries, oldest change first; the rest wait, latest
// wins.
func TestCursorThinning(t *testing.T) {
	ns := natstest.NewServer(t)
	h, _ := newHub(t, ns.URL(), collab.Config{CursorTick: manualTick, CursorFrameMax: 2})
	r := joinHub(t, h, "doc", "reader", 0)
	var ms []*member
	for i := range 5 {
		m := joinHub(t, h, "doc", fmt.Sprint("m", i), 0)
		ms = append(ms, m)
		move(m, fmt.Sprintf(`{"x":%d}`, i))
	}
	move(ms[0], `{"x":10}`) // updated in place: keeps its turn, latest value
	h.FlushCursors("doc")
	wantCursors(t, r, "first flush", map[string]string{ms[0].s.ID: `{"x":10}`, ms[1].s.ID: `{"x":1}`})
	move(ms[3], `{"x":13}`)
	h.FlushCursors("doc")
	wantCursors(t, r, "second flush", map[string]string{ms[2].s.ID: `{"x":2}`, ms[3].s.ID: `{"x":13}`})
	h.FlushCursors("doc")
	wantCursors(t, r, "third flush", map[string]string{ms[4].s.ID: `{"x":4}`})
	h.FlushCursors("doc")
	wantCursors(t, r, "fourth flush", nil)
}

// A writer that falls behind gets the batches folded, one latest entry per sender, in one
// frame: the queue never grows past its bound.
func TestCursorBacklogFolds(t *testing.T) {
	ns := natstest.NewServer(t)
	h, _ := newHub(t, ns.URL(), collab.Config{CursorTick: manualTick})
	r := joinHub(t, h, "doc", "reader", 0)
	a := joinHub(t, h, "doc", "ann", 0)
	b := joinHub(t, h, "doc", "bob", 0)
	for i := range 50 {
		move(a, fmt.Sprintf(`{"x":%d}`, i))
		if i == 20 {
			move(b, `{"y":1}`)
		}
		h.FlushCursors("doc")
	}
	var cur collab.Cursors
	r.out.Drain(nil, &cur)
	if cur.Len() >= 50 {
		t.Fatalf("reader's outbox holds %d batches or entries after 50 flushes, want them folded", cur.Len())
	}
	var frames []string
	err := cur.Frames(testEncoder(t), func(_ *collab.Session, frame []byte) error {
		frames = append(frames, string(frame))
		return nil
	})
	want := fmt.Sprintf(`[{"id":%q,"data":{"x":49}},{"id":%q,"data":{"y":1}}]`, a.s.ID, b.s.ID)
	want2 := fmt.Sprintf(`[{"id":%q,"data":{"y":1}},{"id":%q,"data":{"x":49}}]`, b.s.ID, a.s.ID)
	if err != nil || len(frames) != 1 || (frames[0] != want && frames[0] != want2) {
		t.Fatalf("reader got %q (%v), want one frame %s", frames, err, want)
	}
	wantCursors(t, a, "ann", map[string]string{b.s.ID: `{"y":1}`})
}

// Cursors cross instances in one bus message per flush; one too large for a NATS message
// travels as several.
func TestCursorsAcrossHubsInParts(t *testing.T) {
	ns := natstest.NewServer(t)
	h1, _ := newHub(t, ns.URL(), collab.Config{CursorTick: manualTick, CursorFrameMax: 5000})
	h2, _ := newHub(t, ns.URL(), collab.Config{CursorTick: manualTick})
	peersKnown(t, 1, h1, h2)
	w := joinHub(t, h2, "doc", "watcher", 0)
	const n = 2500 // 2500 cursors of ~500 bytes: 1.3 MB, more than NATS's 1 MiB max_payload
	pad := fmt.Sprintf("%0480d", 0)
	ids := map[string]bool{}
	for i := range n {
		out := collab.NewOutbox(0)
		s, err := h1.Join(context.Background(), out, collab.JoinOptions{Doc: "doc", User: "u", Cursors: false})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { h1.Leave(s) })
		s.Handle(collab.Command{Kind: collab.CmdCursor, Data: json.RawMessage(fmt.Sprintf(`{"i":%d,"p":%q}`, i, pad))})
		ids[s.ID] = true
	}
	h1.FlushCursors("doc")
	got := map[string]bool{}
	natstest.WaitFor(t, 10*time.Second, func() bool {
		h2.FlushCursors("doc")
		for _, f := range cursorsOf(t, w) {
			for id := range f {
				if !ids[id] {
					t.Fatalf("cursor of unknown sender %s", id)
				}
				got[id] = true
			}
		}
		return len(got) == n
	})
}

// Another instance's cursors were gathered for a tick there: they go out at once, with the
// pending local ones, instead of waiting for a tick here (here the tick never ends).
func TestRemoteCursorsGoOutAtOnce(t *testing.T) {
	ns := natstest.NewServer(t)
	h1, _ := newHub(t, ns.URL(), collab.Config{CursorTick: manualTick})
	h2, _ := newHub(t, ns.URL(), collab.Config{CursorTick: manualTick})
	peersKnown(t, 1, h1, h2)
	a := joinHub(t, h1, "doc", "ann", 0)
	b := joinHub(t, h2, "doc", "bob", 0)
	w := joinHub(t, h2, "doc", "walt", 0)
	move(b, `{"b":1}`) // pending on h2
	move(a, `{"a":1}`)
	h1.FlushCursors("doc")
	got := map[string]string{}
	natstest.WaitFor(t, 5*time.Second, func() bool {
		for _, f := range cursorsOf(t, w) {
			for id, data := range f {
				got[id] = data
			}
		}
		return got[a.s.ID] == `{"a":1}` && got[b.s.ID] == `{"b":1}`
	})
}

// A cursor storm in a document of 3,000 members stays bounded: a delivery carries at most
// CursorFrameMax positions, and the next waits until the deliveries fit CursorBudget.
func TestLargeDocumentCursorStormBounded(t *testing.T) {
	ns := natstest.NewServer(t)
	h, _ := newHub(t, ns.URL(), collab.Config{CursorTick: manualTick})
	const n = 3000
	ms := make([]*member, n)
	for i := range ms {
		// Cursors only: presence for 3,000 members is another test's subject.
		out := collab.NewOutbox(0)
		s, err := h.Join(context.Background(), out, collab.JoinOptions{Doc: "webinar", User: fmt.Sprint("u", i), Cursors: true})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { h.Leave(s) })
		ms[i] = &member{t: t, s: s, out: out}
	}
	for i, m := range ms {
		move(m, fmt.Sprintf(`{"x":%d}`, i))
	}
	before := time.Now()
	h.FlushCursors("webinar")
	after := time.Now()
	for _, m := range ms[:50] {
		got := cursorsOf(t, m)
		if len(got) != 1 || len(got[0]) > 64 {
			t.Fatalf("a member got %d frames, the first of %d entries; want one of at most 64", len(got), len(got[0]))
		}
	}
	pending, notBefore := h.CursorBacklog("webinar")
	if pending != n-64 {
		t.Fatalf("%d changes pending after the first delivery, want %d", pending, n-64)
	}
	// 64 entries to 3,000 members is 192,000 deliveries: 0.768 s of the 250,000 a second,
	// counted from the delivery, which happened between before and after.
	const want = 768 * time.Millisecond
	if notBefore.Before(before.Add(want)) || notBefore.After(after.Add(want)) {
		t.Fatalf("next delivery %s after the flush began (the flush took %s), want %s",
			notBefore.Sub(before), after.Sub(before), want)
	}
}
