package main

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fasthttp/websocket"
)

// TestRollingRestart restarts three collabd instances one at a time (SIGTERM, then start
// again on the same address) while 100 clients move cursors and send numbered broadcasts.
// The clients are Go clients that behave as collab.js does: on close code 1012 they come
// back after a jittered 50-500 ms, through a load balancer that sends them to an instance
// whose /readyz answers 200 (and not to the one that closed them); the instances run with a
// drain delay, so the balancer sees the 503 before the 1012s go out. Checked: every close is
// a 1012; every client is back and presence everywhere is the truth after each restart; no
// client's presence ever shows a member whose connection ended more than 3s before (the
// instances run with a 10s down-after, so only the goodbye of a draining instance removes
// its members in time); a client connected across the whole send and delivery of a
// broadcast receives it, in order. Logged (-v): how long each client was away, how long
// each restart took to converge, and the broadcasts missed.
func TestRollingRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("runs three collabd processes and 100 clients through a rolling restart")
	}
	const (
		nInstances = 3
		nClients   = 100
		nDocs      = 10
		ghostAfter = 3 * time.Second
		drainDelay = 300 * time.Millisecond // /readyz 503 while still serving, so the balancer stops sending clients first
	)
	bins := procBuild(t)
	ns := startNatsProc(t, bins.natsServer)
	flags := func(port int) []string {
		return []string{"-addr", "127.0.0.1:" + strconv.Itoa(port), "-heartbeat", "200ms", "-down-after", "10s", "-drain-delay", drainDelay.String()}
	}
	ports := make([]int, nInstances)
	insts := make([]*collabdProc, nInstances)
	lb := &lbPool{}
	for i := range insts {
		ports[i] = procFreePort(t)
		insts[i] = startCollabdProc(t, bins.collabd, "collabd-"+strconv.Itoa(i), ns.url(), flags(ports[i])...)
		lb.bases = append(lb.bases, insts[i].base)
	}
	w := newRollWorld(lb)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	stopped := false
	stopAll := func() { // ends every goroutine of the test; the clients' last connections close
		if stopped {
			return
		}
		stopped = true
		close(stop)
		w.closeAll()
		wg.Wait()
	}
	t.Cleanup(stopAll)
	wg.Go(func() { lb.run(stop) })
	wg.Go(func() { w.monitor(stop, ghostAfter) })
	for i := range nClients {
		c := &rclient{name: fmt.Sprintf("c%03d", i), doc: "roll-" + strconv.Itoa(i%nDocs), w: w}
		w.clients = append(w.clients, c)
		wg.Go(func() { c.run(stop, i%nInstances) })
	}
	procPoll(t, 20*time.Second, "100 clients connected, presence complete", func() bool {
		ok, _ := w.converged()
		return ok
	})
	loadStop := make(chan struct{})
	wg.Go(func() { w.load(loadStop, stop, 100*time.Millisecond, 5) })
	time.Sleep(2 * time.Second) // traffic before the first restart, so that it has something to interrupt

	for i, inst := range insts {
		before := w.reconnects()
		var leaving []*rconn // the instance's clients: each must end and come back elsewhere
		for _, rc := range w.open() {
			if rc.slot == i {
				leaving = append(leaving, rc)
			}
		}
		sent := time.Now()
		inst.signal(t, syscall.SIGTERM)
		if err := inst.waitExit(t, 15*time.Second); err != nil {
			t.Errorf("%s exited with %v after SIGTERM, want status 0", inst.name, err)
		}
		exited := time.Since(sent)
		insts[i] = startCollabdProc(t, bins.collabd, inst.name, ns.url(), flags(ports[i])...)
		up := time.Since(sent)
		procPoll(t, 20*time.Second, "clients back and presence converged after restarting "+inst.name, func() bool {
			for _, rc := range leaving {
				rc.mu.Lock()
				closed := !rc.closedAt.IsZero()
				rc.mu.Unlock()
				if !closed {
					return false
				}
			}
			ok, _ := w.converged()
			return ok
		})
		t.Logf("restart of %s: exited %s after SIGTERM, ready again at %s, its %d clients moved (%d reconnections), every client back and presence converged at %s",
			inst.name, procMS(exited), procMS(up), len(leaving), w.reconnects()-before, procMS(time.Since(sent)))
		time.Sleep(time.Second) // steady traffic between restarts
	}
	time.Sleep(2 * time.Second) // traffic after the last restart
	close(loadStop)
	w.settle(3 * time.Second)
	if ok, why := w.converged(); !ok {
		t.Errorf("at the end: %s", why)
	}
	stopAll()
	w.report(t)
}

