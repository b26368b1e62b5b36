package web

import (
	"net"
	"sync"
	"sync/atomic"

	"github.com/gofiber/fiber/v2"
	"github.com/valyala/fasthttp"
)

// connLimits counts client connections per instance and per client address: WebSockets,
// SSE streams and long-polling sessions alike.
type connLimits struct {
	max, perIP int

	mu    sync.Mutex
	total int            // guarded by mu
	byIP  map[string]int // guarded by mu
}

func newConnLimits(max, perIP int) *connLimits {
	return &connLimits{max: max, perIP: perIP, byIP: map[string]int{}}
}

// slot is one connection's place in the limits. Whoever holds it releases it once the
// connection ended; releasing twice is harmless.
type slot struct {
	l        *connLimits
	ip       string
	released atomic.Bool
}

// acquire takes a slot for a connection from ip, or returns nil when a limit is reached.
func (l *connLimits) acquire(ip string) *slot {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.total >= l.max || l.byIP[ip] >= l.perIP {
		return nil
	}
	l.total++
	l.byIP[ip]++
	return &slot{l: l, ip: ip}
}

func (s *slot) release() {
	if s == nil || !s.released.CompareAndSwap(false, true) {
		return
	}
	l := s.l
	l.mu.Lock()
	defer l.mu.Unlock()
	l.total--
	if l.byIP[s.ip]--; l.byIP[s.ip] <= 0 {
		delete(l.byIP, s.ip)
	}
}

func (l *connLimits) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.total
}

// handOver ties a slot taken before a hijacking handler (a WebSocket upgrade, an SSE
// stream) to what happens next. next answers the request: when it did not hijack the
// connection (the upgrade failed its handshake, say), the slot is released at once. When
// it did, the hijack handler owns the slot, unless the server never runs it: fasthttp runs
// it only after the response headers went out, and a client that resets first leaves the
// connection closed instead; the server's ConnState hook then releases the slot.
//
// The hijack handler counts in s.handlers from here on, not from its own start: fasthttp
// starts it on a goroutine of its own after this request ended, and a Shutdown that came
// between would otherwise return before it ran. It, or the ConnState hook, uncounts it.
func (s *Server) handOver(c *fiber.Ctx, sl *slot, next func() error) error {
	err := next()
	if err != nil || !c.Context().Hijacked() {
		sl.release()
		return err
	}
	s.handlers.Add(1)
	s.pendingMu.Lock()
	s.pending[c.Context().Conn()] = sl
	s.pendingMu.Unlock()
	return nil
}

// connState is the fasthttp server's ConnState hook: it settles the slot of a connection
// whose hijack was pending.
func (s *Server) connState(nc net.Conn, st fasthttp.ConnState) {
	if st != fasthttp.StateClosed && st != fasthttp.StateHijacked {
		return
	}
	s.pendingMu.Lock()
	sl, ok := s.pending[nc]
	delete(s.pending, nc)
	s.pendingMu.Unlock()
	if ok && st == fasthttp.StateClosed {
		sl.release() // the hijack handler never ran
		s.handlers.Add(-1)
	}
}
