package collab

import (
	"encoding/json"
	"sync"
)

// CursorEntry is the latest cursor of one sender in a batch.
type CursorEntry struct {
	ID   string          `json:"id"`   // the sender's session id
	Data json.RawMessage `json:"data"` // null hides the cursor

	sender   *Session // the local sender; nil for another instance's member
	seq      uint64   // the document's change number of this value
	needFrom uint64   // a hide of a position no delivery carried: only members that joined at or after this change saw it
}

// CursorBatch is what a document's cursors did in one tick: at most one entry per sender,
// the same for every member. It is encoded once, on first use, and its bytes are shared:
// a recipient that takes all of it is handed them as they are, and the others (a sender,
// who never gets its own entry, and a member that joined during the tick) get a copy with
// the entries they do not take cut out, so no entry is encoded per recipient.
type CursorBatch struct {
	Entries []CursorEntry // read-only once the batch is queued

	snapshot bool   // a newcomer's snapshot: every entry is for it
	minSeq   uint64 // the oldest change in Entries
	needFrom uint64 // the largest needFrom in Entries

	once  sync.Once
	frame []byte // the shared encoding, set once
	spans []span // where each entry is in frame
}

type span struct{ start, end int32 }

// CursorEncoder says how cursors frames are written: Prefix, then the entries separated by
// commas, then Suffix. Every writer passes the same encoder (the native protocol's: the
// one protocol that carries cursors), so the shared bytes of a batch are that encoding.
type CursorEncoder struct {
	Prefix, Suffix string
	Entry          func(dst []byte, e *CursorEntry) []byte
}

// Append appends one frame holding entries.
func (enc *CursorEncoder) Append(dst []byte, entries []CursorEntry) []byte {
	dst = append(dst, enc.Prefix...)
	for i := range entries {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = enc.Entry(dst, &entries[i])
	}
	return append(dst, enc.Suffix...)
}

// shared returns the batch's frame, encoding it on first use.
func (b *CursorBatch) shared(enc *CursorEncoder) []byte {
	b.once.Do(func() {
		b.spans = make([]span, len(b.Entries))
		f := append([]byte(nil), enc.Prefix...)
		for i := range b.Entries {
			if i > 0 {
				f = append(f, ',')
			}
			start := len(f)
			f = enc.Entry(f, &b.Entries[i])
			b.spans[i] = span{int32(start), int32(len(f))}
		}
		b.frame = append(f, enc.Suffix...)
	})
	return b.frame
}

// entryBytes returns entry i as encoded in the shared frame.
func (b *CursorBatch) entryBytes(enc *CursorEncoder, i int) []byte {
	f := b.shared(enc)
	return f[b.spans[i].start:b.spans[i].end]
}

// keeps reports whether recipient s takes entry e: never its own cursor, nor a change that
// the snapshot it joined with already held, nor a hide of a position it was never shown.
func (b *CursorBatch) keeps(s *Session, e *CursorEntry) bool {
	if e.sender == s {
		return false
	}
	if b.snapshot {
		return true
	}
	return e.seq > s.cursorJoin && (e.needFrom == 0 || s.cursorJoin >= e.needFrom)
}

// takesAll reports whether s takes every entry, so that it can be sent the shared bytes.
func (b *CursorBatch) takesAll(s *Session) bool {
	if !b.snapshot && (s.cursorJoin >= b.minSeq || (b.needFrom != 0 && s.cursorJoin < b.needFrom)) {
		return false
	}
	for i := range b.Entries {
		if b.Entries[i].sender == s {
			return false
		}
	}
	return true
}

// maxQueuedBatches bounds the batches an outbox holds: beyond it, the queued batches fold
// into one latest-wins entry per (session, sender), the overload valve of a writer that
// falls behind.
const maxQueuedBatches = 8

// cursorItem is a batch queued for one session.
type cursorItem struct {
	s *Session
	b *CursorBatch
}

// entryRef is one entry of a batch.
type entryRef struct {
	b *CursorBatch
	i int
}

func (r entryRef) entry() *CursorEntry { return &r.b.Entries[r.i] }

// foldKey names one sender's cursor for one session.
type foldKey struct {
	s  *Session
	id string
}

type foldedRef struct {
	s *Session
	r entryRef
}

// cursorQueue is the cursor part of an Outbox: batches in order, after the entries folded
// from older batches. It is guarded by the outbox's mutex.
type cursorQueue struct {
	items  []cursorItem
	folded []foldedRef
	index  map[foldKey]int // into folded
}

func (q *cursorQueue) empty() bool { return len(q.items) == 0 && len(q.folded) == 0 }

func (q *cursorQueue) reset() {
	clear(q.items)
	q.items = q.items[:0]
	clear(q.folded)
	q.folded = q.folded[:0]
	clear(q.index)
}