// ---- a load balancer ----

// lbPool stands for a load balancer in front of the instances: fixed addresses,
// health-checked on /readyz every 50 ms.
type lbPool struct {
	bases []string // fixed after start

	mu    sync.Mutex
	ready []bool // guarded by mu
}

var lbHTTP = &http.Client{Timeout: 500 * time.Millisecond}

// run checks the instances until stop closes.
func (lb *lbPool) run(stop <-chan struct{}) {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		ready := make([]bool, len(lb.bases))
		for i, b := range lb.bases {
			if resp, err := lbHTTP.Get(b + "/readyz"); err == nil {
				ready[i] = resp.StatusCode == http.StatusOK
				resp.Body.Close()
			}
		}
		lb.mu.Lock()
		lb.ready = ready
		lb.mu.Unlock()
		select {
		case <-stop:
			return
		case <-tick.C:
		}
	}
}

// pick returns a ready instance other than not (-1: any), at random.
func (lb *lbPool) pick(not int) (int, bool) {
	lb.mu.Lock()
	defer lb.mu.Unlock()
	var ok []int
	for i, r := range lb.ready {
		if r && i != not {
			ok = append(ok, i)
		}
	}
	if len(ok) == 0 {
		return 0, false
	}
	return ok[rand.IntN(len(ok))], true
}

// ---- clients ----

// rollWorld holds every client and every connection they made, for the checks.
//
// Lock order: rconn.mu, then rollWorld.mu or rclient.mu (a welcome registers the
// connection in both); nothing else holds two.
type rollWorld struct {
	lb      *lbPool
	clients []*rclient // fixed after start

	mu     sync.Mutex
	conns  []*rconn             // guarded by mu: every connection that got a welcome
	byID   map[string]*rconn    // guarded by mu: the same, by session id
	sent   []rsent              // guarded by mu: every broadcast written
	ghosts []string             // guarded by mu: what the monitor saw
	strays map[string]time.Time // guarded by mu: members seen before their own client's welcome, since when
	stale  time.Duration        // guarded by mu: the longest a departed member was still seen
	dials  map[string]int       // guarded by mu: failed dials by reason
	closes map[int]int          // guarded by mu: ended connections by close code (-1: none)
	seen   map[string]struct{}  // guarded by mu: ghosts already recorded
}

// rsent is a broadcast as written by its sender's connection.
type rsent struct {
	from *rconn
	n    int
	at   time.Time
}

func newRollWorld(lb *lbPool) *rollWorld {
	return &rollWorld{lb: lb, byID: map[string]*rconn{}, dials: map[string]int{}, closes: map[int]int{}, seen: map[string]struct{}{}, strays: map[string]time.Time{}}
}

// rclient is one user that stays in its document for the whole test, over as many
// connections as it takes.
type rclient struct {
	name, doc string
	w         *rollWorld

	mu   sync.Mutex
	conn *rconn // guarded by mu: the current connection once welcomed; nil between connections
	cur  *rconn // guarded by mu: the connection being read, welcomed or not
	n    int    // guarded by mu: broadcasts numbered so far
}

// rconn is one connection of a client.
type rconn struct {
	c    *rclient
	slot int
	ws   *websocket.Conn
	wmu  sync.Mutex // serialises writes

	mu        sync.Mutex
	id        string               // guarded by mu
	welcomeAt time.Time            // guarded by mu
	closedAt  time.Time            // guarded by mu: zero while open
	code      int                  // guarded by mu: close code, -1 without one
	members   map[string]string    // guarded by mu: presence view, id -> user
	got       map[string][]int     // guarded by mu: broadcast numbers received, by sender name
	acks      map[string]time.Time // guarded by mu: when each ref was acknowledged
}

// run connects (first to instance first), reads until the connection ends, and connects
// again elsewhere, as collab.js does, until stop closes.
func (c *rclient) run(stop <-chan struct{}, first int) {
	prev, slot := -1, first
	for {
		select {
		case <-stop:
			return
		default:
		}
		if prev >= 0 {
			var ok bool
			if slot, ok = c.w.lb.pick(prev); !ok {
				time.Sleep(20 * time.Millisecond)
				continue
			}
		}
		rc, err := c.dial(slot)
		if err != nil {
			c.w.mu.Lock()
			c.w.dials[err.Error()]++
			c.w.mu.Unlock()
			prev = slot
			time.Sleep(time.Duration(50+rand.IntN(200)) * time.Millisecond)
			continue
		}
		c.mu.Lock()
		c.cur = rc
		c.mu.Unlock()
		select {
		case <-stop: // closeAll may have run before cur was set
			rc.ws.Close()
		default:
		}
		rc.read(stop) // returns when the connection ended
		prev = slot
		rc.mu.Lock()
		code := rc.code
		rc.mu.Unlock()
		delay := time.Duration(50+rand.IntN(450)) * time.Millisecond // collab.js after 1012
		if code != 1012 {
			delay = time.Duration(250+rand.IntN(250)) * time.Millisecond // its backoff floor, halved and jittered
		}
		select {
		case <-stop:
			return
		case <-time.After(delay):
		}
	}
}

