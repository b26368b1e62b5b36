package presence

import (
	"fmt"
	"slices"
	"testing"
)

func TestTrack(t *testing.T) {
	red := ent("alice", `{"c":"red"}`, 0)
	blue := ent("alice", `{"c":"blue"}`, 0)
	type step struct {
		id      string
		e       Entry
		want    Diff
		wantSeq uint64
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"join", []step{
			{"a", red, Diff{Joins: Members{"a": ent("alice", `{"c":"red"}`, 1)}}, 1},
		}},
		{"update appears in joins only, with prev", []step{
			{"a", red, Diff{Joins: Members{"a": ent("alice", `{"c":"red"}`, 1)}}, 1},
			{"a", blue, Diff{Joins: Members{"a": ent("alice", `{"c":"blue"}`, 2)}, Prev: Members{"a": ent("alice", `{"c":"red"}`, 1)}}, 2},
		}},
		{"identical re-track is an empty diff and keeps the version", []step{
			{"a", red, Diff{Joins: Members{"a": ent("alice", `{"c":"red"}`, 1)}}, 1},
			{"a", red, Diff{}, 1},
			{"a", blue, Diff{Joins: Members{"a": ent("alice", `{"c":"blue"}`, 2)}, Prev: Members{"a": ent("alice", `{"c":"red"}`, 1)}}, 2},
		}},
		{"the caller's rev is ignored", []step{
			{"a", ent("alice", `{}`, 41), Diff{Joins: Members{"a": ent("alice", `{}`, 1)}}, 1},
			{"a", ent("alice", `{}`, 99), Diff{}, 1},
		}},
		{"a changed user is an update", []step{
			{"a", ent("alice", `{}`, 0), Diff{Joins: Members{"a": ent("alice", `{}`, 1)}}, 1},
			{"a", ent("bob", `{}`, 0), Diff{Joins: Members{"a": ent("bob", `{}`, 2)}, Prev: Members{"a": ent("alice", `{}`, 1)}}, 2},
		}},
		{"two members count their revs apart", []step{
			{"a", red, Diff{Joins: Members{"a": ent("alice", `{"c":"red"}`, 1)}}, 1},
			{"b", ent("bob", `{}`, 0), Diff{Joins: Members{"b": ent("bob", `{}`, 1)}}, 2},
			{"a", blue, Diff{Joins: Members{"a": ent("alice", `{"c":"blue"}`, 2)}, Prev: Members{"a": ent("alice", `{"c":"red"}`, 1)}}, 3},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := NewDoc("n1", 7)
			for i, s := range tt.steps {
				got, v := d.Track(s.id, s.e)
				if !sameDiff(got, s.want) {
					t.Errorf("step %d: got %s, want %s", i, dumpDiff(got), dumpDiff(s.want))
				}
				if want := (Version{Epoch: 7, Seq: s.wantSeq}); v != want {
					t.Errorf("step %d: got version %+v, want %+v", i, v, want)
				}
				if got.Empty() != s.want.Empty() {
					t.Errorf("step %d: got Empty() %v, want %v", i, got.Empty(), s.want.Empty())
				}
				if got.Leaves != nil {
					t.Errorf("step %d: got leaves %s, want none (no leave-then-join flicker)", i, dumpMembers(got.Leaves))
				}
			}
		})
	}
}

func TestUntrack(t *testing.T) {
	tests := []struct {
		name    string
		id      string
		want    Diff
		wantOK  bool
		wantSeq uint64
		wantLen int
	}{
		{"present member leaves", "a", Diff{Leaves: Members{"a": ent("alice", `{"c":"red"}`, 2)}}, true, 4, 1},
		{"absent member changes nothing", "zz", Diff{}, false, 3, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := NewDoc("n1", 1)
			d.Track("a", ent("alice", `{}`, 0))
			d.Track("a", ent("alice", `{"c":"red"}`, 0))
			d.Track("b", ent("bob", `{}`, 0))
			got, v, ok := d.Untrack(tt.id)
			if ok != tt.wantOK {
				t.Errorf("got ok %v, want %v", ok, tt.wantOK)
			}
			if !sameDiff(got, tt.want) {
				t.Errorf("got %s, want %s", dumpDiff(got), dumpDiff(tt.want))
			}
			if want := (Version{Epoch: 1, Seq: tt.wantSeq}); v != want {
				t.Errorf("got version %+v, want %+v", v, want)
			}
			if got := d.LocalLen(); got != tt.wantLen {
				t.Errorf("got LocalLen %d, want %d", got, tt.wantLen)
			}
		})
	}
}

