package web

import "sync"

// connLimits counts WebSocket connections per instance and per client address.
type connLimits struct {
	max, perIP int

	mu    sync.Mutex
	total int            // guarded by mu
	byIP  map[string]int // guarded by mu
}

func newConnLimits(max, perIP int) *connLimits {
	return &connLimits{max: max, perIP: perIP, byIP: map[string]int{}}
}

// acquire counts a connection from ip, or reports false when a limit is reached.
func (l *connLimits) acquire(ip string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.total >= l.max || l.byIP[ip] >= l.perIP {
		return false
	}
	l.total++
	l.byIP[ip]++
	return true
}

func (l *connLimits) release(ip string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.total--
	if l.byIP[ip]--; l.byIP[ip] <= 0 {
		delete(l.byIP, ip)
	}
}

func (l *connLimits) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.total
}
