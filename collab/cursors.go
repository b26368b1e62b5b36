package collab

import (
	"bytes"
	"encoding/json"
	"errors"
	"sync"
	"time"
)

// The cursor path of a document.
//
// A cursor change (a local member's, or another instance's) updates the document's latest
// cursor of that sender and marks it pending; nothing is sent yet. Time is cut into ticks
// (Config.CursorTick) on wall-clock boundaries, the same on every instance. At the
// boundary after a change, the local senders' pending changes go to the other instances
// in one bus message; a moment later (cursorGrace), when the other instances' messages of
// that boundary have arrived, the document delivers: the pending entries, local and
// remote, become one CursorBatch, queued by reference in every local member's outbox and
// encoded once for all of them. So the work per incoming cursor does not grow with the
// number of recipients, every recipient gets one cursors frame per document and tick
// however many instances the document spans, and a cursor from another instance is as
// late as a local one plus the bus hop (clocks that disagree by more than cursorGrace
// cost it up to a tick more).
//
// An overloaded instance lengthens its tick (cursorClock.tick): the clock that runs the
// cycles falls behind when the CPU is short, and fewer, fuller frames are cheaper. The
// tick comes back as the clock keeps time.
//
// A delivery takes at most Config.CursorFrameMax entries, oldest change first; the rest
// stay pending, latest wins, for the next one. And a document's next delivery waits until
// its deliveries (entries times recipients) fit Config.CursorBudget per second: a very
// large document gets its cursors thinned to what the budget allows instead of growing
// the work.
//
// A hide (null) goes only to members that were shown the position: a second null, or a
// null for a position no delivery carried, is not relayed, and a member that joined after
// the change never gets it (its snapshot already had the result). A member that leaves has
// its cursor hidden this way on every instance.

// cursorState is the latest cursor of one sender in a document.
type cursorState struct {
	data        json.RawMessage // nil: hidden (kept only while the hide is pending or unpublished)
	node        string          // the sender's instance
	sender      *Session        // the local sender, or nil
	seq         uint64          // the change number of data
	pending     bool            // in docCursors.order: not yet delivered here
	unpublished bool            // in docCursors.pub: a local change not yet published

	flushedVisible   bool   // the last delivery of this sender carried a position
	publishedVisible bool   // the last publish of this sender carried a position
	visibleSince     uint64 // while !flushedVisible: the change that showed it
}

// gone reports whether a hidden state has nothing left to send.
func (st *cursorState) gone() bool { return st.data == nil && !st.pending && !st.unpublished }

// docCursors is the cursor part of a doc; guarded by doc.mu.
type docCursors struct {
	states   map[string]*cursorState // every cursor shown here, and hides not yet delivered or published
	order    []string                // senders with a pending change, oldest change first (may repeat or hold stale ids)
	pub      []string                // local senders with an unpublished change (may repeat or hold stale ids)
	seq      uint64                  // counts cursor changes and joins
	lastJoin uint64                  // seq of the latest join
	queued   bool                    // a cycle (publish, then deliver) is scheduled
	gen      uint64                  // counts deliveries: what was scheduled before one is void
	// deliverAt is when the scheduled cycle delivers; notBefore is when a thinned document
	// may deliver again (zero: not thinned).
	deliverAt, notBefore time.Time
}

// DefaultCursorTick is Config.CursorTick when none is set.
const DefaultCursorTick = 10 * time.Millisecond

// cursorGrace is how long after a tick boundary a document delivers: the other instances'
// bus messages of that boundary arrive meanwhile.
func cursorGrace(tick time.Duration) time.Duration { return min(2*time.Millisecond, tick/4) }

var nullCursor = json.RawMessage("null")

// cursor takes s's cursor.
func (d *doc) cursor(s *Session, data json.RawMessage) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if s.left || d.closed {
		return
	}
	d.setCursorLocked(s.ID, data, s, d.hub.cfg.Node)
}

// setCursorLocked records the latest cursor of sender id (of instance node; sender is the
// local session, or nil) and schedules its cycle.
func (d *doc) setCursorLocked(id string, data json.RawMessage, sender *Session, node string) {
	c := &d.cur
	st := c.states[id]
	if isNull(data) {
		if st == nil || st.data == nil {
			return // nothing shown: nothing to hide
		}
		c.seq++
		if !st.flushedVisible && !st.publishedVisible && c.lastJoin < st.visibleSince {
			// Only a change still pending here and unpublished showed it, and nobody
			// joined since: nobody saw it.
			delete(c.states, id)
			st.pending, st.unpublished = false, false
			return
		}
		st.data, st.seq = nil, c.seq
		d.pendLocked(id, st)
		return
	}
	if st == nil {
		st = &cursorState{}
		c.states[id] = st
	}
	c.seq++
	if st.data == nil && !st.flushedVisible && !st.pending {
		st.visibleSince = c.seq
	}
	st.data, st.node, st.sender, st.seq = data, node, sender, c.seq
	d.pendLocked(id, st)
}

