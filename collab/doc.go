package collab

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"time"

	"collabd/presence"
)

// doc is a document with members on this instance. It is subscribed to the document's
// subjects while it exists; one subscription carries cursors, broadcasts and presence, so
// that another instance's messages are handled in the order it sent them.
type doc struct {
	id      string
	hub     *Hub
	subject func(kind string) string

	ready   chan struct{} // closed once open finished
	openErr error         // set before ready closes
	joining int           // guarded by hub.mu: joins in progress

	mu       sync.Mutex
	sessions map[*Session]struct{}    // guarded by mu: local members
	pres     *presence.Doc            // guarded by mu
	cur      docCursors               // guarded by mu (cursors.go)
	closed   bool                     // guarded by mu: removed from the hub
	parts    map[string]*snapAssembly // guarded by mu: snapshots arriving in parts, by instance

	epoch     uint64                  // this opening of the document (the presence epoch)
	bseq      uint64                  // guarded by mu: broadcasts published from here
	sent      []sentBcast             // guarded by mu: the last of them, for replays
	sentBytes int                     // guarded by mu
	streams   map[string]*bcastStream // guarded by mu: other instances' broadcasts, by instance
	waiting   map[string]bool         // guarded by mu: instances whose first snapshot open awaits
	answered  chan struct{}           // closed when waiting empties
	unsub     func() error            // guarded by mu
}

func newDoc(h *Hub, id string, epoch uint64) *doc {
	return &doc{
		id:       id,
		epoch:    epoch,
		hub:      h,
		subject:  func(kind string) string { return h.bus.DocSubject(id, kind) },
		ready:    make(chan struct{}),
		sessions: map[*Session]struct{}{},
		pres:     presence.NewDoc(h.cfg.Node, epoch),
		cur:      docCursors{states: map[string]*cursorState{}},
		answered: make(chan struct{}),
	}
}

// openTimeout bounds subscribing to a document's subjects.
const openTimeout = 5 * time.Second

// open subscribes to the document, confirms the subscription with the server, then asks
// the other instances for their members and waits for the answers of every instance known
// alive, or SyncTimeout. Answers that come later arrive as presence diffs.
func (d *doc) open(ctx context.Context) {
	defer close(d.ready)
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), openTimeout)
	defer cancel()
	unsub, err := d.hub.bus.Subscribe(d.subject("*"), d.onMessage)
	if err != nil {
		d.openErr = fmt.Errorf("open %q: %w", d.id, err)
		return
	}
	d.mu.Lock()
	d.unsub = unsub
	d.mu.Unlock()
	if !d.hub.bus.Connected() {
		// The document works locally; the subscription takes effect on reconnection, when
		// the hub re-announces and re-syncs every open document.
		return
	}
	if err := d.hub.bus.Flush(ctx); err != nil {
		d.hub.log.Warn("document opened without confirmed subscription", "doc", d.id, "err", err)
		return
	}
	peers := d.hub.alivePeers()
	d.mu.Lock()
	d.waiting = map[string]bool{}
	for _, p := range peers {
		d.waiting[p] = true
	}
	if len(d.waiting) == 0 {
		close(d.answered)
	}
	d.mu.Unlock()
	start := time.Now()
	d.requestSync("")
	t := time.NewTimer(d.hub.cfg.SyncTimeout)
	defer t.Stop()
	select {
	case <-d.answered:
	case <-t.C:
	}
	d.hub.cfg.OnSync(time.Since(start))
}

func (d *doc) unsubscribe() error {
	d.mu.Lock()
	u := d.unsub
	d.unsub = nil
	d.mu.Unlock()
	if u == nil {
		return nil
	}
	return u()
}

// add makes s a member: welcome, then (present) a join for everyone else, then the state
// and the last known cursors for s.
func (d *doc) add(s *Session) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.hub.drained.Load() {
		// Drain closes the members it finds under d.mu: one added after it must not stay.
		return ErrShutdown
	}
	if d.pres.Len() >= d.hub.cfg.MaxMembers {
		return ErrDocumentFull
	}
	d.sessions[s] = struct{}{}
	s.Out.push(Event{Session: s, Kind: EventWelcome})
	if s.opts.Present {
		d.trackLocked(s, emptyState, s)
	}
	if s.opts.Presence {
		s.Out.push(Event{Session: s, Kind: EventPresenceState, State: d.pres.State()})
	}
	d.joinCursorsLocked(s)
	return nil
}

// remove ends s's membership; publish is false while the instance drains (its goodbye
// already told the others).
func (d *doc) remove(s *Session, publish bool) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if s.left {
		return false
	}
	s.left = true
	delete(d.sessions, s)
	if diff, v, ok := d.pres.Untrack(s.ID); ok {
		d.applyLocked(diff)
		if publish {
			d.publishDiffLocked(diff, v)
		}
	}
	d.hideCursorLocked(s.ID)
	return true
}

