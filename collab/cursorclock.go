package collab

import (
	"container/heap"
	"sync"
	"sync/atomic"
	"time"
)

// cursorClock publishes and delivers documents' cursors when they are due: one goroutine
// for the whole hub and one timer. A document schedules one cycle at a time
// (doc.cur.queued), two entries, plus at most one earlier delivery when another instance's
// cursors arrive; a delivery leaves the cycle's other entries void, and a void entry
// expires within a tick, so the heap is bounded by a few entries per open document. Lock order: doc.mu, then cursorClock.mu (after is called
// under doc.mu; the goroutine calls clockDue holding nothing).
type cursorClock struct {
	mu   sync.Mutex
	due  dueHeap       // guarded by mu
	wake chan struct{} // capacity 1: due changed

	base    time.Duration // Config.CursorTick
	current atomic.Int64  // the tick now, in nanoseconds: base, or longer while overloaded
	late    time.Duration // owned by run: smoothed lateness of the due entries
	changed time.Time     // owned by run: when the tick last changed
}

// Overload: while the clock's entries run later than a quarter of the tick on average, the
// tick grows by a quarter, up to maxTickFactor times the configured one (20 ms for 10 ms:
// still under a 30 Hz sender's interval); while they run on time it shrinks back. It
// changes at most every tickSettle, so that it settles rather than swings.
const (
	maxTickFactor = 2.0
	tickSettle    = 250 * time.Millisecond
)

// tick is the cursor tick now.
func (c *cursorClock) tick() time.Duration { return time.Duration(c.current.Load()) }

// observe adapts the tick to how late an entry due at now-late ran.
func (c *cursorClock) observe(now time.Time, late time.Duration) {
	c.late += (late - c.late) / 8
	if now.Sub(c.changed) < tickSettle {
		return
	}
	t := c.tick()
	switch {
	case c.late > t/4 && t < time.Duration(float64(c.base)*maxTickFactor):
		t = min(t+t/4, time.Duration(float64(c.base)*maxTickFactor))
	case c.late < t/16 && t > c.base:
		t = max(t-t/8, c.base)
	default:
		return
	}
	c.current.Store(int64(t))
	c.changed = now
}

type dueDoc struct {
	at      time.Time
	d       *doc
	gen     uint64 // the document's delivery count when scheduled
	publish bool   // publish (else deliver)
}

type dueHeap []dueDoc

func (h dueHeap) Len() int { return len(h) }
func (h dueHeap) Less(i, j int) bool {
	if !h[i].at.Equal(h[j].at) {
		return h[i].at.Before(h[j].at)
	}
	return h[i].publish && !h[j].publish // at the same time, publish first
}
func (h dueHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *dueHeap) Push(x any)   { *h = append(*h, x.(dueDoc)) }
func (h *dueHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	old[len(old)-1] = dueDoc{}
	*h = old[:len(old)-1]
	return x
}

func newCursorClock(tick time.Duration) *cursorClock {
	c := &cursorClock{wake: make(chan struct{}, 1), base: tick}
	c.current.Store(int64(tick))
	return c
}

// at schedules d's publish or delivery at t, void if d delivers before (gen is its
// delivery count).
func (c *cursorClock) at(d *doc, gen uint64, publish bool, t time.Time) {
	c.mu.Lock()
	heap.Push(&c.due, dueDoc{t, d, gen, publish})
	first := c.due[0].d == d
	c.mu.Unlock()
	if first {
		select {
		case c.wake <- struct{}{}:
		default:
		}
	}
}

// run publishes and delivers every document's cursors when due, until stop closes.
func (c *cursorClock) run(stop <-chan struct{}) {
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	var ready []dueDoc
	for {
		c.mu.Lock()
		now := time.Now()
		for len(c.due) > 0 && !c.due[0].at.After(now) {
			x := heap.Pop(&c.due).(dueDoc)
			if !x.publish {
				c.observe(now, now.Sub(x.at))
			}
			ready = append(ready, x)
		}
		next := time.Hour
		if len(c.due) > 0 {
			next = c.due[0].at.Sub(now)
		}
		c.mu.Unlock()
		for i, x := range ready {
			x.d.clockDue(x.gen, x.publish)
			ready[i] = dueDoc{}
		}
		if len(ready) > 0 {
			ready = ready[:0]
			continue // that took time: look again before sleeping
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