func TestUntrackThenTrackStartsOver(t *testing.T) {
	d := NewDoc("n1", 1)
	d.Track("a", ent("alice", `{}`, 0))
	d.Untrack("a")
	got, v := d.Track("a", ent("alice", `{}`, 0))
	if want := (Diff{Joins: Members{"a": ent("alice", `{}`, 1)}}); !sameDiff(got, want) {
		t.Errorf("got %s, want %s", dumpDiff(got), dumpDiff(want))
	}
	if want := (Version{Epoch: 1, Seq: 3}); v != want {
		t.Errorf("got version %+v, want %+v", v, want)
	}
}

func TestLocal(t *testing.T) {
	d := NewDoc("n1", 5)
	if m, v := d.Local(); len(m) != 0 || v != (Version{Epoch: 5}) {
		t.Errorf("new doc: got %s at %+v, want {} at {5 0}", dumpMembers(m), v)
	}
	d.Track("a", ent("alice", `{}`, 0))
	m, v := d.Local()
	if want := (Members{"a": ent("alice", `{}`, 1)}); !sameMembers(m, want) || v != (Version{Epoch: 5, Seq: 1}) {
		t.Errorf("got %s at %+v, want %s at {5 1}", dumpMembers(m), v, dumpMembers(want))
	}
	m["b"] = ent("bob", `{}`, 1)
	delete(m, "a")
	if got := d.LocalLen(); got != 1 {
		t.Errorf("after changing the copy: got LocalLen %d, want 1", got)
	}
	if _, ok := d.Get("a"); !ok {
		t.Errorf("after changing the copy: a is gone")
	}
}

// peerAt returns a doc of instance "self" that knows node "p" at version v with members m.
func peerAt(t *testing.T, v Version, m Members) *Doc {
	t.Helper()
	d := NewDoc("self", 1)
	if _, ok := d.ApplySnapshot("p", v, m); !ok {
		t.Fatalf("setting up: snapshot at %+v not applied", v)
	}
	return d
}

