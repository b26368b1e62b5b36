package collab

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"collabd/presence"
)

// Config tunes a Hub. Its zero value works.
type Config struct {
	// Node is this instance's id on the bus. Default: random per start.
	Node string
	// Heartbeat is how often the instance announces itself. Default 1s.
	Heartbeat time.Duration
	// DownAfter is the silence after which another instance counts as dead and its members
	// leave. Default 3s.
	DownAfter time.Duration
	// SyncTimeout bounds how long a join waits for the other instances' presence when it
	// opens a document here. Default 500ms.
	SyncTimeout time.Duration
	// MaxMembers limits the members of one document, across instances. Default 10000.
	MaxMembers int
	// MaxPresenceBytes limits a document's whole presence (what every newcomer receives in
	// presence.state), across instances: a track that would exceed it is refused. Default
	// 8 MiB: 10,000 members with states of about 800 bytes, or 2,000 with 4 KiB.
	MaxPresenceBytes int
	// CursorRate and CursorBurst limit cursor updates per session (per second). Default
	// 120 and 120 (two seconds of a 60 Hz client: a client is not punished for a short stall).
	CursorRate  float64
	CursorBurst int
	// CursorTick is how long a document gathers cursor changes before it sends them to
	// its members and the other instances as one batch, on wall-clock boundaries shared
	// by every instance. Default DefaultCursorTick: under a 30 Hz sender's interval, so
	// consecutive positions of one sender are not merged. Longer ticks cost latency and
	// save CPU (docs/benchmarks.md).
	CursorTick time.Duration
	// CursorFrameMax bounds the entries of one batch; the rest wait for the next tick,
	// oldest change first. Default 64.
	CursorFrameMax int
	// CursorBudget bounds the cursor deliveries (entries times local recipients) of one
	// document per second: a very large document's cursors are thinned to it. Default
	// 250000.
	CursorBudget int
	// MessageRate and MessageBurst limit every other request per session. Default 100 and
	// 200 (realtime-js clients send their cursors as broadcasts).
	MessageRate  float64
	MessageBurst int
	// Logger receives what clients are never told. Default slog.Default().
	Logger *slog.Logger
	// Now is the clock of presence liveness. Default time.Now.
	Now func() time.Time
	// OnSnapshot, when set, is told the encoded size in bytes of every presence snapshot
	// this instance publishes (for metrics). It must not block.
	OnSnapshot func(bytes int)
	// OnSync, when set, is told how long each document opening waited for the other
	// instances' presence (for metrics). It must not block.
	OnSync func(time.Duration)
}

func (c Config) withDefaults() Config {
	if c.Node == "" {
		c.Node = randomID(6)
	}
	if c.Heartbeat <= 0 {
		c.Heartbeat = time.Second
	}
	if c.DownAfter <= 0 {
		c.DownAfter = 3 * time.Second
	}
	if c.SyncTimeout <= 0 {
		c.SyncTimeout = 500 * time.Millisecond
	}
	if c.MaxMembers <= 0 {
		c.MaxMembers = 10000
	}
	if c.MaxPresenceBytes <= 0 {
		c.MaxPresenceBytes = DefaultMaxPresenceBytes
	}
	if c.CursorRate <= 0 {
		c.CursorRate = 120
	}
	if c.CursorBurst <= 0 {
		c.CursorBurst = 120
	}
	if c.CursorTick <= 0 {
		c.CursorTick = DefaultCursorTick
	}
	if c.CursorFrameMax <= 0 {
		c.CursorFrameMax = 64
	}
	if c.CursorBudget <= 0 {
		c.CursorBudget = 250000
	}
	if c.MessageRate <= 0 {
		c.MessageRate = 100
	}
	if c.MessageBurst <= 0 {
		c.MessageBurst = 200
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.OnSnapshot == nil {
		c.OnSnapshot = func(int) {}
	}
	if c.OnSync == nil {
		c.OnSync = func(time.Duration) {}
	}
	return c
}

// Hub holds the documents that have members on this instance and links them to the other
// instances through the Bus. It does no network I/O with clients: sessions come in through
// Join and leave through Leave, and everything for them goes into their Outbox.
type Hub struct {
	cfg Config
	bus Bus
	log *slog.Logger

	mu       sync.Mutex
	docs     map[string]*doc    // guarded by mu: documents with members (or joins) here
	epoch    uint64             // guarded by mu: counts document openings
	live     *presence.Liveness // guarded by mu: the other instances
	draining bool               // guarded by mu: no more joins; leaves are not published

	// deadMu guards dead; it is taken under doc.mu, so its holder takes no other lock.
	deadMu sync.Mutex
	dead   map[string]time.Time // instances declared dead or gone: their messages are ignored until they heartbeat again

	// cursorClock publishes and delivers each document's cursors on tick boundaries
	// (cursors.go).
	cursorClock *cursorClock
	// evictions holds slow sessions to remove, each at most once.
	evictions *worklist[*Session]

	drained        atomic.Bool // set by Drain before it closes the sessions it finds
	closeOnce      sync.Once
	sessions       atomic.Int64
	lastPublishErr atomic.Int64 // unix nanoseconds of the last logged publish failure
	unsubs         []func() error
	stop           chan struct{}
	wg             sync.WaitGroup // the publisher and heartbeat goroutines
}

// NewHub subscribes to the instance-wide subjects and starts the hub's goroutines; Close
// stops them.
func NewHub(ctx context.Context, bus Bus, cfg Config) (*Hub, error) {
	cfg = cfg.withDefaults()
	h := &Hub{
		cfg:         cfg,
		bus:         bus,
		log:         cfg.Logger.With("node", cfg.Node),
		docs:        map[string]*doc{},
		live:        presence.NewLiveness(cfg.DownAfter),
		dead:        map[string]time.Time{},
		cursorClock: newCursorClock(cfg.CursorTick),
		evictions:   newWorklist[*Session](),
		stop:        make(chan struct{}),
	}
	subs := []struct {
		subject string
		fn      func(string, []byte)
	}{
		{bus.NodeSubject(kindHB), h.onHeartbeat},
		{bus.NodeSubject(kindBye), h.onBye},
		{bus.DocSubject(anyDoc, kindSync), h.onSync},
	}
	for _, s := range subs {
		unsub, err := bus.Subscribe(s.subject, s.fn)
		if err != nil {
			h.unsubscribe()
			return nil, fmt.Errorf("hub: %w", err)
		}
		h.unsubs = append(h.unsubs, unsub)
	}
	if bus.Connected() {
		if err := bus.Flush(ctx); err != nil {
			h.unsubscribe()
			return nil, fmt.Errorf("hub: confirm subscriptions: %w", err)
		}
	} else {
		h.log.Warn("starting without NATS: subscriptions take effect once it connects")
	}
	h.publishHeartbeat(true)
	h.wg.Add(3)
	go func() { defer h.wg.Done(); h.cursorClock.run(h.stop) }()
	go func() { defer h.wg.Done(); h.evictions.run(h.stop, h.evictSession) }()
	go h.heartbeatLoop()
	return h, nil
}

// Node is this instance's id.
func (h *Hub) Node() string { return h.cfg.Node }

// Sessions is the number of sessions joined here.
func (h *Hub) Sessions() int { return int(h.sessions.Load()) }

// Docs is the number of documents open here.
func (h *Hub) Docs() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.docs)
}

