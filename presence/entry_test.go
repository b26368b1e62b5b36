package presence

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"testing"
)

// ent returns an entry with a JSON state.
func ent(user, state string, rev uint64) Entry {
	return Entry{User: user, State: json.RawMessage(state), Rev: rev}
}

// dumpMembers prints m in id order, for messages and comparisons.
func dumpMembers(m Members) string {
	if m == nil {
		return "nil"
	}
	ids := make([]string, 0, len(m))
	for id := range m {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	var b strings.Builder
	b.WriteByte('{')
	for i, id := range ids {
		if i > 0 {
			b.WriteString(", ")
		}
		e := m[id]
		fmt.Fprintf(&b, "%s:%s/%s/r%d", id, e.User, e.State, e.Rev)
	}
	b.WriteByte('}')
	return b.String()
}

func dumpDiff(d Diff) string {
	return fmt.Sprintf("joins=%s leaves=%s prev=%s", dumpMembers(d.Joins), dumpMembers(d.Leaves), dumpMembers(d.Prev))
}

// sameMembers compares two member sets entry by entry; a nil map equals an empty one.
func sameMembers(a, b Members) bool {
	if len(a) != len(b) {
		return false
	}
	for id, e := range a {
		o, ok := b[id]
		if !ok || !e.Equal(o) {
			return false
		}
	}
	return true
}

func sameDiff(a, b Diff) bool {
	return sameMembers(a.Joins, b.Joins) && sameMembers(a.Leaves, b.Leaves) && sameMembers(a.Prev, b.Prev)
}

func TestEntryEqual(t *testing.T) {
	base := ent("alice", `{"c":"red"}`, 1)
	tests := []struct {
		name string
		o    Entry
		want bool
	}{
		{"identical", ent("alice", `{"c":"red"}`, 1), true},
		{"other user", ent("bob", `{"c":"red"}`, 1), false},
		{"other state", ent("alice", `{"c":"blue"}`, 1), false},
		{"other rev", ent("alice", `{"c":"red"}`, 2), false},
		{"state bytes differ in white space", ent("alice", `{"c": "red"}`, 1), false},
		{"nil state", Entry{User: "alice", Rev: 1}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := base.Equal(tt.o); got != tt.want {
				t.Errorf("got %v, want %v", got, tt.want)
			}
			if got := tt.o.Equal(base); got != tt.want {
				t.Errorf("reversed: got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestMembersClone(t *testing.T) {
	m := Members{"a": ent("alice", `{}`, 1)}
	c := m.Clone()
	c["b"] = ent("bob", `{}`, 1)
	delete(c, "a")
	if got, want := dumpMembers(m), "{a:alice/{}/r1}"; got != want {
		t.Errorf("original after changing the clone: got %s, want %s", got, want)
	}
	if got := Members(nil).Clone(); got == nil || len(got) != 0 {
		t.Errorf("clone of nil: got %#v, want an empty non-nil map", got)
	}
}

func TestDiffEmpty(t *testing.T) {
	tests := []struct {
		name string
		d    Diff
		want bool
	}{
		{"zero", Diff{}, true},
		{"empty maps", Diff{Joins: Members{}, Leaves: Members{}}, true},
		{"prev only", Diff{Prev: Members{"a": ent("alice", `{}`, 1)}}, true},
		{"a join", Diff{Joins: Members{"a": ent("alice", `{}`, 1)}}, false},
		{"a leave", Diff{Leaves: Members{"a": ent("alice", `{}`, 1)}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.d.Empty(); got != tt.want {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestBetween(t *testing.T) {
	a1 := ent("alice", `{"c":"red"}`, 1)
	a2 := ent("alice", `{"c":"blue"}`, 2)
	b1 := ent("bob", `{}`, 1)
	c1 := ent("carol", `{}`, 1)
	tests := []struct {
		name     string
		from, to Members
		want     Diff
	}{
		{"nil to nil", nil, nil, Diff{}},
		{"unchanged", Members{"a": a1, "b": b1}, Members{"a": a1, "b": b1}, Diff{}},
		{"join from nil", nil, Members{"a": a1}, Diff{Joins: Members{"a": a1}}},
		{"leave to nil", Members{"a": a1}, nil, Diff{Leaves: Members{"a": a1}}},
		{"update is a join with prev, no leave", Members{"a": a1}, Members{"a": a2},
			Diff{Joins: Members{"a": a2}, Prev: Members{"a": a1}}},
		{"rev alone is an update", Members{"a": a1}, Members{"a": ent("alice", `{"c":"red"}`, 5)},
			Diff{Joins: Members{"a": ent("alice", `{"c":"red"}`, 5)}, Prev: Members{"a": a1}}},
		{"join, update and leave at once", Members{"a": a1, "b": b1}, Members{"a": a2, "c": c1},
			Diff{Joins: Members{"a": a2, "c": c1}, Leaves: Members{"b": b1}, Prev: Members{"a": a1}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Between(tt.from, tt.to)
			if !sameDiff(got, tt.want) {
				t.Errorf("got %s, want %s", dumpDiff(got), dumpDiff(tt.want))
			}
			if got.Empty() != tt.want.Empty() {
				t.Errorf("Empty: got %v, want %v", got.Empty(), tt.want.Empty())
			}
			// Applying the diff to from must give to.
			if applied := applyTo(tt.from.Clone(), got); !sameMembers(applied, tt.to) {
				t.Errorf("from + diff: got %s, want %s", dumpMembers(applied), dumpMembers(tt.to))
			}
		})
	}
}

func TestDiffJSON(t *testing.T) {
	d := Between(Members{"a": ent("alice", `{}`, 1)}, Members{"a": ent("alice", `{"x":1}`, 2)})
	b, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	var back Diff
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if !sameDiff(back, d) {
		t.Errorf("JSON round trip of %s: got %s, want %s", b, dumpDiff(back), dumpDiff(d))
	}
}