func (d *doc) pendLocked(id string, st *cursorState) {
	c := &d.cur
	if !st.pending {
		st.pending = true
		c.order = append(c.order, id)
	}
	if st.node == d.hub.cfg.Node && !st.unpublished {
		st.unpublished = true
		c.pub = append(c.pub, id)
	}
	if !c.queued {
		d.scheduleLocked(time.Now())
	}
}

// scheduleLocked starts a cycle: publish at the next tick boundary, deliver cursorGrace
// later (or when a thinned document may).
func (d *doc) scheduleLocked(now time.Time) {
	c := &d.cur
	tick := d.hub.cursorClock.tick()
	publishAt := now.Truncate(tick).Add(tick)
	c.queued = true
	c.deliverAt = publishAt.Add(cursorGrace(tick))
	if c.deliverAt.Before(c.notBefore) {
		c.deliverAt = c.notBefore
	}
	d.hub.cursorClock.at(d, c.gen, true, publishAt)
	d.hub.cursorClock.at(d, c.gen, false, c.deliverAt)
}

// hideCursorLocked withdraws the cursor of member id (it left), for everyone shown it.
func (d *doc) hideCursorLocked(id string) {
	if st := d.cur.states[id]; st != nil {
		d.setCursorLocked(id, nil, st.sender, st.node)
	}
}

// hideNodeCursorsLocked withdraws the cursors of every member of a dead or departed
// instance, present or not.
func (d *doc) hideNodeCursorsLocked(node string) {
	for id, st := range d.cur.states {
		if st.node == node {
			d.hideCursorLocked(id)
		}
	}
}

// joinCursorsLocked starts s's cursors: later changes only, after a snapshot of every
// cursor shown.
func (d *doc) joinCursorsLocked(s *Session) {
	c := &d.cur
	c.seq++
	c.lastJoin = c.seq
	s.cursorJoin = c.seq
	if !s.opts.Cursors {
		return
	}
	var entries []CursorEntry
	for id, st := range c.states {
		if st.data != nil {
			entries = append(entries, CursorEntry{ID: id, Data: st.data, sender: st.sender, seq: st.seq})
		}
	}
	if len(entries) > 0 {
		s.Out.putCursors(s, &CursorBatch{Entries: entries, snapshot: true})
	}
}

// clockDue runs what the cursor clock scheduled in cycle gen: void when the document
// delivered since.
func (d *doc) clockDue(gen uint64, publish bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if gen != d.cur.gen {
		return
	}
	if publish {
		d.publishPendingLocked()
	} else {
		d.deliverCursorsLocked()
	}
}

// publishPendingLocked sends the local senders' unpublished changes to the other
// instances. It runs under the lock, so that it is ordered with this document's presence
// messages: a member's last position never reaches the others after its leave.
func (d *doc) publishPendingLocked() {
	c := &d.cur
	if len(c.pub) == 0 {
		return
	}
	entries := make([]CursorEntry, 0, len(c.pub))
	for _, id := range c.pub {
		st := c.states[id]
		if st == nil || !st.unpublished {
			continue // hidden before anyone saw it, or a repeat
		}
		st.unpublished = false
		e := CursorEntry{ID: id, Data: st.data}
		if st.data == nil {
			e.Data = nullCursor
		}
		st.publishedVisible = st.data != nil
		entries = append(entries, e)
		if st.gone() {
			delete(c.states, id)
		}
	}
	clear(c.pub)
	c.pub = c.pub[:0]
	if cap(c.pub) > 1024 {
		c.pub = nil // shrink after a storm
	}
	d.publishCursorsLocked(entries)
}