func TestApplyDiff(t *testing.T) {
	a1 := ent("alice", `{"c":"red"}`, 1)
	a2 := ent("alice", `{"c":"blue"}`, 2)
	b1 := ent("bob", `{}`, 1)
	c1 := ent("carol", `{}`, 1)
	known := Members{"a": a1, "b": b1}
	tests := []struct {
		name      string
		doc       func(t *testing.T) *Doc
		node      string
		v         Version
		change    Diff
		want      Outcome
		wantDiff  Diff
		wantState Members
	}{
		{"first change of an unknown node applies",
			func(t *testing.T) *Doc { return NewDoc("self", 1) }, "p", Version{3, 1}, Diff{Joins: Members{"c": c1}},
			Applied, Diff{Joins: Members{"c": c1}}, Members{"c": c1}},
		{"later change of an unknown node is a gap",
			func(t *testing.T) *Doc { return NewDoc("self", 1) }, "p", Version{3, 2}, Diff{Joins: Members{"c": c1}},
			Gap, Diff{}, Members{}},
		{"next seq applies a join",
			func(t *testing.T) *Doc { return peerAt(t, Version{3, 4}, known) }, "p", Version{3, 5}, Diff{Joins: Members{"c": c1}},
			Applied, Diff{Joins: Members{"c": c1}}, Members{"a": a1, "b": b1, "c": c1}},
		{"next seq applies an update as a join with prev",
			func(t *testing.T) *Doc { return peerAt(t, Version{3, 4}, known) }, "p", Version{3, 5}, Diff{Joins: Members{"a": a2}, Prev: Members{"a": a1}},
			Applied, Diff{Joins: Members{"a": a2}, Prev: Members{"a": a1}}, Members{"a": a2, "b": b1}},
		{"next seq applies a leave",
			func(t *testing.T) *Doc { return peerAt(t, Version{3, 4}, known) }, "p", Version{3, 5}, Diff{Leaves: Members{"b": b1}},
			Applied, Diff{Leaves: Members{"b": b1}}, Members{"a": a1}},
		{"duplicate seq is stale",
			func(t *testing.T) *Doc { return peerAt(t, Version{3, 4}, known) }, "p", Version{3, 4}, Diff{Joins: Members{"c": c1}},
			Stale, Diff{}, known},
		{"old seq is stale",
			func(t *testing.T) *Doc { return peerAt(t, Version{3, 4}, known) }, "p", Version{3, 2}, Diff{Leaves: Members{"a": a1}},
			Stale, Diff{}, known},
		{"skipped seq is a gap",
			func(t *testing.T) *Doc { return peerAt(t, Version{3, 4}, known) }, "p", Version{3, 6}, Diff{Joins: Members{"c": c1}},
			Gap, Diff{}, known},
		{"new epoch at seq 1 applies from empty and replaces the old epoch",
			func(t *testing.T) *Doc { return peerAt(t, Version{3, 4}, known) }, "p", Version{4, 1}, Diff{Joins: Members{"c": c1}},
			Applied, Diff{Joins: Members{"c": c1}, Leaves: known}, Members{"c": c1}},
		{"new epoch at seq 1 keeps a member that joins again",
			func(t *testing.T) *Doc { return peerAt(t, Version{3, 4}, known) }, "p", Version{4, 1}, Diff{Joins: Members{"a": a1}},
			Applied, Diff{Leaves: Members{"b": b1}}, Members{"a": a1}},
		{"lower epoch at seq 1 also starts over (epochs are ids, not ordered)",
			func(t *testing.T) *Doc { return peerAt(t, Version{3, 4}, known) }, "p", Version{2, 1}, Diff{Joins: Members{"c": c1}},
			Applied, Diff{Joins: Members{"c": c1}, Leaves: known}, Members{"c": c1}},
		{"new epoch at seq > 1 is a gap and keeps the old members",
			func(t *testing.T) *Doc { return peerAt(t, Version{3, 4}, known) }, "p", Version{4, 2}, Diff{Joins: Members{"c": c1}},
			Gap, Diff{}, known},
		{"own diff is stale",
			func(t *testing.T) *Doc { return NewDoc("self", 1) }, "self", Version{1, 1}, Diff{Joins: Members{"c": c1}},
			Stale, Diff{}, Members{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := tt.doc(t)
			got, outcome := d.ApplyDiff(tt.node, tt.v, tt.change)
			if outcome != tt.want {
				t.Errorf("got outcome %v, want %v", outcome, tt.want)
			}
			if !sameDiff(got, tt.wantDiff) {
				t.Errorf("got diff %s, want %s", dumpDiff(got), dumpDiff(tt.wantDiff))
			}
			if st := d.State(); !sameMembers(st, tt.wantState) {
				t.Errorf("got state %s, want %s", dumpMembers(st), dumpMembers(tt.wantState))
			}
		})
	}
}

func TestApplyDiffAfterGapWaitsForSnapshot(t *testing.T) {
	a1 := ent("alice", `{}`, 1)
	b1 := ent("bob", `{}`, 1)
	d := NewDoc("self", 1)
	if _, o := d.ApplyDiff("p", Version{1, 1}, Diff{Joins: Members{"a": a1}}); o != Applied {
		t.Fatalf("seq 1: got %v, want Applied", o)
	}
	// seq 2 is lost; 3 and 4 are gaps that change nothing.
	for _, seq := range []uint64{3, 4} {
		if _, o := d.ApplyDiff("p", Version{1, seq}, Diff{Joins: Members{"b": b1}}); o != Gap {
			t.Errorf("seq %d: got %v, want Gap", seq, o)
		}
	}
	// The snapshot at 4 brings the doc up to date; 5 then applies, 4 is stale.
	if _, ok := d.ApplySnapshot("p", Version{1, 4}, Members{"b": b1}); !ok {
		t.Fatalf("snapshot at 4 not applied")
	}
	if _, o := d.ApplyDiff("p", Version{1, 4}, Diff{Joins: Members{"b": b1}}); o != Stale {
		t.Errorf("seq 4 after the snapshot: got %v, want Stale", o)
	}
	if _, o := d.ApplyDiff("p", Version{1, 5}, Diff{Leaves: Members{"b": b1}}); o != Applied {
		t.Errorf("seq 5 after the snapshot: got %v, want Applied", o)
	}
	if got := d.Len(); got != 0 {
		t.Errorf("got Len %d, want 0", got)
	}
}