// track sets s's presence state and acknowledges ref, or refuses a state that would take
// the document's presence over its limit.
func (d *doc) track(s *Session, ref string, state json.RawMessage) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if s.left {
		return
	}
	e := presence.Entry{User: s.User, State: state}
	grow := presence.Size(s.ID, e)
	if old, ok := d.pres.Get(s.ID); ok {
		grow -= presence.Size(s.ID, old)
	}
	if grow > 0 && d.pres.Bytes()+grow > d.hub.cfg.MaxPresenceBytes {
		s.fail(ref, Errorf(ErrCodePresenceFull, "the presence of %q is full (%d bytes): track a smaller state", d.id, d.hub.cfg.MaxPresenceBytes))
		return
	}
	s.ok(ref)
	d.trackLocked(s, state, nil)
}

// trackLocked sets s's presence and tells everyone but except.
func (d *doc) trackLocked(s *Session, state json.RawMessage, except *Session) {
	diff, v := d.pres.Track(s.ID, presence.Entry{User: s.User, State: state})
	if diff.Empty() {
		return
	}
	d.deliverDiffLocked(diff, except)
	d.publishDiffLocked(diff, v)
}

func (d *doc) untrack(s *Session) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if s.left {
		return
	}
	if diff, v, ok := d.pres.Untrack(s.ID); ok {
		d.applyLocked(diff)
		d.publishDiffLocked(diff, v)
	}
}

// applyLocked delivers a presence change and withdraws the cursors of those who left.
func (d *doc) applyLocked(diff presence.Diff) {
	if diff.Empty() {
		return
	}
	d.deliverDiffLocked(diff, nil)
	for id := range diff.Leaves {
		d.hideCursorLocked(id)
	}
}

func (d *doc) deliverDiffLocked(diff presence.Diff, except *Session) {
	for s := range d.sessions {
		if s != except && s.opts.Presence {
			d.deliverLocked(s, Event{Session: s, Kind: EventPresenceDiff, Diff: diff})
		}
	}
}

func (d *doc) publishDiffLocked(diff presence.Diff, v presence.Version) {
	env := presenceEnvelope{Node: d.hub.cfg.Node, Type: presenceDiff, V: v, Joins: diff.Joins, Leaves: diff.Leaves}
	if err := d.hub.publish(d.subject(kindPresence), env); err != nil {
		d.hub.publishFailed("presence", d.id, err)
	}
}

func (d *doc) broadcast(s *Session, name string, data json.RawMessage, binary bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if s.left {
		return
	}
	env := bcastEnvelope{Node: d.hub.cfg.Node, From: s.ID, Event: name, Data: data, Binary: binary}
	d.deliverBroadcastLocked(s, env)
	d.publishBroadcastLocked(env)
}

func (d *doc) deliverBroadcast(sender *Session, env bcastEnvelope) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.deliverBroadcastLocked(sender, env)
}

// deliverBroadcastLocked gives a broadcast to every local member but its sender (unless
// the sender asked for its own).
func (d *doc) deliverBroadcastLocked(sender *Session, env bcastEnvelope) {
	for s := range d.sessions {
		if s == sender && !s.opts.SelfBroadcast {
			continue
		}
		d.deliverLocked(s, Event{Session: s, Kind: EventBroadcast, From: env.From, Name: env.Event, Data: env.Data, Binary: env.Binary})
	}
}

// deliverLocked queues ev for s; a session too slow to take it is evicted, so that it
// leaves at once for everyone, while its connection is still closing.
func (d *doc) deliverLocked(s *Session, ev Event) {
	if !s.Out.push(ev) {
		d.hub.evict(s)
	}
}

// onMessage handles what another instance published on this document.
func (d *doc) onMessage(subject string, data []byte) {
	kind := subject[strings.LastIndexByte(subject, '.')+1:]
	var err error
	switch kind {
	case kindCursor:
		var env cursorEnvelope
		if env, err = decodeCursorEnvelope(data); err == nil {
			d.onCursors(env)
		}
	case kindBcast:
		var env bcastEnvelope
		if err = json.Unmarshal(data, &env); err == nil {
			d.onBroadcast(env)
		}
	case kindReplay:
		var env replayEnvelope
		if err = json.Unmarshal(data, &env); err == nil {
			d.onReplay(env)
		}
	case kindPresence:
		var env presenceEnvelope
		if err = json.Unmarshal(data, &env); err == nil {
			d.onPresence(env)
		}
	}
	if err != nil {
		d.hub.log.Warn("bad bus message", "subject", subject, "err", err)
	}
}