func (c *rclient) dial(slot int) (*rconn, error) {
	u := "ws" + strings.TrimPrefix(c.w.lb.bases[slot], "http") + "/ws/" + url.PathEscape(c.doc) + "?user=" + url.QueryEscape(c.name)
	d := websocket.Dialer{HandshakeTimeout: 2 * time.Second}
	ws, resp, err := d.Dial(u, nil)
	if err != nil {
		if resp != nil {
			return nil, fmt.Errorf("HTTP %d", resp.StatusCode)
		}
		return nil, fmt.Errorf("dial: %T", err)
	}
	return &rconn{c: c, slot: slot, ws: ws, code: -1, members: map[string]string{}, got: map[string][]int{}, acks: map[string]time.Time{}}, nil
}

// read handles frames until the connection ends.
func (rc *rconn) read(stop <-chan struct{}) {
	for {
		_, data, err := rc.ws.ReadMessage()
		now := time.Now()
		if err != nil {
			rc.ws.Close()
			rc.mu.Lock()
			rc.closedAt = now
			if ce, ok := err.(*websocket.CloseError); ok {
				rc.code = ce.Code
			}
			code, welcomed := rc.code, rc.id != ""
			rc.mu.Unlock()
			rc.c.mu.Lock()
			if rc.c.conn == rc {
				rc.c.conn = nil
			}
			rc.c.mu.Unlock()
			select {
			case <-stop: // the test's own close
			default:
				if welcomed {
					rc.c.w.mu.Lock()
					rc.c.w.closes[code]++
					rc.c.w.mu.Unlock()
				}
			}
			return
		}
		var f nframe
		if json.Unmarshal(data, &f) != nil {
			continue
		}
		rc.apply(f, now)
	}
}

func (rc *rconn) apply(f nframe, now time.Time) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	switch f.Type {
	case "welcome":
		var w struct{ ID string }
		if json.Unmarshal(f.Payload, &w) != nil {
			return
		}
		rc.id, rc.welcomeAt = w.ID, now
		rc.c.w.mu.Lock()
		rc.c.w.conns = append(rc.c.w.conns, rc)
		rc.c.w.byID[w.ID] = rc
		rc.c.w.mu.Unlock()
		rc.c.mu.Lock()
		rc.c.conn = rc
		rc.c.mu.Unlock()
	case "presence.state":
		var m map[string]nentry
		if json.Unmarshal(f.Payload, &m) == nil {
			rc.members = map[string]string{}
			for id, e := range m {
				rc.members[id] = e.User
			}
		}
	case "presence.diff":
		var d struct{ Joins, Leaves map[string]nentry }
		if json.Unmarshal(f.Payload, &d) == nil {
			for id := range d.Leaves {
				delete(rc.members, id)
			}
			for id, e := range d.Joins {
				rc.members[id] = e.User
			}
		}
	case "broadcast":
		var b nbcast
		if json.Unmarshal(f.Payload, &b) == nil {
			rc.got[b.Data.Sender] = append(rc.got[b.Data.Sender], b.Data.N)
		}
	case "ok":
		rc.acks[f.Ref] = now
	}
}

// write sends one frame; an error means the connection is ending, which read notices.
func (rc *rconn) write(v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	rc.wmu.Lock()
	defer rc.wmu.Unlock()
	rc.ws.SetWriteDeadline(time.Now().Add(time.Second))
	return rc.ws.WriteMessage(websocket.TextMessage, data)
}

// load sends, every interval, a cursor from every connected client and, every bcastEvery
// intervals, a numbered broadcast, until loadStop or stop closes.
func (w *rollWorld) load(loadStop, stop <-chan struct{}, interval time.Duration, bcastEvery int) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for i := 0; ; i++ {
		for k, c := range w.clients {
			c.mu.Lock()
			rc := c.conn
			c.mu.Unlock()
			if rc == nil {
				continue
			}
			_ = rc.write(map[string]any{"type": "cursor", "payload": map[string]int{"x": i, "y": k}})
			if i%bcastEvery != 0 {
				continue
			}
			c.mu.Lock()
			n := c.n
			c.n++
			c.mu.Unlock()
			at := time.Now()
			err := rc.write(map[string]any{"type": "broadcast", "ref": strconv.Itoa(n),
				"payload": map[string]any{"event": "n", "data": map[string]any{"sender": c.name, "n": n}}})
			if err == nil {
				w.mu.Lock()
				w.sent = append(w.sent, rsent{from: rc, n: n, at: at})
				w.mu.Unlock()
			}
		}
		select {
		case <-loadStop:
			return
		case <-stop:
			return
		case <-tick.C:
		}
	}
}

