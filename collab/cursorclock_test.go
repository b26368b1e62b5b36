package collab

import (
	"testing"
	"time"
)

// The tick grows while the clock runs late, at most to maxTickFactor times the configured
// one and at most once per tickSettle, and comes back while it keeps time.
func TestCursorTickAdapts(t *testing.T) {
	base := 10 * time.Millisecond
	c := newCursorClock(base)
	now := time.Now()
	step := func(late time.Duration, n int) {
		for range n {
			now = now.Add(time.Millisecond)
			c.observe(now, late)
		}
	}
	step(0, 1000)
	if got := c.tick(); got != base {
		t.Fatalf("on time: tick %s, want %s", got, base)
	}
	step(20*time.Millisecond, 100) // late for 100 ms: at most one change
	if got := c.tick(); got != base+base/4 {
		t.Fatalf("late for 100ms: tick %s, want %s", got, base+base/4)
	}
	step(20*time.Millisecond, 5000)
	if got, want := c.tick(), time.Duration(maxTickFactor*float64(base)); got != want {
		t.Fatalf("late for 5s: tick %s, want the cap %s", got, want)
	}
	step(0, 10000)
	if got := c.tick(); got != base {
		t.Fatalf("on time again: tick %s, want %s", got, base)
	}
}
