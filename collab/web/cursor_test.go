package web_test

import (
	"context"
	"testing"
	"time"
)

// hidden reads c's frames until a cursors frame hides sender id.
func hidden(t *testing.T, c *client, id string) {
	t.Helper()
	c.until("cursors", func(f frame) bool {
		for _, e := range decodeCursors(t, f.Payload) {
			if e.ID == id && string(e.Data) == "null" {
				return true
			}
		}
		return false
	})
}

// shows reads c's frames until its cursors frames showed every sender in want (id, data)
// at that position.
func shows(t *testing.T, c *client, want ...string) {
	t.Helper()
	left := map[string]string{}
	for i := 0; i+1 < len(want); i += 2 {
		left[want[i]] = want[i+1]
	}
	c.until("cursors", func(f frame) bool {
		for _, e := range decodeCursors(t, f.Payload) {
			if w, ok := left[e.ID]; ok && w == string(e.Data) {
				delete(left, e.ID)
			}
		}
		return len(left) == 0
	})
}

// noSnapshotOf joins doc on in as a newcomer and checks that the cursors it starts with do
// not name id: a withdrawn cursor is not handed to newcomers.
func noSnapshotOf(t *testing.T, in *instance, doc, id, marker string) {
	t.Helper()
	n := join(t, in, doc, "newcomer")
	n.expect("presence.state")
	// The marker member shows a cursor, so a snapshot frame comes (presence diffs may come
	// first); it must not name id.
	f := n.until("cursors", nil)
	marked := false
	for _, e := range decodeCursors(t, f.Payload) {
		if e.ID == id {
			t.Fatalf("newcomer's snapshot %s names the departed member %s", f.Payload, id)
		}
		marked = marked || e.ID == marker
	}
	if !marked {
		t.Fatalf("newcomer's snapshot %s lacks the marker %s", f.Payload, marker)
	}
}

// A member that untracked, moved its cursor and left: no presence leave goes out, but its
// cursor is withdrawn everywhere, on every instance, and no newcomer is handed it.
func TestLeavingUntrackedMemberCursorWithdrawn(t *testing.T) {
	ins := startCluster(t, 2, instanceOpts{})
	m := join(t, ins[0], "ghost", "mallory")
	w := join(t, ins[1], "ghost", "walt")
	local := join(t, ins[0], "ghost", "lou")
	w.send("cursor", "", map[string]int{"m": 1}) // the marker for newcomers' snapshots
	shows(t, local, w.id, `{"m":1}`)

	m.send("presence.untrack", "u", nil)
	m.until("ok", nil)
	m.send("cursor", "", map[string]int{"x": 1})
	shows(t, w, m.id, `{"x":1}`)
	shows(t, local, m.id, `{"x":1}`)
	m.ws.Close()
	hidden(t, w, m.id)
	hidden(t, local, m.id)
	noSnapshotOf(t, ins[1], "ghost", m.id, w.id)
	noSnapshotOf(t, ins[0], "ghost", m.id, w.id)
}

// The cursors of a dead instance's members are withdrawn, present or not.
func TestDeadInstanceCursorsWithdrawn(t *testing.T) {
	ins := startCluster(t, 2, instanceOpts{})
	w := join(t, ins[0], "dead", "walt")
	p := join(t, ins[1], "dead", "pat")    // present
	u := join(t, ins[1], "dead", "ursula") // untracked
	u.send("presence.untrack", "u", nil)
	u.until("ok", nil)
	w.send("cursor", "", map[string]int{"m": 1})
	p.send("cursor", "", map[string]int{"p": 1})
	u.send("cursor", "", map[string]int{"u": 1})
	shows(t, w, p.id, `{"p":1}`, u.id, `{"u":1}`)
	// Cut the instance off the bus without a goodbye, as when it crashes.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ins[1].bus.Close(ctx)
	hidden(t, w, u.id)
	noSnapshotOf(t, ins[0], "dead", u.id, w.id)
	noSnapshotOf(t, ins[0], "dead", p.id, w.id)
}

// The cursors of a departed instance's members (its goodbye) are withdrawn at once.
func TestDepartedInstanceCursorsWithdrawn(t *testing.T) {
	o := instanceOpts{}
	o.hub.Heartbeat, o.hub.DownAfter = time.Second, time.Minute
	ins := startCluster(t, 2, o)
	w := join(t, ins[0], "gone", "walt")
	u := join(t, ins[1], "gone", "ursula")
	u.send("presence.untrack", "u", nil)
	u.until("ok", nil)
	w.send("cursor", "", map[string]int{"m": 1})
	u.send("cursor", "", map[string]int{"u": 1})
	shows(t, w, u.id, `{"u":1}`)
	ins[1].hub.Drain()
	hidden(t, w, u.id)
	noSnapshotOf(t, ins[0], "gone", u.id, w.id)
}

// The last member of a document on an instance leaves: the instance closes the document,
// and still withdraws the member's cursor on the others.
func TestLastLocalMemberCursorWithdrawn(t *testing.T) {
	ins := startCluster(t, 2, instanceOpts{})
	w := join(t, ins[1], "last", "walt")
	m := join(t, ins[0], "last", "mallory")
	m.send("presence.untrack", "u", nil)
	m.until("ok", nil)
	w.send("cursor", "", map[string]int{"m": 1})
	m.send("cursor", "", map[string]int{"x": 1})
	shows(t, w, m.id, `{"x":1}`)
	m.ws.Close()
	hidden(t, w, m.id)
	noSnapshotOf(t, ins[1], "last", m.id, w.id)
}
