package collab

import (
	"container/heap"
	"sync"
	"time"
)

// cursorClock flushes documents' cursors when they are due: one goroutine for the whole
// hub, one timer, and each document queued at most once (doc.cur.queued), so its heap is
// bounded by the open documents. Lock order: doc.mu, then cursorClock.mu (after is called
// under doc.mu; the goroutine calls flushCursors holding nothing).
type cursorClock struct {
	mu   sync.Mutex
	due  dueHeap       // guarded by mu
	wake chan struct{} // capacity 1: due changed
}

type dueDoc struct {
	at time.Time
	d  *doc
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

// after schedules d's flush in wait.
func (c *cursorClock) after(d *doc, wait time.Duration) {
	c.mu.Lock()
	heap.Push(&c.due, dueDoc{time.Now().Add(wait), d})
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
	var ready []*doc
	for {
		c.mu.Lock()
		now := time.Now()
		for len(c.due) > 0 && !c.due[0].at.After(now) {
			ready = append(ready, heap.Pop(&c.due).(dueDoc).d)
		}
		next := time.Hour
		if len(c.due) > 0 {
			next = c.due[0].at.Sub(now)
		}
		c.mu.Unlock()
		for i, d := range ready {
			d.flushCursors()
			ready[i] = nil
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