// open returns the connections open now (welcomed, not ended).
func (w *rollWorld) open() []*rconn {
	w.mu.Lock()
	conns := append([]*rconn(nil), w.conns...)
	w.mu.Unlock()
	var out []*rconn
	for _, rc := range conns {
		rc.mu.Lock()
		if rc.closedAt.IsZero() {
			out = append(out, rc)
		}
		rc.mu.Unlock()
	}
	return out
}

// converged reports whether every client is connected and every open connection's
// presence view holds exactly the open connections of its document.
func (w *rollWorld) converged() (bool, string) {
	open := w.open()
	if len(open) != len(w.clients) {
		return false, fmt.Sprintf("%d of %d clients connected", len(open), len(w.clients))
	}
	truth := map[string]map[string]string{}
	for _, rc := range open {
		if truth[rc.c.doc] == nil {
			truth[rc.c.doc] = map[string]string{}
		}
		truth[rc.c.doc][rc.id] = rc.c.name
	}
	for _, rc := range open {
		rc.mu.Lock()
		view := fmt.Sprint(rc.members)
		rc.mu.Unlock()
		if want := fmt.Sprint(truth[rc.c.doc]); view != want { // fmt sorts map keys
			return false, fmt.Sprintf("%s sees %s, want %s", rc.c.name, view, want)
		}
	}
	return true, ""
}

// monitor samples every open connection's presence view every 25 ms until stop closes,
// and records any member that is no connection of the test, or whose connection ended
// more than ghostAfter ago.
func (w *rollWorld) monitor(stop <-chan struct{}, ghostAfter time.Duration) {
	tick := time.NewTicker(25 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		now := time.Now()
		for _, rc := range w.open() {
			rc.mu.Lock()
			ids := make([]string, 0, len(rc.members))
			for id := range rc.members {
				ids = append(ids, id)
			}
			rc.mu.Unlock()
			for _, id := range ids {
				w.mu.Lock()
				m := w.byID[id]
				var strayFor time.Duration
				if m == nil { // the join can reach others before the welcome reaches its client
					if _, ok := w.strays[id]; !ok {
						w.strays[id] = now
					}
					strayFor = now.Sub(w.strays[id])
				}
				w.mu.Unlock()
				ghost := ""
				if m == nil {
					if strayFor > ghostAfter {
						ghost = fmt.Sprintf("a session %s that no client was welcomed as, for %s", id, procMS(strayFor))
					}
				} else {
					m.mu.Lock()
					closed := m.closedAt
					m.mu.Unlock()
					if !closed.IsZero() {
						w.mu.Lock()
						w.stale = max(w.stale, now.Sub(closed))
						w.mu.Unlock()
					}
					if !closed.IsZero() && now.Sub(closed) > ghostAfter {
						ghost = fmt.Sprintf("%s (%s), gone %s", m.c.name, id, procMS(now.Sub(closed)))
					}
				}
				if ghost == "" {
					continue
				}
				key := rc.id + "/" + id
				w.mu.Lock()
				if _, dup := w.seen[key]; !dup {
					w.seen[key] = struct{}{}
					w.ghosts = append(w.ghosts, rc.c.name+" sees "+ghost)
				}
				w.mu.Unlock()
			}
		}
	}
}

// reconnects counts connections after each client's first.
func (w *rollWorld) reconnects() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.conns) - len(w.clients)
}

// closeAll closes every connection still open, which ends the clients' readers.
func (w *rollWorld) closeAll() {
	w.mu.Lock()
	conns := append([]*rconn(nil), w.conns...)
	w.mu.Unlock()
	for _, rc := range conns {
		rc.ws.Close()
	}
	for _, c := range w.clients { // a connection dialled but not yet welcomed
		c.mu.Lock()
		if c.cur != nil {
			c.cur.ws.Close()
		}
		c.mu.Unlock()
	}
}

// deliveryGrace is how long after its acknowledgement a broadcast may take to reach the
// other instances' clients; a connection that ended sooner is not counted as having had to
// receive it.
const deliveryGrace = 2 * time.Second