func TestApplySnapshot(t *testing.T) {
	a1 := ent("alice", `{"c":"red"}`, 1)
	a2 := ent("alice", `{"c":"blue"}`, 2)
	b1 := ent("bob", `{}`, 1)
	c1 := ent("carol", `{}`, 1)
	known := Members{"a": a1, "b": b1}
	tests := []struct {
		name      string
		doc       func(t *testing.T) *Doc
		node      string
		v         Version
		members   Members
		wantOK    bool
		wantDiff  Diff
		wantState Members
	}{
		{"unknown node", func(t *testing.T) *Doc { return NewDoc("self", 1) }, "p", Version{3, 4}, known,
			true, Diff{Joins: known}, known},
		{"older seq in the same epoch is ignored", func(t *testing.T) *Doc { return peerAt(t, Version{3, 4}, known) }, "p", Version{3, 3}, Members{"c": c1},
			false, Diff{}, known},
		{"same seq applies and changes nothing", func(t *testing.T) *Doc { return peerAt(t, Version{3, 4}, known) }, "p", Version{3, 4}, known,
			true, Diff{}, known},
		{"newer seq replaces: join, update, leave", func(t *testing.T) *Doc { return peerAt(t, Version{3, 4}, known) }, "p", Version{3, 9}, Members{"a": a2, "c": c1},
			true, Diff{Joins: Members{"a": a2, "c": c1}, Leaves: Members{"b": b1}, Prev: Members{"a": a1}}, Members{"a": a2, "c": c1}},
		{"newer seq, empty", func(t *testing.T) *Doc { return peerAt(t, Version{3, 4}, known) }, "p", Version{3, 5}, Members{},
			true, Diff{Leaves: known}, Members{}},
		{"other epoch replaces whatever its seq", func(t *testing.T) *Doc { return peerAt(t, Version{3, 4}, known) }, "p", Version{4, 0}, Members{},
			true, Diff{Leaves: known}, Members{}},
		{"own snapshot is ignored", func(t *testing.T) *Doc { return NewDoc("self", 1) }, "self", Version{1, 1}, known,
			false, Diff{}, Members{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := tt.doc(t)
			got, ok := d.ApplySnapshot(tt.node, tt.v, tt.members)
			if ok != tt.wantOK {
				t.Errorf("got ok %v, want %v", ok, tt.wantOK)
			}
			if !sameDiff(got, tt.wantDiff) {
				t.Errorf("got diff %s, want %s", dumpDiff(got), dumpDiff(tt.wantDiff))
			}
			if st := d.State(); !sameMembers(st, tt.wantState) {
				t.Errorf("got state %s, want %s", dumpMembers(st), dumpMembers(tt.wantState))
			}
		})
	}
}

func TestApplySnapshotCopiesMembers(t *testing.T) {
	m := Members{"a": ent("alice", `{}`, 1)}
	d := NewDoc("self", 1)
	d.ApplySnapshot("p", Version{1, 1}, m)
	m["b"] = ent("bob", `{}`, 1)
	if got := d.Len(); got != 1 {
		t.Errorf("after changing the caller's map: got Len %d, want 1", got)
	}
}

