package presence

// Version identifies a point in one instance's history of one document: Epoch changes each
// time the instance opens the document anew, Seq counts the changes within an epoch.
type Version struct {
	Epoch uint64 `json:"epoch"`
	Seq   uint64 `json:"seq"`
}

// Outcome says what a remote diff did.
type Outcome int

const (
	Applied Outcome = iota // the diff was the next change and is applied
	Stale                  // the diff is older than what is known and was ignored
	Gap                    // a change is missing: re-sync this document from that instance
)

// Doc is the presence of one document as one instance sees it: its own members (owned here)
// and the last known members of every other instance.
type Doc struct {
	self  string
	local Members
	ver   Version // of the local members
	peers map[string]*peer
	all   Members // what State returned, until the next change; shared and read-only
	bytes int     // Size of every member, local and remote
}

// Size is what a member adds to the document's presence, in bytes of JSON (about).
func Size(id string, e Entry) int { return 32 + len(id) + len(e.User) + len(e.State) }

func sizeOf(m Members) int {
	n := 0
	for id, e := range m {
		n += Size(id, e)
	}
	return n
}

// Bytes is the size of the document's whole presence: what a presence.state carries.
func (d *Doc) Bytes() int { return d.bytes }

type peer struct {
	ver     Version
	members Members
}

// NewDoc returns the presence of a document opened by instance self; epoch must differ from
// every earlier epoch of this instance for the same document.
func NewDoc(self string, epoch uint64) *Doc {
	return &Doc{self: self, local: Members{}, ver: Version{Epoch: epoch}, peers: map[string]*peer{}}
}

// Track sets a local member's entry (a join or an update) and returns the diff to publish
// with the new version; the diff is empty when nothing changed.
func (d *Doc) Track(id string, e Entry) (Diff, Version) {
	var diff Diff
	old, ok := d.local[id]
	if ok && old.User == e.User && string(old.State) == string(e.State) {
		return diff, d.ver
	}
	d.all = nil
	e.Rev = old.Rev + 1
	if ok {
		d.bytes -= Size(id, old)
		diff.join(id, e, &old)
	} else {
		diff.join(id, e, nil)
	}
	d.bytes += Size(id, e)
	d.local[id] = e
	d.ver.Seq++
	return diff, d.ver
}

// Untrack removes a local member and returns the leave to publish; it reports false when
// the member was not present.
func (d *Doc) Untrack(id string) (Diff, Version, bool) {
	var diff Diff
	old, ok := d.local[id]
	if !ok {
		return diff, d.ver, false
	}
	delete(d.local, id)
	d.all = nil
	d.bytes -= Size(id, old)
	diff.leave(id, old)
	d.ver.Seq++
	return diff, d.ver, true
}

// Local returns a copy of this instance's members and their version, for a snapshot.
func (d *Doc) Local() (Members, Version) { return d.local.Clone(), d.ver }

// LocalLen is the number of local members present.
func (d *Doc) LocalLen() int { return len(d.local) }

// ApplyDiff applies a diff that node published at version v. A diff that is not the next
// change of the version known for node is ignored; the outcome says whether a snapshot is
// needed. A diff that starts a new epoch at its first change applies from empty.
func (d *Doc) ApplyDiff(node string, v Version, change Diff) (Diff, Outcome) {
	if node == d.self {
		return Diff{}, Stale
	}
	p := d.peers[node]
	switch {
	case p == nil || p.ver.Epoch != v.Epoch:
		if v.Seq != 1 {
			return Diff{}, Gap
		}
		// A new epoch starts from empty: what the old epoch held is gone.
		return d.replace(node, v, applyTo(Members{}, change)), Applied
	case v.Seq <= p.ver.Seq:
		return Diff{}, Stale
	case v.Seq > p.ver.Seq+1:
		return Diff{}, Gap
	}
	return d.replace(node, v, applyTo(p.members.Clone(), change)), Applied
}

func applyTo(m Members, change Diff) Members {
	for id := range change.Leaves {
		delete(m, id)
	}
	for id, e := range change.Joins {
		m[id] = e
	}
	return m
}

// ApplySnapshot replaces what is known of node's members with members at version v, unless
// the known version is newer within the same epoch; it returns the resulting change.
func (d *Doc) ApplySnapshot(node string, v Version, members Members) (Diff, bool) {
	if node == d.self {
		return Diff{}, false
	}
	if p := d.peers[node]; p != nil && p.ver.Epoch == v.Epoch && p.ver.Seq > v.Seq {
		return Diff{}, false
	}
	return d.replace(node, v, members.Clone()), true
}

// DropNode forgets node (it died or left) and returns the leaves of its members.
func (d *Doc) DropNode(node string) Diff {
	p := d.peers[node]
	if p == nil {
		return Diff{}
	}
	delete(d.peers, node)
	d.all = nil
	d.bytes -= sizeOf(p.members)
	return Between(p.members, nil)
}

func (d *Doc) replace(node string, v Version, members Members) Diff {
	var old Members
	if p := d.peers[node]; p != nil {
		old = p.members
	}
	d.peers[node] = &peer{ver: v, members: members}
	d.all = nil
	d.bytes += sizeOf(members) - sizeOf(old)
	return Between(old, members)
}

// Get returns the entry of the member id, wherever it is held.
func (d *Doc) Get(id string) (Entry, bool) {
	if e, ok := d.local[id]; ok {
		return e, true
	}
	for _, p := range d.peers {
		if e, ok := p.members[id]; ok {
			return e, true
		}
	}
	return Entry{}, false
}

// State returns every member present in the document, local and remote. The map is shared
// by every caller until the next change: it must not be modified.
func (d *Doc) State() Members {
	if d.all != nil {
		return d.all
	}
	n := len(d.local)
	for _, p := range d.peers {
		n += len(p.members)
	}
	all := make(Members, n)
	for _, p := range d.peers {
		for id, e := range p.members {
			all[id] = e
		}
	}
	for id, e := range d.local {
		all[id] = e
	}
	d.all = all
	return all
}

// Peers returns the instances this document has heard from.
func (d *Doc) Peers() []string {
	ids := make([]string, 0, len(d.peers))
	for id := range d.peers {
		ids = append(ids, id)
	}
	return ids
}

// Len is the number of members present in the document, local and remote.
func (d *Doc) Len() int {
	n := len(d.local)
	for _, p := range d.peers {
		n += len(p.members)
	}
	return n
}