// missing returns, for the connections that were open from before a broadcast was written
// until after it was acknowledged (plus deliveryGrace), how many deliveries were expected
// and missed, and how many arrived out of order.
func (w *rollWorld) missing() (expected, missed, misordered int, examples []string) {
	w.mu.Lock()
	conns := append([]*rconn(nil), w.conns...)
	sent := append([]rsent(nil), w.sent...)
	w.mu.Unlock()
	type life struct {
		welcome, closed time.Time
		got             map[string]map[int]bool
	}
	lives := map[*rconn]life{}
	for _, rc := range conns {
		rc.mu.Lock()
		l := life{welcome: rc.welcomeAt, closed: rc.closedAt, got: map[string]map[int]bool{}}
		for sender, ns := range rc.got {
			l.got[sender] = map[int]bool{}
			for i, n := range ns {
				l.got[sender][n] = true
				if i > 0 && n <= ns[i-1] {
					misordered++
				}
			}
		}
		rc.mu.Unlock()
		lives[rc] = l
	}
	for _, s := range sent {
		s.from.mu.Lock()
		acked, ok := s.from.acks[strconv.Itoa(s.n)]
		s.from.mu.Unlock()
		if !ok {
			continue // not accepted: the sender's instance was closing it
		}
		for _, rc := range conns {
			l := lives[rc]
			if rc == s.from || rc.c.doc != s.from.c.doc || !l.welcome.Before(s.at) ||
				(!l.closed.IsZero() && l.closed.Before(acked.Add(deliveryGrace))) {
				continue
			}
			expected++
			if !l.got[s.from.c.name][s.n] {
				missed++
				if len(examples) < 5 {
					examples = append(examples, fmt.Sprintf("%s (%s) missed %s #%d, written %s, acked %s",
						rc.c.name, rc.id, s.from.c.name, s.n, s.at.Format("15:04:05.000"), acked.Format("15:04:05.000")))
				}
			}
		}
	}
	return expected, missed, misordered, examples
}

// acked counts the broadcasts acknowledged.
func (w *rollWorld) acked() int {
	w.mu.Lock()
	conns := append([]*rconn(nil), w.conns...)
	w.mu.Unlock()
	n := 0
	for _, rc := range conns {
		rc.mu.Lock()
		n += len(rc.acks)
		rc.mu.Unlock()
	}
	return n
}

// settle waits until no broadcast is missing, or the count stopped changing for timeout.
func (w *rollWorld) settle(timeout time.Duration) {
	last, since := -1, time.Now()
	for time.Since(since) < timeout {
		_, missed, _, _ := w.missing()
		if missed == 0 {
			return
		}
		if missed != last {
			last, since = missed, time.Now()
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// report checks and logs what the test observed.
func (w *rollWorld) report(t *testing.T) {
	t.Helper()
	w.mu.Lock()
	ghosts := append([]string(nil), w.ghosts...)
	closes := map[int]int{}
	for code, n := range w.closes {
		closes[code] = n
	}
	dials := fmt.Sprint(w.dials)
	conns := append([]*rconn(nil), w.conns...)
	nsent := len(w.sent)
	stale := w.stale
	w.mu.Unlock()
	for _, g := range ghosts {
		t.Errorf("ghost: %s", g)
	}
	t.Logf("longest a departed member stayed in another client's presence (sampled every 25 ms): %s", procMS(stale))
	t.Logf("connections ended during the test by close code: %v; failed dials: %s", closes, dials)
	for code, n := range closes {
		if code != 1012 {
			t.Errorf("%d connections ended with close code %d, want only 1012", n, code)
		}
	}
	// Away: from a 1012 to the welcome of the client's next connection.
	byClient := map[*rclient][]*rconn{}
	for _, rc := range conns {
		byClient[rc.c] = append(byClient[rc.c], rc)
	}
	var away []time.Duration
	for _, cs := range byClient {
		for i := 1; i < len(cs); i++ {
			away = append(away, cs[i].welcomeAt.Sub(cs[i-1].closedAt))
		}
	}
	t.Logf("time away per reconnection (1012 to the next welcome, including the 50-500 ms jitter): %s", durStats(away))
	expected, missed, misordered, examples := w.missing()
	t.Logf("broadcasts: %d written, %d acknowledged; %d deliveries to connections open throughout, %d missed, %d out of order",
		nsent, w.acked(), expected, missed, misordered)
	if missed > 0 {
		t.Errorf("%d of %d broadcast deliveries to connections open throughout were missed, e.g. %s", missed, expected, strings.Join(examples, "; "))
	}
	if misordered > 0 {
		t.Errorf("%d broadcasts arrived out of order", misordered)
	}
}