func (d *doc) onBroadcast(env bcastEnvelope) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.closed && env.Node != d.hub.cfg.Node {
		d.onBroadcastLocked(env)
	}
}

func (d *doc) onPresence(env presenceEnvelope) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed || env.Node == d.hub.cfg.Node || d.hub.isDead(env.Node) {
		return
	}
	switch env.Type {
	case presenceDiff:
		change, outcome := d.pres.ApplyDiff(env.Node, env.V, presence.Diff{Joins: env.Joins, Leaves: env.Leaves})
		switch outcome {
		case presence.Applied:
			d.applyLocked(change)
		case presence.Gap:
			d.hub.log.Debug("presence gap, re-syncing", "doc", d.id, "from", env.Node)
			d.requestSyncLocked(env.Node)
		}
	case presenceSnap:
		if env.Part == 0 {
			d.sawBroadcastSeqLocked(env.Node, env.V.Epoch, env.Bcast)
		}
		members, whole := d.assembleLocked(env)
		if !whole {
			return
		}
		if change, ok := d.pres.ApplySnapshot(env.Node, env.V, members); ok {
			d.applyLocked(change)
		}
		if d.waiting[env.Node] {
			delete(d.waiting, env.Node)
			if len(d.waiting) == 0 {
				close(d.answered)
			}
		}
	}
}

// assembleLocked gathers the parts of a snapshot from env.Node; it returns the members and
// true once the snapshot is whole. Part 0 starts a snapshot anew, so a part lost in a
// reconnection only delays the sender's members until its next snapshot.
func (d *doc) assembleLocked(env presenceEnvelope) (presence.Members, bool) {
	if env.Parts <= 1 {
		delete(d.parts, env.Node)
		return env.Members, true
	}
	a := d.parts[env.Node]
	switch {
	case env.Part == 0:
		if d.parts == nil {
			d.parts = map[string]*snapAssembly{}
		}
		a = &snapAssembly{v: env.V, parts: env.Parts, members: presence.Members{}}
		d.parts[env.Node] = a
	case a == nil || a.v != env.V || a.parts != env.Parts || a.next != env.Part:
		delete(d.parts, env.Node) // a part is missing: wait for the next snapshot
		return nil, false
	}
	if len(a.members)+len(env.Members) > d.hub.cfg.MaxMembers {
		delete(d.parts, env.Node)
		d.hub.log.Warn("snapshot larger than the member limit ignored", "doc", d.id, "from", env.Node)
		return nil, false
	}
	for id, e := range env.Members {
		a.members[id] = e
	}
	if a.next++; a.next < a.parts {
		return nil, false
	}
	delete(d.parts, env.Node)
	return a.members, true
}

// snapAssembly is a snapshot whose parts are arriving.
type snapAssembly struct {
	v       presence.Version
	parts   int
	next    int // the part expected next
	members presence.Members
}

// dropNode removes the members of a dead or departed instance.
func (d *doc) dropNode(node string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.parts, node) // its broadcast stream stays: if it comes back, its missed broadcasts are asked for
	d.applyLocked(d.pres.DropNode(node))
	d.hideNodeCursorsLocked(node)
}

// announce publishes this instance's members of the document.
func (d *doc) announce() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.announceLocked()
}

func (d *doc) announceLocked() {
	members, v := d.pres.Local()
	total := 0
	for _, env := range snapshotParts(d.hub.cfg.Node, v, members, d.bseq) {
		data, err := json.Marshal(env)
		if err == nil {
			total += len(data)
			err = d.hub.bus.Publish(d.subject(kindPresence), data)
		}
		if err != nil {
			d.hub.publishFailed("snapshot", d.id, err)
			return
		}
	}
	d.hub.cfg.OnSnapshot(total)
}

func (d *doc) requestSync(to string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.requestSyncLocked(to)
}

// requestSyncLocked asks every instance (or only to) for its members of the document.
func (d *doc) requestSyncLocked(to string) {
	if err := d.hub.publish(d.subject(kindSync), syncEnvelope{Node: d.hub.cfg.Node, To: to}); err != nil {
		d.hub.publishFailed("sync request", d.id, err)
	}
}

// state returns the document's whole presence, shared and read-only.
func (d *doc) state() presence.Members {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.pres.State()
}

// sendState gives every local member the document's whole presence again.
func (d *doc) sendState() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return
	}
	state := d.pres.State()
	for s := range d.sessions {
		if s.opts.Presence {
			d.deliverLocked(s, Event{Session: s, Kind: EventPresenceState, State: state})
		}
	}
}

func (d *doc) closeSessions(err *CloseError) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for s := range d.sessions {
		s.Out.Close(err)
	}
}
