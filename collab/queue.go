package collab

import "sync"

// DefaultQueueBytes bounds the FIFO of one connection (presence and broadcasts).
const DefaultQueueBytes = 1 << 20

// keptEvents is the FIFO storage an outbox keeps across drains; a burst beyond it is let go.
const keptEvents = 4

// Outbox is the outbound queue of one connection, shared by its sessions (a Phoenix socket
// holds several) and drained by the connection's single writer. Delivery never blocks:
// cursors come as their document's shared batches, folded latest-wins per sender when the
// writer falls behind, so they cannot grow the queue (cursorqueue.go); presence, broadcasts
// and replies go into a FIFO bounded in bytes, and overflowing it closes the connection
// with the slow-consumer code.
//
// Presence is latest-wins too, at the level of the whole state: a presence.state supersedes
// every presence event of its session queued before it, and takes no room in the byte
// bound (its members map is shared with every other recipient, and the document's limits
// bound it). A diff that would overflow the bound collapses the session's queued presence
// into one re-synchronisation, resolved to the document's state when the writer drains. So
// a member handed a large state, or a storm of joins and leaves, is never taken for a slow
// consumer: only broadcasts and replies that the client does not read can overflow.
type Outbox struct {
	maxBytes int
	wake     chan struct{} // capacity 1: "there is something to drain"
	notify   func()        // guarded by mu: called instead of a send on wake, when set

	mu      sync.Mutex
	events  []Event           // guarded by mu
	bytes   int               // guarded by mu: estimated size of events
	cursors cursorQueue       // guarded by mu
	closed  *CloseError       // guarded by mu: set once; nothing is queued after it
	resync  map[*Session]bool // guarded by mu: sessions with a re-synchronisation queued
	onClose func(*CloseError)
}

// NewOutbox returns an empty outbox whose FIFO holds at most maxBytes (0: DefaultQueueBytes).
func NewOutbox(maxBytes int) *Outbox {
	if maxBytes <= 0 {
		maxBytes = DefaultQueueBytes
	}
	return &Outbox{maxBytes: maxBytes, wake: make(chan struct{}, 1)}
}

// Wake receives a value whenever there may be something to drain or the outbox closed.
func (o *Outbox) Wake() <-chan struct{} { return o.wake }

// Notify makes the outbox call f, instead of sending on Wake, whenever there may be something
// to drain or it closed. What came before went to Wake: the caller drains once after
// setting f. f runs under the outbox's lock, so it must neither block nor call the outbox.
func (o *Outbox) Notify(f func()) {
	o.mu.Lock()
	o.notify = f
	o.mu.Unlock()
}

func (o *Outbox) signal() {
	if o.notify != nil {
		o.notify()
		return
	}
	select {
	case o.wake <- struct{}{}:
	default:
	}
}

// Push queues ev for the writer; on overflow the outbox closes with ErrSlowConsumer. The
// core queues everything of a session itself; the web layer pushes only replies that come
// before a session exists (an auth ok).
func (o *Outbox) Push(ev Event) { o.push(ev) }

// push queues ev and reports false when the outbox is closed for being too slow.
func (o *Outbox) push(ev Event) bool {
	n := 0
	if ev.Kind != EventPresenceState { // not counted: no need to walk its members
		n = ev.size()
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed != nil {
		return o.closed != ErrSlowConsumer
	}
	switch ev.Kind {
	case EventPresenceState:
		// The state supersedes the session's queued presence and is not counted.
		o.dropPresenceLocked(ev.Session)
		o.events = append(o.events, ev)
		o.signal()
		return true
	case EventPresenceDiff:
		if o.resync[ev.Session] {
			return true // the queued re-synchronisation will include this change
		}
		if o.bytes+n > o.maxBytes {
			o.dropPresenceLocked(ev.Session)
			if o.resync == nil {
				o.resync = map[*Session]bool{}
			}
			o.resync[ev.Session] = true
			o.events = append(o.events, Event{Session: ev.Session, Kind: EventPresenceState})
			o.signal()
			return true
		}
	}
	if o.bytes+n > o.maxBytes {
		o.closeLocked(ErrSlowConsumer)
		return false
	}
	o.events = append(o.events, ev)
	o.bytes += n
	o.signal()
	return true
}

// dropPresenceLocked removes the queued presence events of s: a newer state supersedes them.
func (o *Outbox) dropPresenceLocked(s *Session) {
	kept := o.events[:0]
	for _, ev := range o.events {
		if ev.Session == s && (ev.Kind == EventPresenceState || ev.Kind == EventPresenceDiff) {
			if ev.Kind == EventPresenceDiff {
				o.bytes -= ev.size()
			}
			continue
		}
		kept = append(kept, ev)
	}
	clear(o.events[len(kept):])
	o.events = kept
	delete(o.resync, s)
}

// Close makes the writer end the connection with err, after what is already queued; the
// first error wins.
func (o *Outbox) Close(err *CloseError) {
	o.mu.Lock()
	o.closeLocked(err)
	o.mu.Unlock()
}

// OnClose makes the outbox call f once, with the error it closes with, as soon as it
// closes: the web layer uses it to end a connection whose writer a client that does not
// read keeps blocked. f runs under the outbox's lock, so it must neither block nor call
// the outbox. Set it before the outbox is shared.
func (o *Outbox) OnClose(f func(*CloseError)) { o.onClose = f }

func (o *Outbox) closeLocked(err *CloseError) {
	if o.closed == nil {
		o.closed = err
		if o.onClose != nil {
			o.onClose(err)
		}
	}
	o.signal()
}

// Closed returns the error the outbox closed with, or nil.
func (o *Outbox) Closed() *CloseError {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.closed
}

// Drain moves everything queued into events (reusing its storage) and cur, and returns
// them with the close error, if any. Events come in order; cur holds the cursor batches
// for the connection's sessions (Cursors.Frames writes them). After an overflow the events
// are dropped: the connection is closing and the client must re-sync anyway.
//
// A re-synchronisation queued by an overflowing diff is resolved here, after the outbox is
// unlocked, to the document's state: a change made before it is in that state, and one made
// after it comes as a diff after it.
func (o *Outbox) Drain(events []Event, cur *Cursors) ([]Event, *CloseError) {
	o.mu.Lock()
	first := len(events)
	if o.closed != ErrSlowConsumer {
		events = append(events, o.events...)
	}
	if cur != nil && o.closed != ErrSlowConsumer {
		cur.take(&o.cursors)
	} else {
		o.cursors.reset()
	}
	if cap(o.events) > keptEvents {
		o.events = nil // a burst's storage goes: an idle connection holds little
	} else {
		clear(o.events)
		o.events = o.events[:0]
	}
	o.bytes = 0
	clear(o.resync)
	closed := o.closed
	o.mu.Unlock()
	for i := first; i < len(events); i++ {
		if ev := &events[i]; ev.Kind == EventPresenceState && ev.State == nil && ev.Session != nil {
			ev.State = ev.Session.doc.state()
		}
	}
	return events, closed
}
