// Package presence is the presence model of collabd: who is in a document, as one instance
// sees it. It is pure: no I/O, no goroutines, no clock of its own. Each instance owns the
// members it holds (the Phoenix tracker model, without a database) and learns the others'
// through diffs and snapshots that carry a per-(instance, document) sequence number.
package presence

import (
	"bytes"
	"encoding/json"
)

// Entry is one member's presence: the user behind the session and its small state.
type Entry struct {
	User  string          `json:"user"`
	State json.RawMessage `json:"state"`
	// Rev counts the changes of this member's state, starting at 1; Phoenix clients need a
	// fresh reference per version to tell an update from a second tab.
	Rev uint64 `json:"rev,omitempty"`
}

// Equal reports whether e and o describe the same member state.
func (e Entry) Equal(o Entry) bool {
	return e.User == o.User && e.Rev == o.Rev && bytes.Equal(e.State, o.State)
}

// Members maps session ids to their entries.
type Members map[string]Entry

// Clone returns a copy of m that shares no map with it.
func (m Members) Clone() Members {
	c := make(Members, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}

// Diff is a change of presence. A member whose state changed appears in Joins only (no
// leave-then-join flicker), with its previous entry in Prev for clients (Phoenix) that
// describe an update as a join plus a leave of the old version.
type Diff struct {
	Joins  Members `json:"joins"`
	Leaves Members `json:"leaves"`
	Prev   Members `json:"prev,omitempty"`
}

// Empty reports whether d changes nothing.
func (d Diff) Empty() bool { return len(d.Joins) == 0 && len(d.Leaves) == 0 }

func (d *Diff) join(id string, e Entry, prev *Entry) {
	if d.Joins == nil {
		d.Joins = Members{}
	}
	d.Joins[id] = e
	if prev != nil {
		if d.Prev == nil {
			d.Prev = Members{}
		}
		d.Prev[id] = *prev
	}
}

func (d *Diff) leave(id string, e Entry) {
	if d.Leaves == nil {
		d.Leaves = Members{}
	}
	d.Leaves[id] = e
}

// Between returns the diff that turns from into to.
func Between(from, to Members) Diff {
	var d Diff
	for id, e := range to {
		old, ok := from[id]
		switch {
		case !ok:
			d.join(id, e, nil)
		case !old.Equal(e):
			d.join(id, e, &old)
		}
	}
	for id, e := range from {
		if _, ok := to[id]; !ok {
			d.leave(id, e)
		}
	}
	return d
}