// Draining reports whether Drain was called.
func (h *Hub) Draining() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.draining
}

// Join makes a new session a member of opts.Doc. The session's first events are welcome,
// the document's presence state (across instances) and the last known cursors.
func (h *Hub) Join(ctx context.Context, out *Outbox, opts JoinOptions) (*Session, error) {
	d, err := h.acquireOpen(ctx, opts.Doc)
	if err != nil {
		return nil, err
	}
	s := &Session{
		ID:        randomID(8),
		User:      opts.User,
		Doc:       opts.Doc,
		Tag:       opts.Tag,
		Out:       out,
		opts:      opts,
		hub:       h,
		doc:       d,
		cursorLim: rate.NewLimiter(rate.Limit(h.cfg.CursorRate), h.cfg.CursorBurst),
		msgLim:    rate.NewLimiter(rate.Limit(h.cfg.MessageRate), h.cfg.MessageBurst),
		strikes:   rate.NewLimiter(rate.Limit(h.cfg.CursorRate/4), 4*h.cfg.CursorBurst),
	}
	err = d.add(s)
	h.release(d)
	if err != nil {
		return nil, err
	}
	h.sessions.Add(1)
	return s, nil
}

// acquireOpen acquires document id (see acquire) and waits until it is open: subscribed
// and synchronised with the other instances. The caller releases it; on an error it is
// released already.
func (h *Hub) acquireOpen(ctx context.Context, id string) (*doc, error) {
	if err := ValidDocID(id); err != nil {
		return nil, err
	}
	d, created, err := h.acquire(id)
	if err != nil {
		return nil, err
	}
	if created {
		d.open(ctx)
	}
	select {
	case <-d.ready:
	case <-ctx.Done():
		h.release(d)
		return nil, ctx.Err()
	}
	if d.openErr != nil {
		h.release(d)
		return nil, d.openErr
	}
	return d, nil
}

// acquire returns the open document id, creating it when it is not, and counts a pending
// join on it so that it stays until release.
func (h *Hub) acquire(id string) (d *doc, created bool, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.draining {
		return nil, false, ErrShutdown
	}
	d = h.docs[id]
	if d == nil {
		h.epoch++
		d = newDoc(h, id, h.epoch)
		h.docs[id] = d
		created = true
	}
	d.joining++
	return d, created, nil
}

// release ends a pending join and closes the document if that left it empty.
func (h *Hub) release(d *doc) {
	h.mu.Lock()
	d.joining--
	closing := h.closeIfEmptyLocked(d)
	h.mu.Unlock()
	if closing {
		d.unsubscribe()
	}
}

