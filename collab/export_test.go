package collab

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
