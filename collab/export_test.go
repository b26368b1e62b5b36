package collab

import "time"

// FlushCursors flushes document id's pending cursors now, for tests that run with a long
// CursorTick to decide when a tick ends.
func (h *Hub) FlushCursors(id string) {
	h.mu.Lock()
	d := h.docs[id]
	h.mu.Unlock()
	if d != nil {
		d.flushCursors()
	}
}

// CursorBacklog reports document id's pending cursor changes and when a thinned document
// may deliver next (zero: not thinned).
func (h *Hub) CursorBacklog(id string) (int, time.Time) {
	h.mu.Lock()
	d := h.docs[id]
	h.mu.Unlock()
	if d == nil {
		return 0, time.Time{}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	n := 0
	for _, st := range d.cur.states {
		if st.pending {
			n++
		}
	}
	return n, d.cur.notBefore
}

// flushCursors publishes and delivers d's cursors now.
func (d *doc) flushCursors() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.publishPendingLocked()
	d.deliverCursorsLocked()
}

// Len is the number of batches and folded entries drained.
func (c *Cursors) Len() int { return len(c.q.items) + len(c.q.folded) }