// deliverCursorsLocked hands the pending cursors to the local members as one batch (at most
// CursorFrameMax of them, oldest change first), ends the cycle, and starts the next one
// if anything is left.
func (d *doc) deliverCursorsLocked() {
	c := &d.cur
	c.queued = false
	c.gen++
	c.notBefore = time.Time{}
	cfg := &d.hub.cfg
	var entries []CursorEntry
	i := 0
	for ; i < len(c.order) && len(entries) < cfg.CursorFrameMax; i++ {
		id := c.order[i]
		st := c.states[id]
		if st == nil || !st.pending {
			continue // hidden before anyone saw it, or a repeat
		}
		st.pending = false
		e := CursorEntry{ID: id, Data: st.data, sender: st.sender, seq: st.seq}
		if st.data == nil {
			e.Data = nullCursor
			if !st.flushedVisible {
				e.needFrom = st.visibleSince
			}
		}
		st.flushedVisible = st.data != nil
		if st.gone() {
			delete(c.states, id)
		}
		entries = append(entries, e)
	}
	n := copy(c.order, c.order[i:])
	clear(c.order[n:])
	c.order = c.order[:n]
	if cap(c.order) > 1024 && n < cap(c.order)/4 {
		c.order = append([]string(nil), c.order...) // shrink after a storm
	}
	recipients := 0
	if len(entries) > 0 && !d.closed {
		b := &CursorBatch{Entries: entries, minSeq: entries[0].seq}
		for j := range entries {
			b.minSeq = min(b.minSeq, entries[j].seq)
			b.needFrom = max(b.needFrom, entries[j].needFrom)
		}
		for s := range d.sessions {
			if s.opts.Cursors {
				s.Out.putCursors(s, b)
				recipients++
			}
		}
	}
	if d.closed {
		clear(c.order)
		c.order = c.order[:0]
	}
	now := time.Now()
	if len(c.order) > 0 {
		// Thinning: the next delivery waits until this one's deliveries fit the budget.
		if wait := time.Duration(len(entries)*recipients) * time.Second / time.Duration(cfg.CursorBudget); wait > 0 {
			c.notBefore = now.Add(wait)
		}
	}
	if len(c.order) > 0 || len(c.pub) > 0 {
		d.scheduleLocked(now)
	}
}

// publishCursorsLocked sends local entries to the other instances, in messages below
// maxCursorMessage bytes.
func (d *doc) publishCursorsLocked(entries []CursorEntry) {
	if len(entries) == 0 {
		return
	}
	bp := messagePool.Get().(*[]byte)
	defer messagePool.Put(bp)
	for len(entries) > 0 {
		*bp, entries = appendCursorEnvelope((*bp)[:0], d.hub.cfg.Node, entries, maxCursorMessage)
		if err := d.hub.bus.Publish(d.subject(kindCursor), *bp); err != nil {
			d.hub.publishFailed("cursors", d.id, err)
			return
		}
	}
}

// messagePool holds the buffers bus messages of cursors are encoded in (the bus copies
// what it is given).
var messagePool = sync.Pool{New: func() any { b := make([]byte, 0, 4<<10); return &b }}

// onCursors takes another instance's cursors, published at a tick boundary there. They
// are delivered with this instance's cycle of that boundary: at its grace time, or at once
// if that passed (unless the document is thinned).
func (d *doc) onCursors(env cursorEnvelope) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed || env.Node == d.hub.cfg.Node || d.hub.isDead(env.Node) {
		return
	}
	for _, c := range env.Cursors {
		if c.ID != "" {
			d.setCursorLocked(c.ID, c.Data, nil, env.Node)
		}
	}
	c := &d.cur
	if len(c.order) == 0 {
		return
	}
	now := time.Now()
	tick := d.hub.cursorClock.tick()
	want := now.Truncate(tick).Add(cursorGrace(tick))
	if want.Before(now) {
		want = now
	}
	if want.Before(c.notBefore) {
		want = c.notBefore
	}
	if c.queued && !want.Before(c.deliverAt) {
		return // the scheduled delivery comes in time
	}
	if !want.After(now) {
		d.deliverCursorsLocked() // ends the scheduled cycle, if any, and starts the next
		return
	}
	c.queued = true
	c.deliverAt = want
	d.hub.cursorClock.at(d, c.gen, false, want)
}

func isNull(data json.RawMessage) bool { return len(data) == 0 || string(data) == "null" }

// maxCursorMessage bounds one bus message of cursors, well under NATS's default 1 MiB
// max_payload: a large publish travels as several messages.
const maxCursorMessage = 256 << 10