// push queues b for s; past maxQueuedBatches everything queued folds, latest wins.
func (q *cursorQueue) push(s *Session, b *CursorBatch) {
	if len(q.items) >= maxQueuedBatches {
		q.fold()
	}
	q.items = append(q.items, cursorItem{s, b})
}

func (q *cursorQueue) fold() {
	if q.index == nil {
		q.index = map[foldKey]int{}
	}
	for _, it := range q.items {
		for i := range it.b.Entries {
			e := &it.b.Entries[i]
			if !it.b.keeps(it.s, e) {
				continue
			}
			k := foldKey{it.s, e.ID}
			if j, ok := q.index[k]; ok {
				q.folded[j].r = entryRef{it.b, i}
				continue
			}
			q.index[k] = len(q.folded)
			q.folded = append(q.folded, foldedRef{it.s, entryRef{it.b, i}})
		}
	}
	clear(q.items)
	q.items = q.items[:0]
}

// putCursors queues a batch of its document's cursors for s.
func (o *Outbox) putCursors(s *Session, b *CursorBatch) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed != nil {
		return
	}
	o.cursors.push(s, b)
	o.signal()
}

// Cursors is the cursor part of a drain, owned by the connection's writer and reused
// across drains: the batches queued for its sessions, oldest first.
type Cursors struct {
	q cursorQueue

	sessions []*Session
	merged   []entryRef
	index    map[string]int // into merged
}

// Empty reports whether c holds no cursors.
func (c *Cursors) Empty() bool { return c.q.empty() }

// take moves q's content into c; q is left empty (and keeps c's old storage).
func (c *Cursors) take(q *cursorQueue) {
	c.q.reset()
	c.q, *q = *q, c.q
}

// Frames calls emit with one cursors frame per session that has cursors to receive: the
// shared bytes of a batch when the session takes all of it and nothing else is queued for
// it, otherwise the entries it takes, latest per sender, cut from the batches' shared
// bytes. frame is valid only during the call. Frames then empties c.
func (c *Cursors) Frames(enc *CursorEncoder, emit func(s *Session, frame []byte) error) error {
	defer c.q.reset()
	if c.q.empty() {
		return nil
	}
	c.sessions = c.sessions[:0]
	for _, f := range c.q.folded {
		c.addSession(f.s)
	}
	for _, it := range c.q.items {
		c.addSession(it.s)
	}
	for _, s := range c.sessions {
		if err := c.frame(s, enc, emit); err != nil {
			return err
		}
	}
	clear(c.sessions)
	return nil
}

func (c *Cursors) addSession(s *Session) {
	for _, x := range c.sessions {
		if x == s {
			return
		}
	}
	c.sessions = append(c.sessions, s)
}

// frame emits s's frame.
func (c *Cursors) frame(s *Session, enc *CursorEncoder, emit func(*Session, []byte) error) error {
	var only *CursorBatch
	n := 0
	for _, it := range c.q.items {
		if it.s == s {
			only = it.b
			n++
		}
	}
	folded := false
	for _, f := range c.q.folded {
		if f.s == s {
			folded = true
			break
		}
	}
	c.merged = c.merged[:0]
	if n == 1 && !folded {
		if only.takesAll(s) {
			return emit(s, only.shared(enc))
		}
		for i := range only.Entries {
			if only.keeps(s, &only.Entries[i]) {
				c.merged = append(c.merged, entryRef{only, i})
			}
		}
	} else {
		// Merge, latest wins: folded entries are older than every batch, and batches come
		// in order.
		if c.index == nil {
			c.index = map[string]int{}
		}
		put := func(r entryRef) {
			id := r.entry().ID
			if i, ok := c.index[id]; ok {
				c.merged[i] = r
				return
			}
			c.index[id] = len(c.merged)
			c.merged = append(c.merged, r)
		}
		for _, f := range c.q.folded {
			if f.s == s {
				put(f.r)
			}
		}
		for _, it := range c.q.items {
			if it.s != s {
				continue
			}
			for i := range it.b.Entries {
				if it.b.keeps(s, &it.b.Entries[i]) {
					put(entryRef{it.b, i})
				}
			}
		}
		clear(c.index)
	}
	if len(c.merged) == 0 {
		return nil
	}
	bp := framePool.Get().(*[]byte)
	buf := append((*bp)[:0], enc.Prefix...)
	for i, r := range c.merged {
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = append(buf, r.b.entryBytes(enc, r.i)...)
	}
	buf = append(buf, enc.Suffix...)
	err := emit(s, buf)
	clear(c.merged)
	*bp = buf
	framePool.Put(bp)
	return err
}

// framePool holds the buffers of frames cut for one recipient: shared by every writer, so
// that an idle connection keeps none.
var framePool = sync.Pool{New: func() any { b := make([]byte, 0, 4<<10); return &b }}
