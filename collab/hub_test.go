package collab_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"testing"
	"time"

	"collabd/collab"
	"collabd/nats"
	"collabd/nats/natstest"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// newHub runs a hub on its own connection to the NATS server at url, with a short heartbeat
// unless cfg sets one.
func newHub(t testing.TB, url string, cfg collab.Config) (*collab.Hub, *nats.Bus) {
	t.Helper()
	if cfg.Heartbeat == 0 {
		cfg.Heartbeat, cfg.DownAfter = 50*time.Millisecond, 300*time.Millisecond
	}
	return openHub(t, nats.Options{URL: url}, cfg)
}

// openHub runs a hub with cfg on a bus opened with opts; both close when the test ends.
func openHub(t testing.TB, opts nats.Options, cfg collab.Config) (*collab.Hub, *nats.Bus) {
	t.Helper()
	ctx := context.Background()
	opts.Logger = quiet()
	bus, err := nats.Open(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Logger = quiet()
	h, err := collab.NewHub(ctx, bus, cfg)
	if err != nil {
		t.Fatal(err)
	}
	bus.OnReconnect(h.Resync)
	t.Cleanup(func() {
		h.Close()
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		bus.Close(cctx)
	})
	return h, bus
}

// member is a session with its own outbox, drained by the test.
type member struct {
	t   *testing.T
	s   *collab.Session
	out *collab.Outbox
	// state is the presence the member has been told of, as a client would keep it.
	state  map[string]string // id -> user
	states int               // presence.state events received
}

func joinHub(t *testing.T, h *collab.Hub, doc, user string, queue int) *member {
	t.Helper()
	out := collab.NewOutbox(queue)
	s, err := h.Join(context.Background(), out, collab.JoinOptions{Doc: doc, User: user, Present: true, Presence: true, Cursors: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Leave(s) })
	return &member{t: t, s: s, out: out, state: map[string]string{}}
}

// sync applies everything queued to m's view.
func (m *member) sync() []collab.Event {
	events, _ := m.out.Drain(nil, nil)
	m.states += applyPresence(m.state, events)
	return events
}

// applyPresence applies the presence events among events to view (id -> user), as a client
// keeps its member map, and returns how many presence.state events it saw.
func applyPresence(view map[string]string, events []collab.Event) (states int) {
	for _, ev := range events {
		switch ev.Kind {
		case collab.EventPresenceState:
			states++
			clear(view)
			for id, e := range ev.State {
				view[id] = e.User
			}
		case collab.EventPresenceDiff:
			for id := range ev.Diff.Leaves {
				delete(view, id)
			}
			for id, e := range ev.Diff.Joins {
				view[id] = e.User
			}
		}
	}
	return states
}

func (m *member) waitState(want map[string]string) {
	m.t.Helper()
	natstest.WaitFor(m.t, 5*time.Second, func() bool {
		m.sync()
		if len(m.state) != len(want) {
			return false
		}
		for id, u := range want {
			if m.state[id] != u {
				return false
			}
		}
		return true
	})
}

func peersKnown(t testing.TB, n int, hubs ...*collab.Hub) {
	t.Helper()
	natstest.WaitFor(t, 5*time.Second, func() bool {
		for _, h := range hubs {
			if len(h.Peers()) < n {
				return false
			}
		}
		return true
	})
}

// Three hubs: a member joining on the third gets everyone in its first presence state.
func TestPresenceStateIsCompleteAcrossHubs(t *testing.T) {
	ns := natstest.NewServer(t)
	h1, _ := newHub(t, ns.URL(), collab.Config{})
	h2, _ := newHub(t, ns.URL(), collab.Config{})
	h3, _ := newHub(t, ns.URL(), collab.Config{})
	peersKnown(t, 2, h1, h2, h3)
	a := joinHub(t, h1, "doc", "ann", 0)
	b := joinHub(t, h2, "doc", "bob", 0)
	want := map[string]string{a.s.ID: "ann", b.s.ID: "bob"}
	a.waitState(want)
	b.waitState(want)

	c := joinHub(t, h3, "doc", "cy", 0)
	events := c.sync()
	if len(events) < 2 || events[0].Kind != collab.EventWelcome || events[1].Kind != collab.EventPresenceState {
		t.Fatalf("first events %v, want welcome then presence.state", kinds(events))
	}
	if got := len(events[1].State); got != 3 {
		t.Fatalf("first presence.state has %d members, want 3 (everyone on every hub)", got)
	}
}

func kinds(evs []collab.Event) []collab.EventKind {
	k := make([]collab.EventKind, len(evs))
	for i, e := range evs {
		k[i] = e.Kind
	}
	return k
}

// A hub that goes silent (no goodbye) loses its members on the others after DownAfter; when
// it comes back, its members are fetched again.
func TestSilentHubEvictedAndRecovered(t *testing.T) {
	ns := natstest.NewServer(t)
	h1, _ := newHub(t, ns.URL(), collab.Config{})
	h2, bus2 := newHub(t, ns.URL(), collab.Config{})
	peersKnown(t, 1, h1, h2)
	a := joinHub(t, h1, "doc", "ann", 0)
	b := joinHub(t, h2, "doc", "bob", 0)
	both := map[string]string{a.s.ID: "ann", b.s.ID: "bob"}
	a.waitState(both)

	// Stopping the NATS server cuts both hubs off; after it restarts, both re-announce.
	ns.Stop()
	a.waitState(map[string]string{a.s.ID: "ann"})
	b.waitState(map[string]string{b.s.ID: "bob"})
	statesBefore := b.states
	ns.Start()
	natstest.WaitFor(t, 10*time.Second, bus2.Connected)
	a.waitState(both)
	b.waitState(both)
	// The re-synchronisation ends with a fresh presence.state for every member.
	natstest.WaitFor(t, 5*time.Second, func() bool {
		b.sync()
		return b.states > statesBefore
	})
	b.waitState(both)
}

// A session that does not drain its outbox is evicted: it leaves for everyone at once,
// and the others keep receiving.
func TestSlowSessionEvicted(t *testing.T) {
	ns := natstest.NewServer(t)
	h, _ := newHub(t, ns.URL(), collab.Config{MessageRate: 1e6, MessageBurst: 1e6})
	slow := joinHub(t, h, "doc", "slow", 4<<10)
	fast := joinHub(t, h, "doc", "fast", 0)
	sender := joinHub(t, h, "doc", "sender", 0)
	data, _ := json.Marshal(string(make([]byte, 512)))
	for range 50 {
		if ce := sender.s.Handle(collab.Command{Kind: collab.CmdBroadcast, Name: "blob", Data: data}); ce != nil {
			t.Fatal(ce)
		}
	}
	if ce := slow.out.Closed(); ce != collab.ErrSlowConsumer {
		t.Fatalf("slow outbox closed with %v, want %v", ce, collab.ErrSlowConsumer)
	}
	// The slow session left presence at once, while its connection would still be closing.
	fast.waitState(map[string]string{fast.s.ID: "fast", sender.s.ID: "sender"})
	if ce := fast.out.Closed(); ce != nil {
		t.Fatalf("fast outbox closed with %v", ce)
	}
}

// A cursor from one hub reaches the other hub's members as one message per drain round,
// latest value per sender.
func TestCursorsAcrossHubsLatestWins(t *testing.T) {
	ns := natstest.NewServer(t)
	h1, _ := newHub(t, ns.URL(), collab.Config{})
	h2, _ := newHub(t, ns.URL(), collab.Config{})
	peersKnown(t, 1, h1, h2)
	a := joinHub(t, h1, "doc", "ann", 0)
	b := joinHub(t, h2, "doc", "bob", 0)
	b.waitState(map[string]string{a.s.ID: "ann", b.s.ID: "bob"})
	for i := range 40 {
		a.s.Handle(collab.Command{Kind: collab.CmdCursor, Data: json.RawMessage(`{"x":` + itoa(i) + `}`)})
	}
	natstest.WaitFor(t, 5*time.Second, func() bool {
		last := ""
		for _, frame := range drainCursors(t, b.out) {
			seen := map[string]bool{}
			for _, c := range frame {
				if seen[c.ID] {
					t.Fatalf("two entries for sender %s in one frame", c.ID)
				}
				seen[c.ID] = true
				last = string(c.Data)
			}
		}
		return last == `{"x":39}`
	})
}

// testEncoder encodes cursors frames as JSON arrays of {"id","data"}.
func testEncoder(t testing.TB) *collab.CursorEncoder {
	return &collab.CursorEncoder{Prefix: "[", Suffix: "]", Entry: func(dst []byte, e *collab.CursorEntry) []byte {
		b, err := json.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		return append(dst, b...)
	}}
}

// drainCursors drains out and returns its cursors frames, decoded.
func drainCursors(t testing.TB, out *collab.Outbox) [][]collab.CursorEntry {
	t.Helper()
	var cur collab.Cursors
	out.Drain(nil, &cur)
	return cursorFrames(t, &cur)
}

// cursorFrames returns the cursors frames of what cur drained, decoded.
func cursorFrames(t testing.TB, cur *collab.Cursors) [][]collab.CursorEntry {
	t.Helper()
	var frames [][]collab.CursorEntry
	err := cur.Frames(testEncoder(t), func(_ *collab.Session, frame []byte) error {
		var entries []collab.CursorEntry
		err := json.Unmarshal(frame, &entries)
		frames = append(frames, entries)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return frames
}

func itoa(i int) string { b, _ := json.Marshal(i); return string(b) }