// appendCursorEnvelope appends a cursorEnvelope holding entries from the start of entries
// (at least one) while it stays under limit bytes, and returns the rest.
func appendCursorEnvelope(dst []byte, node string, entries []CursorEntry, limit int) ([]byte, []CursorEntry) {
	dst = append(dst, `{"n":`...)
	dst = AppendJSONString(dst, node)
	dst = append(dst, `,"c":[`...)
	start := len(dst)
	i := 0
	for ; i < len(entries); i++ {
		mark := len(dst)
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, `{"id":`...)
		dst = AppendJSONString(dst, entries[i].ID)
		dst = append(dst, `,"data":`...)
		dst = append(dst, entries[i].Data...)
		dst = append(dst, '}')
		if i > 0 && len(dst)-start+2 > limit {
			dst = dst[:mark]
			break
		}
	}
	return append(dst, "]}"...), entries[i:]
}

// decodeCursorEnvelope decodes a bus message of cursors. The form appendCursorEnvelope
// writes is read by a scan without reflection; anything else that is valid JSON takes
// encoding/json. The data of every entry is checked to be valid JSON either way: it is
// relayed to browsers as it is.
func decodeCursorEnvelope(data []byte) (cursorEnvelope, error) {
	if !json.Valid(data) {
		return cursorEnvelope{}, errors.New("cursors message is not valid JSON")
	}
	if env, ok := scanCursorEnvelope(data); ok {
		return env, nil
	}
	var env cursorEnvelope
	err := json.Unmarshal(data, &env)
	return env, err
}

// scanCursorEnvelope reads {"n":"<node>","c":[{"id":"<id>","data":<value>},...]} from
// valid JSON, with no escapes in the strings; it reports false for anything else.
func scanCursorEnvelope(data []byte) (cursorEnvelope, bool) {
	var env cursorEnvelope
	rest, ok := bytes.CutPrefix(data, []byte(`{"n":`))
	if !ok {
		return env, false
	}
	node, rest, ok := scanPlainString(rest)
	if !ok {
		return env, false
	}
	env.Node = node
	if rest, ok = bytes.CutPrefix(rest, []byte(`,"c":[`)); !ok {
		return env, false
	}
	for len(rest) > 0 && rest[0] != ']' {
		if len(env.Cursors) > 0 {
			if rest, ok = bytes.CutPrefix(rest, []byte(",")); !ok {
				return env, false
			}
		}
		if rest, ok = bytes.CutPrefix(rest, []byte(`{"id":`)); !ok {
			return env, false
		}
		var e cursorEntry
		if e.ID, rest, ok = scanPlainString(rest); !ok {
			return env, false
		}
		if rest, ok = bytes.CutPrefix(rest, []byte(`,"data":`)); !ok {
			return env, false
		}
		n := jsonValueLen(rest)
		if n == 0 {
			return env, false
		}
		e.Data, rest = json.RawMessage(rest[:n:n]), rest[n:]
		if rest, ok = bytes.CutPrefix(rest, []byte("}")); !ok {
			return env, false
		}
		env.Cursors = append(env.Cursors, e)
	}
	return env, string(rest) == "]}"
}

// scanPlainString reads a JSON string without escapes at the start of b.
func scanPlainString(b []byte) (string, []byte, bool) {
	if len(b) == 0 || b[0] != '"' {
		return "", b, false
	}
	end := bytes.IndexByte(b[1:], '"')
	if end < 0 || bytes.IndexByte(b[1:1+end], '\\') >= 0 {
		return "", b, false
	}
	return string(b[1 : 1+end]), b[2+end:], true
}

// jsonValueLen is the length of the JSON value (an object, array, string or literal) at
// the start of b, which is part of valid JSON; 0 if it cannot tell.
func jsonValueLen(b []byte) int {
	depth, inString := 0, false
	for i := 0; i < len(b); i++ {
		c := b[i]
		switch {
		case inString:
			if c == '\\' {
				i++
			} else if c == '"' {
				inString = false
				if depth == 0 {
					return i + 1
				}
			}
		case c == '"':
			inString = true
		case c == '{' || c == '[':
			depth++
		case c == '}' || c == ']':
			if depth == 0 {
				return i // the end of a literal before the enclosing object's end
			}
			if depth--; depth == 0 {
				return i + 1
			}
		case c == ',' && depth == 0:
			return i
		}
	}
	return 0
}

// AppendJSONString appends s as a JSON string; the codecs in collab/wire use it too.
func AppendJSONString(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == '"' || c == '\\' || c >= 0x80 {
			b, _ := json.Marshal(s) // strings always marshal
			return append(dst, b...)
		}
	}
	dst = append(dst, '"')
	dst = append(dst, s...)
	return append(dst, '"')
}
