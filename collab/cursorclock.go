package collab

import (
	"container/heap"
	"sync"
	"time"
)

// cursorClock flushes documents' cursors when they are due: one goroutine for the whole
// hub and one timer. A document is scheduled only while it has no flush scheduled
// (doc.cur.queued); a flush that happened earlier (another instance's cursors arrived)
// leaves its entry void, and a void entry expires within its wait, so the heap is bounded
// by a few entries per open document. Lock order: doc.mu, then cursorClock.mu (after is called
// under doc.mu; the goroutine calls flushCursors holding nothing).
type cursorClock struct {
	mu   sync.Mutex
	due  dueHeap       // guarded by mu
	wake chan struct{} // capacity 1: due changed
}

type dueDoc struct {
	at  time.Time
	d   *doc
	gen uint64 // the document's flush count when scheduled
}

type dueHeap []dueDoc

func (h dueHeap) Len() int           { return len(h) }
func (h dueHeap) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h dueHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *dueHeap) Push(x any)        { *h = append(*h, x.(dueDoc)) }
func (h *dueHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	old[len(old)-1] = dueDoc{}
	*h = old[:len(old)-1]
	return x
}

func newCursorClock() *cursorClock { return &cursorClock{wake: make(chan struct{}, 1)} }

// after schedules d's flush in wait, unless d flushes again before (gen is its flush count).
func (c *cursorClock) after(d *doc, gen uint64, wait time.Duration) {
	c.mu.Lock()
	heap.Push(&c.due, dueDoc{time.Now().Add(wait), d, gen})
	first := c.due[0].d == d
	c.mu.Unlock()
	if first {
		select {
		case c.wake <- struct{}{}:
		default:
		}
	}
}

// run flushes every document when due, until stop closes.
func (c *cursorClock) run(stop <-chan struct{}) {
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	var ready []dueDoc
	for {
		c.mu.Lock()
		now := time.Now()
		for len(c.due) > 0 && !c.due[0].at.After(now) {
			ready = append(ready, heap.Pop(&c.due).(dueDoc))
		}
		next := time.Hour
		if len(c.due) > 0 {
			next = c.due[0].at.Sub(now)
		}
		c.mu.Unlock()
		for i, x := range ready {
			x.d.flushDue(x.gen)
			ready[i] = dueDoc{}
		}
		if len(ready) > 0 {
			ready = ready[:0]
			continue // flushing took time: look again before sleeping
		}
		t.Reset(next)
		select {
		case <-stop:
			return
		case <-c.wake:
		case <-t.C:
		}
	}
}