// closeIfEmptyLocked removes d when it has neither members nor pending joins; the caller
// unsubscribes it after unlocking.
func (h *Hub) closeIfEmptyLocked(d *doc) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed || d.joining > 0 || len(d.sessions) > 0 {
		return false
	}
	d.closed = true
	if h.docs[d.id] == d {
		delete(h.docs, d.id)
	}
	return true
}

// Leave ends a session's membership; it is a presence leave for everyone else. Calling it
// again does nothing.
func (h *Hub) Leave(s *Session) {
	d := s.doc
	h.mu.Lock()
	publish := !h.draining
	left := d.remove(s, publish)
	closing := h.closeIfEmptyLocked(d)
	h.mu.Unlock()
	if left {
		h.sessions.Add(-1)
	}
	if closing {
		d.unsubscribe()
	}
}

func (h *Hub) cursor(s *Session, data []byte) { s.doc.cursor(s, data) }
func (h *Hub) untrack(s *Session)             { s.doc.untrack(s) }

// broadcast relays a broadcast from s; bin marks a binary payload (Command.Binary).
func (h *Hub) broadcast(s *Session, name string, data []byte, bin bool) {
	s.doc.broadcast(s, name, data, bin)
}

func (h *Hub) track(s *Session, ref string, state []byte) {
	if len(state) == 0 {
		state = emptyState
	}
	s.doc.track(s, ref, state)
}

// BroadcastFrom sends a broadcast into document id on behalf of a server-side sender (the
// REST API): every member on every instance receives it.
func (h *Hub) BroadcastFrom(from, id, name string, data []byte) error {
	if err := ValidDocID(id); err != nil {
		return err
	}
	h.mu.Lock()
	d := h.docs[id]
	h.mu.Unlock()
	env := bcastEnvelope{Node: h.cfg.Node, From: from, Event: name, Data: data}
	if d != nil {
		d.deliverBroadcast(nil, env)
	}
	return h.publish(h.bus.DocSubject(id, kindBcast), env)
}

// Drain starts a graceful shutdown: no more joins, every session is told to reconnect
// elsewhere (1012), and the other instances drop this one's members at once.
func (h *Hub) Drain() {
	h.mu.Lock()
	if h.draining {
		h.mu.Unlock()
		return
	}
	h.draining = true
	h.drained.Store(true)
	docs := make([]*doc, 0, len(h.docs))
	for _, d := range h.docs {
		docs = append(docs, d)
	}
	h.mu.Unlock()
	if err := h.publish(h.bus.NodeSubject(kindBye), nodeEnvelope{Node: h.cfg.Node}); err != nil {
		h.publishFailed("goodbye", "", err)
	}
	for _, d := range docs {
		d.closeSessions(ErrShutdown)
	}
}

// Close stops the hub's goroutines and subscriptions. Sessions still joined are closed
// with ErrShutdown first. Calls after the first return nil at once.
func (h *Hub) Close() error {
	h.Drain()
	first := false
	h.closeOnce.Do(func() { first = true; close(h.stop) })
	if !first {
		return nil
	}
	h.wg.Wait()
	h.mu.Lock()
	docs := h.docs
	h.docs = map[string]*doc{}
	h.mu.Unlock()
	var errs []error
	for _, d := range docs {
		errs = append(errs, d.unsubscribe())
	}
	errs = append(errs, h.unsubscribe())
	return errors.Join(errs...)
}

func (h *Hub) unsubscribe() error {
	var errs []error
	for _, u := range h.unsubs {
		errs = append(errs, u())
	}
	h.unsubs = nil
	return errors.Join(errs...)
}

// Resync re-announces this instance's members and asks every other instance for its own,
// for every open document. Call it when the bus connection comes back.
//
// Once the answers had SyncTimeout to arrive, every local member gets a fresh presence
// state: the contract's re-synchronisation, which also repairs a client that missed diffs.
func (h *Hub) Resync() {
	if h.Draining() {
		return
	}
	h.publishHeartbeat(true)
	docs := h.openDocs()
	for _, d := range docs {
		d.announce()
		d.requestSync("")
	}
	// The timer's goroutine ends with its one call; documents closed meanwhile skip it, and
	// so does a hub closed meanwhile.
	time.AfterFunc(h.cfg.SyncTimeout, func() {
		select {
		case <-h.stop:
			return
		default:
		}
		for _, d := range docs {
			d.sendState()
		}
	})
}

func (h *Hub) openDocs() []*doc {
	h.mu.Lock()
	defer h.mu.Unlock()
	docs := make([]*doc, 0, len(h.docs))
	for _, d := range h.docs {
		docs = append(docs, d)
	}
	return docs
}

// evict queues a session whose outbox overflowed for removal; the caller may hold d.mu,
// so the removal happens on the evictor goroutine.
func (h *Hub) evict(s *Session) {
	if s.evicted.CompareAndSwap(false, true) {
		h.evictions.push(s)
	}
}

func (h *Hub) evictSession(s *Session) {
	h.log.Info("slow consumer evicted", "doc", s.Doc, "session", s.ID, "user", s.User)
	h.Leave(s)
}

func randomID(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return hex.EncodeToString(b)
}

// Peers returns the other instances known alive.
func (h *Hub) Peers() []string { return h.alivePeers() }