func TestDropNode(t *testing.T) {
	a1 := ent("alice", `{}`, 1)
	b1 := ent("bob", `{}`, 1)
	c1 := ent("carol", `{}`, 1)
	tests := []struct {
		name      string
		node      string
		want      Diff
		wantState Members
		wantPeers []string
	}{
		{"known node: its members leave", "p", Diff{Leaves: Members{"a": a1, "b": b1}}, Members{"c": c1, "l": ent("local", `{}`, 1)}, []string{"empty", "q"}},
		{"node without members", "empty", Diff{}, Members{"a": a1, "b": b1, "c": c1, "l": ent("local", `{}`, 1)}, []string{"p", "q"}},
		{"unknown node", "zz", Diff{}, Members{"a": a1, "b": b1, "c": c1, "l": ent("local", `{}`, 1)}, []string{"empty", "p", "q"}},
		{"self is not a peer", "self", Diff{}, Members{"a": a1, "b": b1, "c": c1, "l": ent("local", `{}`, 1)}, []string{"empty", "p", "q"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := NewDoc("self", 1)
			d.Track("l", ent("local", `{}`, 0))
			d.ApplySnapshot("p", Version{1, 2}, Members{"a": a1, "b": b1})
			d.ApplySnapshot("q", Version{1, 1}, Members{"c": c1})
			d.ApplySnapshot("empty", Version{1, 0}, Members{})
			got := d.DropNode(tt.node)
			if !sameDiff(got, tt.want) {
				t.Errorf("got %s, want %s", dumpDiff(got), dumpDiff(tt.want))
			}
			if got.Joins != nil {
				t.Errorf("got joins %s, want none", dumpMembers(got.Joins))
			}
			if st := d.State(); !sameMembers(st, tt.wantState) {
				t.Errorf("got state %s, want %s", dumpMembers(st), dumpMembers(tt.wantState))
			}
			peers := d.Peers()
			slices.Sort(peers)
			if !slices.Equal(peers, tt.wantPeers) {
				t.Errorf("got peers %v, want %v", peers, tt.wantPeers)
			}
		})
	}
}

func TestDropNodeThenNodeStartsOver(t *testing.T) {
	d := NewDoc("self", 1)
	d.ApplySnapshot("p", Version{1, 5}, Members{"a": ent("alice", `{}`, 1)})
	d.DropNode("p")
	if _, o := d.ApplyDiff("p", Version{1, 6}, Diff{Joins: Members{"b": ent("bob", `{}`, 1)}}); o != Gap {
		t.Errorf("next diff after a drop: got %v, want Gap (the doc knows nothing of p any more)", o)
	}
	if got := d.Len(); got != 0 {
		t.Errorf("got Len %d, want 0", got)
	}
}

func TestStateLenGet(t *testing.T) {
	l1 := ent("local", `{"me":true}`, 1)
	a1 := ent("alice", `{}`, 1)
	b1 := ent("bob", `{"c":"red"}`, 1)
	d := NewDoc("self", 1)
	if got := d.State(); got == nil || len(got) != 0 || d.Len() != 0 {
		t.Fatalf("new doc: got state %s and Len %d, want {} and 0", dumpMembers(got), d.Len())
	}
	d.Track("l", ent("local", `{"me":true}`, 0))
	d.ApplySnapshot("p", Version{1, 1}, Members{"a": a1})
	d.ApplyDiff("q", Version{9, 1}, Diff{Joins: Members{"b": b1}})

	want := Members{"l": l1, "a": a1, "b": b1}
	st := d.State()
	if !sameMembers(st, want) {
		t.Errorf("got state %s, want %s", dumpMembers(st), dumpMembers(want))
	}
	if got := d.Len(); got != 3 {
		t.Errorf("got Len %d, want 3", got)
	}
	if got := d.LocalLen(); got != 1 {
		t.Errorf("got LocalLen %d, want 1", got)
	}
	// State is shared until the next change, then built anew.
	if again := d.State(); len(again) != len(st) || fmt.Sprintf("%p", again) != fmt.Sprintf("%p", st) {
		t.Errorf("State twice without a change: got a new map, want the shared one")
	}
	d.Untrack("l")
	if got := d.State(); len(got) != 2 || len(st) != 3 {
		t.Errorf("after an untrack: got states of %d (new) and %d (old), want 2 and 3", len(got), len(st))
	}
	d.Track("l", ent("local", `{"me":true}`, 0))
	for id, e := range want {
		if got, ok := d.Get(id); !ok || !got.Equal(e) {
			t.Errorf("Get(%q): got %+v, %v; want %+v, true", id, got, ok, e)
		}
	}
	if _, ok := d.Get("zz"); ok {
		t.Errorf("Get of an absent member: got ok, want not found")
	}
}
