package presence

import "time"

// Liveness tracks which instances are alive from their heartbeats. The clock is passed in.
type Liveness struct {
	downAfter time.Duration
	seen      map[string]time.Time
}

// NewLiveness returns a tracker that counts an instance as dead after downAfter of silence.
func NewLiveness(downAfter time.Duration) *Liveness {
	return &Liveness{downAfter: downAfter, seen: map[string]time.Time{}}
}

// Seen records a heartbeat of node at now and reports whether node was not known alive.
func (l *Liveness) Seen(node string, now time.Time) bool {
	_, known := l.seen[node]
	l.seen[node] = now
	return !known
}

// Forget removes node at once (it said goodbye) and reports whether it was known.
func (l *Liveness) Forget(node string) bool {
	_, known := l.seen[node]
	delete(l.seen, node)
	return known
}

// Expire removes and returns the instances silent for longer than the down-after period.
func (l *Liveness) Expire(now time.Time) []string {
	var dead []string
	for node, t := range l.seen {
		if now.Sub(t) > l.downAfter {
			dead = append(dead, node)
			delete(l.seen, node)
		}
	}
	return dead
}

// Alive returns the number of instances currently alive (this one not included).
func (l *Liveness) Alive() int { return len(l.seen) }

// IsAlive reports whether node is currently known alive.
func (l *Liveness) IsAlive(node string) bool { _, ok := l.seen[node]; return ok }

// Nodes returns the instances currently alive.
func (l *Liveness) Nodes() []string {
	nodes := make([]string, 0, len(l.seen))
	for n := range l.seen {
		nodes = append(nodes, n)
	}
	return nodes
}
