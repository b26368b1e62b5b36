package collab_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"collabd/collab"
	"collabd/nats/natstest"
)

// bigState returns a presence state of about n bytes.
func bigState(n int) json.RawMessage {
	return json.RawMessage(`{"note":"` + strings.Repeat("x", n-12) + `"}`)
}

// trackAll joins n members on h, each tracking a state of size bytes; the test never drains
// their outboxes, as a tab in the background would not read for a while.
func trackAll(t testing.TB, h *collab.Hub, doc string, n, size int) []*collab.Session {
	t.Helper()
	state := bigState(size)
	sessions := make([]*collab.Session, n)
	for i := range sessions {
		out := collab.NewOutbox(0)
		s, err := h.Join(context.Background(), out, collab.JoinOptions{Doc: doc, User: "u" + itoa(i), Present: true, Presence: true, Cursors: true})
		if err != nil {
			t.Fatal(err)
		}
		if ce := s.Handle(collab.Command{Kind: collab.CmdTrack, Data: state}); ce != nil {
			t.Fatal(ce)
		}
		sessions[i] = s
	}
	return sessions
}

// A document whose members hold far more presence than one outbox or one NATS message
// (300 members with 4 KiB states: 1.2 MiB) stays joinable on every instance, and the members
// that were handed all of it are not taken for slow consumers: presence in an outbox is
// latest-wins (a state supersedes the diffs before it), and snapshots travel in parts.
func TestLargePresenceDocumentStaysJoinable(t *testing.T) {
	ns := natstest.NewServer(t)
	h1, _ := newHub(t, ns.URL(), collab.Config{})
	h2, _ := newHub(t, ns.URL(), collab.Config{})
	peersKnown(t, 1, h1, h2)
	const n = 300
	members := trackAll(t, h1, "big", n, collab.MaxStateBytes)

	far := joinHub(t, h2, "big", "far", 0)
	near := joinHub(t, h1, "big", "near", 0)
	for _, m := range []*member{far, near} {
		natstest.WaitFor(t, 10*time.Second, func() bool {
			m.sync()
			return len(m.state) == n+2
		})
		if ce := m.out.Closed(); ce != nil {
			t.Fatalf("%s closed with %v, want open", m.s.User, ce)
		}
	}
	for _, s := range members {
		if ce := s.Out.Closed(); ce != nil {
			t.Fatalf("member %s closed with %v: a member handed a large presence is not slow", s.User, ce)
		}
	}

	// Every member on h1 leaves at once (the instance goes): the others get 300 leaves of
	// 4 KiB each, more than their outbox holds, and stay.
	for _, s := range members {
		h1.Leave(s)
	}
	want := map[string]string{far.s.ID: "far", near.s.ID: "near"}
	far.waitState(want)
	near.waitState(want)
	if ce := far.out.Closed(); ce != nil {
		t.Fatalf("far closed with %v after the mass leave, want open", ce)
	}
}

// A client that does not read while presence churns keeps one re-synchronisation queued,
// not every diff: its outbox stays bounded, and what it finally reads is the current state.
func TestPresenceChurnCollapsesToState(t *testing.T) {
	ns := natstest.NewServer(t)
	h, _ := newHub(t, ns.URL(), collab.Config{MessageRate: 1e6, MessageBurst: 1e6})
	idle := joinHub(t, h, "churn", "idle", 16<<10)
	idle.sync()
	busy := joinHub(t, h, "churn", "busy", 0)
	for i := range 200 {
		if ce := busy.s.Handle(collab.Command{Kind: collab.CmdTrack, Data: json.RawMessage(`{"i":` + itoa(i) + `,"pad":"` + strings.Repeat("p", 400) + `"}`)}); ce != nil {
			t.Fatal(ce)
		}
	}
	if ce := idle.out.Closed(); ce != nil {
		t.Fatalf("idle closed with %v, want open", ce)
	}
	events := idle.sync()
	states := 0
	for _, ev := range events {
		switch ev.Kind {
		case collab.EventPresenceState:
			states++
			if got := string(ev.State[busy.s.ID].State); !strings.HasPrefix(got, `{"i":199,`) {
				t.Errorf("state holds busy's %.20s..., want the latest ({\"i\":199,...)", got)
			}
		case collab.EventPresenceDiff:
			t.Errorf("a diff queued beside the re-synchronisation: %v", kinds(events))
		}
	}
	if states != 1 {
		t.Fatalf("got %d presence.state events, want 1 (kinds %v)", states, kinds(events))
	}
}

// A document's whole presence is bounded: a track that would take it over the limit gets a
// presence_full error and changes nothing; a smaller state is always accepted.
func TestPresenceBytesLimit(t *testing.T) {
	ns := natstest.NewServer(t)
	cfg := collab.Config{MaxPresenceBytes: 10 << 10}
	h1, _ := newHub(t, ns.URL(), cfg)
	h2, _ := newHub(t, ns.URL(), cfg)
	peersKnown(t, 1, h1, h2)
	a := joinHub(t, h1, "doc", "ann", 0)
	b := joinHub(t, h2, "doc", "bob", 0)
	b.waitState(map[string]string{a.s.ID: "ann", b.s.ID: "bob"})
	track := func(m *member, ref string, size int) *collab.Event {
		t.Helper()
		if ce := m.s.Handle(collab.Command{Kind: collab.CmdTrack, Ref: ref, Data: bigState(size)}); ce != nil {
			t.Fatal(ce)
		}
		for _, ev := range m.sync() {
			if ev.Ref == ref {
				return &ev
			}
		}
		t.Fatalf("no reply to %s", ref)
		return nil
	}
	if ev := track(a, "1", 4<<10); ev.Kind != collab.EventOK {
		t.Fatalf("first 4 KiB state: got %v, want ok", ev.Kind)
	}
	// b's instance learns of a's state before b tracks: the limit counts every instance.
	natstest.WaitFor(t, 5*time.Second, func() bool {
		for _, ev := range b.sync() {
			if ev.Kind == collab.EventPresenceDiff && len(ev.Diff.Joins[a.s.ID].State) > 1000 {
				return true
			}
		}
		return false
	})
	if ev := track(b, "2", 4<<10); ev.Kind != collab.EventOK {
		t.Fatalf("second 4 KiB state: got %v, want ok", ev.Kind)
	}
	ev := track(b, "3", 8<<10)
	if ev.Kind != collab.EventError || ev.Err.Code != collab.ErrCodePresenceFull {
		t.Fatalf("a state over the document's limit: got %v %v, want error %s", ev.Kind, ev.Err, collab.ErrCodePresenceFull)
	}
	if ev := track(b, "4", 100); ev.Kind != collab.EventOK {
		t.Fatalf("a smaller state: got %v %v, want ok", ev.Kind, ev.Err)
	}
}
