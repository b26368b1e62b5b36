// Command collabd-bench drives a real-time cursor server over WebSocket and reports
// throughput, end-to-end latency and server cost as one JSON line.
//
// Workload "fanout" (cursor fan-out): -docs documents with -clients clients
// each; every client publishes its cursor position -rate times a second and
// every other client of the same document should receive it. Each message
// carries its sender id, x, y and its send time in ns, so the latency of a
// delivery is its receive time minus that stamp (one process, one clock).
// The run connects every client (and waits until all have joined), sends
// for -warmup without measuring, measures for -duration, stops sending and
// keeps receiving for -drain so that late deliveries of measured messages
// still count, then closes every connection.
//
// Workload "idle": opens the same number of connections, lets them sit for
// -settle, and reports the server's resident memory per connection
// (-server-pid required).
//
// Several servers: -url takes a comma-separated list of base URLs, and
// client number i of every document connects to URL i mod (number of URLs),
// so every document has members on every server (given at least as many
// clients per document as URLs) and cursors must cross between them.
// -server-pid takes a comma-separated list too; the server figures are then
// sums over all the processes, with each one's own figures beside them.
//
// Examples:
//
//	collabd-bench -adapter native -url ws://127.0.0.1:8080 -docs 50 -clients 20 -rate 30 -server-pid PID
//	collabd-bench -adapter native -url ws://127.0.0.1:8080,ws://127.0.0.1:8081 -docs 50 -clients 20 -rate 30 -server-pid PID_A,PID_B
//	collabd-bench -adapter centrifugo -url ws://127.0.0.1:8000 -centrifugo-secret S -docs 50 -clients 20 -rate 30 -server-pid PID
//	collabd-bench -adapter socketio -url ws://127.0.0.1:3000 -docs 20 -clients 10 -rate 20
//	collabd-bench -adapter socketio -url ws://127.0.0.1:3000 -mode idle -docs 500 -clients 20 -server-pid PID
//
// Progress goes to stderr; the last line on stdout is the JSON summary.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"net"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/fasthttp/websocket"
)

type config struct {
	adapter            string
	url                string   // as given, for the summary
	urls               []string // the base URLs it lists
	mode               string
	docs, perDoc       int
	rate               float64
	warmup, duration   time.Duration
	drain, settle      time.Duration
	connectConcurrency int
	connectTimeout     time.Duration
	writeTimeout       time.Duration
	deadline           time.Duration
	sourceIPs          []net.IP
	serverPIDs         []int
	docPrefix          string
	label              string
	seed               uint64
	quiet              bool
	cpuProfile         string
	adapterOpts        adapterOptions
}

func parseFlags(args []string) (config, error) {
	var c config
	var sources, pids string
	fs := flag.NewFlagSet("collabd-bench", flag.ContinueOnError)
	fs.StringVar(&c.adapter, "adapter", "native", "server protocol: "+adapterNames())
	fs.StringVar(&c.url, "url", "ws://127.0.0.1:8080", "server base URL (ws://host:port), or a comma-separated list: client i of every document connects to URL i mod N; the adapter adds the path")
	fs.StringVar(&c.mode, "mode", "fanout", "workload: fanout (cursor fan-out) or idle (memory per idle connection)")
	fs.IntVar(&c.docs, "docs", 50, "number of documents (D)")
	fs.IntVar(&c.perDoc, "clients", 20, "clients per document (C)")
	fs.Float64Var(&c.rate, "rate", 30, "cursor updates per second per client (R)")
	fs.DurationVar(&c.warmup, "warmup", 5*time.Second, "sending time before measuring")
	fs.DurationVar(&c.duration, "duration", 15*time.Second, "measured sending time (idle mode: how long to hold after settling)")
	fs.DurationVar(&c.drain, "drain", 2*time.Second, "receive-only time after sending stops, for late deliveries")
	fs.DurationVar(&c.settle, "settle", 5*time.Second, "idle mode: wait after the last connect before reading server memory")
	fs.IntVar(&c.connectConcurrency, "connect-concurrency", 64, "connections being opened at once")
	fs.DurationVar(&c.connectTimeout, "connect-timeout", 15*time.Second, "limit for dial plus join of one client")
	fs.DurationVar(&c.writeTimeout, "write-timeout", 10*time.Second, "limit for one frame write")
	fs.DurationVar(&c.deadline, "deadline", 10*time.Minute, "hard limit for the whole run")
	fs.StringVar(&sources, "source-ips", "", "comma-separated local addresses to spread connections over (e.g. 127.0.0.2,127.0.0.3) when ephemeral ports run short")
	fs.StringVar(&pids, "server-pid", "", "server process to sample (CPU seconds, RSS, peak RSS) through /proc, or a comma-separated list to report summed (and each apart)")
	fs.StringVar(&c.docPrefix, "doc-prefix", "d", "document names are this prefix plus an index")
	fs.StringVar(&c.label, "label", "", "free text copied into the summary")
	fs.Uint64Var(&c.seed, "seed", 1, "seed for cursor paths and send phases")
	fs.BoolVar(&c.quiet, "quiet", false, "no per-second progress on stderr")
	fs.StringVar(&c.cpuProfile, "cpuprofile", "", "write the load generator's own CPU profile to this file")
	fs.StringVar(&c.adapterOpts.centrifugoSecret, "centrifugo-secret", "", "centrifugo: HMAC secret for HS256 connection tokens (empty: server must run client.insecure)")
	fs.StringVar(&c.adapterOpts.centrifugoNamespace, "centrifugo-namespace", "doc", "centrifugo: channel namespace; the channel is <namespace>:<doc>")
	fs.StringVar(&c.adapterOpts.nativeToken, "native-token", "", "native: JWT that every client passes as the token query parameter (empty: none, or minted with -native-jwt-secret)")
	fs.StringVar(&c.adapterOpts.nativeSecret, "native-jwt-secret", "", "native: HMAC secret to mint an HS256 token per client, sub = client id (the server's -jwt-secret)")
	fs.StringVar(&c.adapterOpts.nativeClaims, "native-claims", "", "native: extra claims for minted tokens, as a JSON object (e.g. document grants)")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	var err error
	if c.urls, err = parseURLs(c.url); err != nil {
		return c, err
	}
	if c.serverPIDs, err = parsePIDs(pids); err != nil {
		return c, err
	}
	switch {
	case c.mode != "fanout" && c.mode != "idle":
		return c, fmt.Errorf("-mode must be fanout or idle, not %q", c.mode)
	case c.docs < 1 || c.perDoc < 1 || c.docs*c.perDoc > 1<<20:
		return c, errors.New("-docs and -clients must be positive, at most 2^20 clients in all")
	case c.mode == "fanout" && (c.rate <= 0 || c.rate > 1000):
		return c, errors.New("-rate must be in (0, 1000]")
	case c.duration <= 0 || c.warmup < 0 || c.drain < 0 || c.settle < 0:
		return c, errors.New("-duration must be positive; -warmup, -drain, -settle not negative")
	case c.connectConcurrency < 1:
		return c, errors.New("-connect-concurrency must be positive")
	case c.mode == "idle" && len(c.serverPIDs) == 0:
		return c, errors.New("-mode idle needs -server-pid")
	}
	for s := range strings.SplitSeq(sources, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		ip := net.ParseIP(s)
		if ip == nil {
			return c, fmt.Errorf("-source-ips: bad address %q", s)
		}
		c.sourceIPs = append(c.sourceIPs, ip)
	}
	return c, nil
}

// parseURLs splits -url. A value without a comma is the one URL exactly as
// given; in a list, blanks around each URL are dropped and none may be empty.
func parseURLs(s string) ([]string, error) {
	if !strings.Contains(s, ",") {
		return []string{s}, nil
	}
	var urls []string
	for u := range strings.SplitSeq(s, ",") {
		if u = strings.TrimSpace(u); u == "" {
			return nil, fmt.Errorf("-url: empty entry in %q", s)
		}
		urls = append(urls, u)
	}
	return urls, nil
}

// parsePIDs splits -server-pid into distinct positive process ids. Empty,
// or 0 alone, means none.
func parsePIDs(s string) ([]int, error) {
	if s = strings.TrimSpace(s); s == "" || s == "0" {
		return nil, nil
	}
	var pids []int
	seen := map[int]bool{}
	for f := range strings.SplitSeq(s, ",") {
		f = strings.TrimSpace(f)
		pid, err := strconv.Atoi(f)
		if err != nil || pid <= 0 {
			return nil, fmt.Errorf("-server-pid: bad process id %q", f)
		}
		if seen[pid] {
			return nil, fmt.Errorf("-server-pid: %d given twice", pid)
		}
		seen[pid] = true
		pids = append(pids, pid)
	}
	return pids, nil
}

// clientURL is the base URL of client i (counted over all documents): the
// client's number within its document picks the URL round-robin, so every
// document spreads over every URL the same way.
func clientURL(urls []string, perDoc, i int) string {
	return urls[i%perDoc%len(urls)]
}

func main() {
	cfg, err := parseFlags(os.Args[1:])
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "collabd-bench:", err)
		os.Exit(2)
	}
	ad, err := newAdapter(cfg.adapter, cfg.adapterOpts)
	if err != nil {
		fmt.Fprintln(os.Stderr, "collabd-bench:", err)
		os.Exit(2)
	}
	ctx, cancel := context.WithTimeout(context.Background(), cfg.deadline)
	defer cancel()
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()

	if cfg.cpuProfile != "" {
		f, err := os.Create(cfg.cpuProfile)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "collabd-bench: -cpuprofile:", err)
			os.Exit(2)
		}
		defer f.Close()
		defer pprof.StopCPUProfile()
	}
	sum := newRun(cfg, ad).execute(ctx)
	out, err := json.Marshal(sum)
	if err != nil {
		fmt.Fprintln(os.Stderr, "collabd-bench:", err)
		os.Exit(1)
	}
	fmt.Println(string(out))
	if sum.Connected == 0 {
		pprof.StopCPUProfile()
		os.Exit(1)
	}
}

// client is one simulated user.
type client struct {
	id   uint32
	doc  int
	conn *websocket.Conn
	sess Session
	wmu  sync.Mutex // one writer at a time: sender and reader (pongs)

	sent atomic.Int64 // all cursor frames written, for progress
	recv atomic.Int64 // all positions from others, for progress

	// Owned by the sender goroutine; read after it has ended.
	sentWindow int64
	writeErrs  int64

	// Owned by the reader goroutine; read after it has ended.
	delivered, recvInWindow                       int64
	frames, echo, acks, other, serverErrs, decErr int64
	readErr                                       error
}

func (c *client) write(frame []byte, timeout time.Duration) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if err := c.conn.SetWriteDeadline(time.Now().Add(timeout)); err != nil {
		return err
	}
	return c.conn.WriteMessage(websocket.TextMessage, frame)
}

// wire adapts a connection to the Wire an adapter uses while joining.
type wire struct {
	c       *websocket.Conn
	timeout time.Duration
}

func (w wire) Send(frame []byte) error {
	if err := w.c.SetWriteDeadline(time.Now().Add(w.timeout)); err != nil {
		return err
	}
	return w.c.WriteMessage(websocket.TextMessage, frame)
}

func (w wire) Recv() ([]byte, error) {
	for {
		mt, b, err := w.c.ReadMessage()
		if err != nil {
			return nil, err
		}
		if mt == websocket.TextMessage {
			return b, nil
		}
	}
}

type run struct {
	cfg     config
	ad      Adapter
	start   time.Time
	dialers []*websocket.Dialer

	lat, connect, sendLag Histogram

	// Measurement window in ns since start; set before the first cursor is sent.
	windowStart, windowEnd atomic.Int64
	closing                atomic.Bool

	readers, senders sync.WaitGroup

	dialErrs, joinErrs atomic.Int64
	errMu              sync.Mutex
	errSamples         []string
}

func newRun(cfg config, ad Adapter) *run {
	r := &run{cfg: cfg, ad: ad, start: time.Now()}
	pool := &sync.Pool{}
	mk := func(local net.Addr) *websocket.Dialer {
		nd := &net.Dialer{Timeout: cfg.connectTimeout, LocalAddr: local}
		return &websocket.Dialer{
			NetDialContext:   nd.DialContext,
			HandshakeTimeout: cfg.connectTimeout,
			ReadBufferSize:   4096,
			WriteBufferSize:  4096,
			WriteBufferPool:  pool,
		}
	}
	if len(cfg.sourceIPs) == 0 {
		r.dialers = []*websocket.Dialer{mk(nil)}
	}
	for _, ip := range cfg.sourceIPs {
		r.dialers = append(r.dialers, mk(&net.TCPAddr{IP: ip}))
	}
	return r
}

func (r *run) now() int64 { return int64(time.Since(r.start)) }

func (r *run) noteErr(format string, args ...any) {
	r.errMu.Lock()
	defer r.errMu.Unlock()
	if len(r.errSamples) < 5 {
		r.errSamples = append(r.errSamples, fmt.Sprintf(format, args...))
	}
}

func (r *run) logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "[%6.1fs] "+format+"\n", append([]any{time.Since(r.start).Seconds()}, args...)...)
}

// sleep waits for d or until ctx ends; it reports whether the full time passed.
func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

func (r *run) docName(doc int) string { return fmt.Sprintf("%s%d", r.cfg.docPrefix, doc) }

// dial connects and joins client i, then starts its reader.
func (r *run) dial(ctx context.Context, i int) *client {
	c := &client{id: uint32(i + 1), doc: i / r.cfg.perDoc}
	doc := r.docName(c.doc)
	t0 := time.Now()
	dctx, cancel := context.WithTimeout(ctx, r.cfg.connectTimeout)
	defer cancel()
	conn, resp, err := r.dialers[i%len(r.dialers)].DialContext(dctx, clientURL(r.cfg.urls, r.cfg.perDoc, i)+r.ad.Path(doc, c.id), nil)
	if resp != nil && resp.Body != nil {
		resp.Body.Close()
	}
	if err != nil {
		r.dialErrs.Add(1)
		r.noteErr("dial %d: %v", c.id, err)
		return nil
	}
	if err := conn.SetReadDeadline(t0.Add(r.cfg.connectTimeout)); err != nil {
		conn.Close()
		return nil
	}
	c.sess, err = r.ad.Join(wire{conn, r.cfg.writeTimeout}, doc, c.id)
	if err == nil {
		err = conn.SetReadDeadline(time.Time{})
	}
	if err != nil {
		r.joinErrs.Add(1)
		r.noteErr("join %d: %v", c.id, err)
		conn.Close()
		return nil
	}
	r.connect.Record(int64(time.Since(t0)), i)
	c.conn = conn
	r.readers.Add(1)
	go r.read(c)
	return c
}

func (r *run) connectAll(ctx context.Context) []*client {
	total := r.cfg.docs * r.cfg.perDoc
	clients := make([]*client, total)
	sem := make(chan struct{}, r.cfg.connectConcurrency)
	var wg sync.WaitGroup
	var done atomic.Int64
	progressDone := make(chan struct{})
	if !r.cfg.quiet {
		go func() {
			t := time.NewTicker(time.Second)
			defer t.Stop()
			for {
				select {
				case <-progressDone:
					return
				case <-t.C:
					r.logf("connecting: %d/%d done", done.Load(), total)
				}
			}
		}()
	}
	for i := 0; i < total && ctx.Err() == nil; i++ {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			clients[i] = r.dial(ctx, i)
			done.Add(1)
		}()
	}
	wg.Wait()
	close(progressDone)
	return clients
}

// read is a client's receive loop; it ends when the connection closes.
func (r *run) read(c *client) {
	defer r.readers.Done()
	var buf bytes.Buffer
	var in Inbound
	hint := int(c.id)
	for {
		mt, rd, err := c.conn.NextReader()
		if err == nil {
			buf.Reset()
			_, err = buf.ReadFrom(rd)
		}
		if err != nil {
			if !r.closing.Load() {
				c.readErr = err
			}
			return
		}
		recvNS := r.now()
		c.frames++
		if mt != websocket.TextMessage {
			c.other++
			continue
		}
		in.reset()
		if err := c.sess.Decode(buf.Bytes(), &in); err != nil {
			if !r.closing.Load() {
				c.readErr = err
			}
			c.conn.Close()
			return
		}
		if len(in.Reply) > 0 {
			if err := c.write(in.Reply, r.cfg.writeTimeout); err != nil && !r.closing.Load() {
				c.readErr = err
			}
		}
		c.acks += int64(in.Acks)
		c.other += int64(in.Other)
		c.serverErrs += int64(in.ServerErrors)
		c.decErr += int64(in.DecodeErrors)
		ws, we := r.windowStart.Load(), r.windowEnd.Load()
		var fromOthers int64
		for _, p := range in.Positions {
			if p.Sender == c.id {
				c.echo++
				continue
			}
			fromOthers++
			if ws == 0 {
				continue
			}
			if recvNS >= ws && recvNS < we {
				c.recvInWindow++
			}
			if p.SentNS >= ws && p.SentNS < we {
				c.delivered++
				r.lat.Record(recvNS-p.SentNS, hint)
			}
		}
		if fromOthers > 0 {
			c.recv.Add(fromOthers)
		}
	}
}

// send is a client's publishing loop: one cursor update per tick, with a
// random phase so that clients do not send in lockstep. It ends at sendEnd.
func (r *run) send(ctx context.Context, c *client, sendEnd int64) {
	defer r.senders.Done()
	period := time.Duration(float64(time.Second) / r.cfg.rate)
	rng := rand.New(rand.NewPCG(r.cfg.seed, uint64(c.id)))
	if !sleep(ctx, time.Duration(rng.Int64N(int64(period)))) {
		return
	}
	tick := time.NewTicker(period)
	defer tick.Stop()
	ws, we := r.windowStart.Load(), r.windowEnd.Load()
	maxSends := int(math.Ceil(float64(sendEnd)/float64(period))) + 1
	x, y := rng.Int32N(1920), rng.Int32N(1080)
	var frame []byte
	scheduled := time.Now()
	hint := int(c.id)
	for n := 0; n < maxSends; n++ {
		if n > 0 {
			select {
			case <-ctx.Done():
				return
			case scheduled = <-tick.C:
			}
		}
		now := r.now()
		if now >= sendEnd {
			return
		}
		x = min(max(x+rng.Int32N(41)-20, 0), 1919)
		y = min(max(y+rng.Int32N(41)-20, 0), 1079)
		frame = c.sess.AppendCursor(frame[:0], Position{Sender: c.id, X: x, Y: y, SentNS: now})
		if err := c.write(frame, r.cfg.writeTimeout); err != nil {
			if !r.closing.Load() {
				c.writeErrs++
				r.noteErr("write %d: %v", c.id, err)
			}
			return
		}
		c.sent.Add(1)
		if now >= ws && now < we {
			c.sentWindow++
			r.sendLag.Record(int64(time.Since(scheduled)), hint)
		}
	}
}

func (r *run) progress(ctx context.Context, clients []*client, until time.Time) {
	if r.cfg.quiet {
		return
	}
	t := time.NewTicker(time.Second)
	defer t.Stop()
	var lastSent, lastRecv int64
	for time.Now().Before(until) {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		var s, rv int64
		for _, c := range clients {
			s += c.sent.Load()
			rv += c.recv.Load()
		}
		phase := "measure"
		if now := r.now(); now < r.windowStart.Load() {
			phase = "warmup"
		} else if now >= r.windowEnd.Load() {
			phase = "drain"
		}
		r.logf("%-7s sent/s %8d  delivered/s %9d", phase, s-lastSent, rv-lastRecv)
		lastSent, lastRecv = s, rv
	}
}

// closeAll closes every connection once and waits for the readers to end.
func (r *run) closeAll(clients []*client) {
	if !r.closing.CompareAndSwap(false, true) {
		return
	}
	msg := websocket.FormatCloseMessage(websocket.CloseNormalClosure, "collabd-bench done")
	for _, c := range clients {
		_ = c.conn.WriteControl(websocket.CloseMessage, msg, time.Now().Add(100*time.Millisecond))
		c.conn.Close()
	}
	waitTimeout(&r.readers, 10*time.Second)
}

func waitTimeout(wg *sync.WaitGroup, d time.Duration) bool {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
		return true
	case <-time.After(d):
		return false
	}
}

func (r *run) execute(ctx context.Context) *Summary {
	cfg := r.cfg
	total := cfg.docs * cfg.perDoc
	s := &Summary{
		Label: cfg.label, Adapter: cfg.adapter, Mode: cfg.mode, URL: cfg.url,
		Docs: cfg.docs, ClientsPerDoc: cfg.perDoc, Clients: total,
		GOMAXPROCS: runtime.GOMAXPROCS(0),
	}
	var before []procSample
	if len(cfg.serverPIDs) > 0 {
		var err error
		if before, err = readProcs(cfg.serverPIDs); err != nil {
			fmt.Fprintln(os.Stderr, "collabd-bench: -server-pid:", err)
			s.Errors.Samples = append(s.Errors.Samples, err.Error())
			cfg.serverPIDs = nil
			r.cfg.serverPIDs = nil
		}
	}
	if !cfg.quiet {
		r.logf("%s %s: connecting %d clients (%d docs x %d) to %s", cfg.adapter, cfg.mode, total, cfg.docs, cfg.perDoc, cfg.url)
	}
	connectStart := time.Now()
	all := r.connectAll(ctx)
	var clients []*client
	members := make([]int, cfg.docs)
	for _, c := range all {
		if c != nil {
			clients = append(clients, c)
			members[c.doc]++
		}
	}
	s.Connected = len(clients)
	s.ConnectPhaseS = round3(time.Since(connectStart).Seconds())
	s.ConnectMS = r.connect.Snapshot().Millis()
	if !cfg.quiet {
		r.logf("connected %d/%d in %.1fs (dial errors %d, join errors %d)", len(clients), total, s.ConnectPhaseS, r.dialErrs.Load(), r.joinErrs.Load())
	}

	if cfg.mode == "idle" {
		r.idle(ctx, s, clients, before)
	} else if len(clients) > 0 {
		r.fanout(ctx, s, clients, members)
	}
	r.closeAll(clients)

	for _, c := range clients {
		s.Errors.Write += c.writeErrs
		s.Errors.Server += c.serverErrs
		s.Errors.Decode += c.decErr
		s.FramesIn += c.frames
		s.Echo += c.echo
		s.Acks += c.acks
		s.Other += c.other
		if c.readErr != nil {
			s.UnexpectedCloses++
			r.noteErr("read %d: %v", c.id, c.readErr)
		}
	}
	s.Errors.Dial, s.Errors.Join = r.dialErrs.Load(), r.joinErrs.Load()
	s.Errors.Samples = append(s.Errors.Samples, r.errSamples...)
	return s
}

func (r *run) idle(ctx context.Context, s *Summary, clients []*client, before []procSample) {
	cfg := r.cfg
	if !sleep(ctx, cfg.settle) {
		return
	}
	afterAll, err := readProcs(cfg.serverPIDs)
	if err != nil {
		s.Errors.Samples = append(s.Errors.Samples, err.Error())
		return
	}
	b0, after := sumProcs(before), sumProcs(afterAll)
	if !cfg.quiet {
		r.logf("settled: server RSS %.1f MB -> %.1f MB; holding %s", mb(b0.rssKB), mb(after.rssKB), cfg.duration)
	}
	held := sleep(ctx, cfg.duration)
	endAll, err := readProcs(cfg.serverPIDs)
	if err != nil {
		s.Errors.Samples = append(s.Errors.Samples, err.Error())
		return
	}
	end := sumProcs(endAll)
	s.Idle = &IdleStats{
		Connections: len(clients),
		HeldS:       round3(cfg.duration.Seconds()),
		RSSBeforeMB: mb(b0.rssKB),
		RSSAfterMB:  mb(after.rssKB),
		RSSEndMB:    mb(end.rssKB),
		PeakMB:      mb(end.peakKB),
		Interrupted: !held,
	}
	if len(clients) > 0 {
		s.Idle.RSSPerConnKB = round3(float64(after.rssKB-b0.rssKB) / float64(len(clients)))
		s.Idle.RSSPerConnEndKB = round3(float64(end.rssKB-b0.rssKB) / float64(len(clients)))
	}
	s.Server, s.Servers = serversStats(cfg.serverPIDs, before, endAll)
}

func serverStats(pid int, a, b procSample) *ServerStats {
	el := b.at.Sub(a.at).Seconds()
	st := &ServerStats{
		PID:        pid,
		CPUS:       round3((b.cpu - a.cpu).Seconds()),
		RSSStartMB: mb(a.rssKB),
		RSSEndMB:   mb(b.rssKB),
		PeakMB:     mb(b.peakKB),
	}
	if el > 0 {
		st.CPUCores = round3((b.cpu - a.cpu).Seconds() / el)
	}
	return st
}

// serversStats turns samples a and b of the processes pids into the
// summary's server figures. One process: its own figures, and no list.
// Several: the sum (CPU seconds and cores, RSS, and the sum of each
// process's peak RSS) without a pid, and each process's own figures.
func serversStats(pids []int, a, b []procSample) (*ServerStats, []*ServerStats) {
	if len(pids) == 1 {
		return serverStats(pids[0], a[0], b[0]), nil
	}
	each := make([]*ServerStats, len(pids))
	var cpu time.Duration
	var cores float64
	for i, pid := range pids {
		each[i] = serverStats(pid, a[i], b[i])
		d := b[i].cpu - a[i].cpu
		cpu += d
		if el := b[i].at.Sub(a[i].at).Seconds(); el > 0 {
			cores += d.Seconds() / el
		}
	}
	sa, sb := sumProcs(a), sumProcs(b)
	return &ServerStats{
		CPUS:       round3(cpu.Seconds()),
		CPUCores:   round3(cores),
		RSSStartMB: mb(sa.rssKB),
		RSSEndMB:   mb(sb.rssKB),
		PeakMB:     mb(sb.peakKB),
	}, each
}

func (r *run) fanout(ctx context.Context, s *Summary, clients []*client, members []int) {
	cfg := r.cfg
	s.RateHz = cfg.rate
	s.WarmupS = round3(cfg.warmup.Seconds())
	s.DurationS = round3(cfg.duration.Seconds())
	offered := float64(cfg.docs*cfg.perDoc) * cfg.rate
	s.OfferedSentPerS = round3(offered)
	s.OfferedDeliveriesPerS = round3(offered * float64(cfg.perDoc-1))

	sendStart := r.now()
	ws := sendStart + int64(cfg.warmup)
	we := ws + int64(cfg.duration)
	r.windowStart.Store(ws)
	r.windowEnd.Store(we)
	for _, c := range clients {
		r.senders.Add(1)
		go r.send(ctx, c, we)
	}
	go r.progress(ctx, clients, r.start.Add(time.Duration(we)+cfg.drain))

	sleep(ctx, time.Duration(ws-r.now()))
	var srvA, srvB []procSample
	var errA, errB error
	if len(cfg.serverPIDs) > 0 {
		srvA, errA = readProcs(cfg.serverPIDs)
	}
	selfA, selfAt := selfCPU(), time.Now()
	sleep(ctx, time.Duration(we-r.now()))
	if len(cfg.serverPIDs) > 0 {
		srvB, errB = readProcs(cfg.serverPIDs)
	}
	selfB, selfBt := selfCPU(), time.Now()
	if !waitTimeout(&r.senders, cfg.writeTimeout+time.Second) {
		r.noteErr("some senders were still blocked in a write at the end of the window")
	}
	sleep(ctx, cfg.drain)
	s.Interrupted = ctx.Err() != nil

	if len(cfg.serverPIDs) > 0 {
		if errA == nil && errB == nil {
			s.Server, s.Servers = serversStats(cfg.serverPIDs, srvA, srvB)
		} else {
			s.Errors.Samples = append(s.Errors.Samples, fmt.Sprint("server sampling: ", errors.Join(errA, errB)))
		}
	}
	if el := selfBt.Sub(selfAt).Seconds(); el > 0 {
		s.Loadgen = &LoadgenStats{CPUS: round3((selfB - selfA).Seconds()), CPUCores: round3((selfB - selfA).Seconds() / el)}
	}
	// Let the readers see the close before reading their counters.
	r.closeAll(clients)

	var sent, expected, delivered, inWindow int64
	for _, c := range clients {
		sent += c.sentWindow
		expected += c.sentWindow * int64(members[c.doc]-1)
		delivered += c.delivered
		inWindow += c.recvInWindow
	}
	d := cfg.duration.Seconds()
	s.Sent = sent
	s.SentPerS = round3(float64(sent) / d)
	s.SentRatio = ratio(float64(sent), offered*d)
	s.ExpectedDeliveries = expected
	s.Delivered = delivered
	s.DeliveredPerS = round3(float64(delivered) / d)
	s.ReceivedInWindowPerS = round3(float64(inWindow) / d)
	s.DeliveryRatio = ratio(float64(delivered), float64(expected))
	s.LatencyMS = r.lat.Snapshot().Millis()
	s.SendLagMS = r.sendLag.Snapshot().Millis()
	if s.Server != nil && delivered > 0 {
		s.ServerUSPerDelivery = math.Round(s.Server.CPUS*1e6/float64(delivered)*100) / 100
	}

	var why []string
	if s.LatencyMS.P99 > 100 {
		why = append(why, "p99 latency > 100 ms")
	}
	if s.DeliveryRatio < 0.99 {
		why = append(why, "deliveries < 99% of expected")
	}
	if s.SentRatio < 0.99 {
		why = append(why, "sends < 99% of offered")
	}
	s.Saturated = len(why) > 0
	s.SaturatedBecause = strings.Join(why, "; ")
}

func ratio(a, b float64) float64 {
	if b <= 0 {
		return 0
	}
	return math.Round(a/b*10000) / 10000
}

// Summary is the JSON line printed at the end of a run.
type Summary struct {
	Label         string `json:"label,omitempty"`
	Adapter       string `json:"adapter"`
	Mode          string `json:"mode"`
	URL           string `json:"url"`
	Docs          int    `json:"docs"`
	ClientsPerDoc int    `json:"clients_per_doc"`
	Clients       int    `json:"clients"`
	GOMAXPROCS    int    `json:"loadgen_gomaxprocs"`

	Connected     int             `json:"connected"`
	ConnectPhaseS float64         `json:"connect_phase_s"`
	ConnectMS     *LatencySummary `json:"connect_ms"`

	RateHz                float64         `json:"rate_hz,omitempty"`
	WarmupS               float64         `json:"warmup_s,omitempty"`
	DurationS             float64         `json:"duration_s,omitempty"`
	OfferedSentPerS       float64         `json:"offered_sent_per_s,omitempty"`
	Sent                  int64           `json:"sent,omitempty"`
	SentPerS              float64         `json:"sent_per_s,omitempty"`
	SentRatio             float64         `json:"sent_ratio,omitempty"`
	OfferedDeliveriesPerS float64         `json:"offered_deliveries_per_s,omitempty"`
	ExpectedDeliveries    int64           `json:"expected_deliveries,omitempty"`
	Delivered             int64           `json:"delivered,omitempty"`
	DeliveredPerS         float64         `json:"delivered_per_s,omitempty"`
	ReceivedInWindowPerS  float64         `json:"received_in_window_per_s,omitempty"`
	DeliveryRatio         float64         `json:"delivery_ratio,omitempty"`
	LatencyMS             *LatencySummary `json:"latency_ms,omitempty"`
	SendLagMS             *LatencySummary `json:"send_lag_ms,omitempty"`
	// ServerUSPerDelivery is the server's CPU time (all -server-pid processes) in the
	// window per delivered position, in microseconds: the figure to compare servers by.
	ServerUSPerDelivery float64 `json:"server_us_per_delivery,omitempty"`

	FramesIn         int64 `json:"frames_in"`
	Echo             int64 `json:"echo"`
	Acks             int64 `json:"acks"`
	Other            int64 `json:"other"`
	UnexpectedCloses int64 `json:"unexpected_closes"`
	Errors           struct {
		Dial    int64    `json:"dial"`
		Join    int64    `json:"join"`
		Write   int64    `json:"write"`
		Server  int64    `json:"server"`
		Decode  int64    `json:"decode"`
		Samples []string `json:"samples,omitempty"`
	} `json:"errors"`

	Server  *ServerStats   `json:"server,omitempty"`
	Servers []*ServerStats `json:"servers,omitempty"` // each process, when -server-pid lists several
	Loadgen *LoadgenStats  `json:"loadgen,omitempty"`
	Idle    *IdleStats     `json:"idle,omitempty"`

	Saturated        bool   `json:"saturated"`
	SaturatedBecause string `json:"saturated_because,omitempty"`
	Interrupted      bool   `json:"interrupted,omitempty"`
}

// ServerStats is the server process over the measurement window (fanout) or
// from before connecting to the end of the hold (idle). With several
// processes, Summary.Server is their sum (no pid; peak_rss_mb is the sum of
// each one's peak) and Summary.Servers holds each one.
type ServerStats struct {
	PID        int     `json:"pid,omitempty"`
	CPUS       float64 `json:"cpu_s"`
	CPUCores   float64 `json:"cpu_cores"`
	RSSStartMB float64 `json:"rss_start_mb"`
	RSSEndMB   float64 `json:"rss_end_mb"`
	PeakMB     float64 `json:"peak_rss_mb"`
}

// LoadgenStats is this process over the measurement window.
type LoadgenStats struct {
	CPUS     float64 `json:"cpu_s"`
	CPUCores float64 `json:"cpu_cores"`
}

// IdleStats is the idle-connection memory measurement.
type IdleStats struct {
	Connections     int     `json:"connections"`
	HeldS           float64 `json:"held_s"`
	RSSBeforeMB     float64 `json:"rss_before_mb"`
	RSSAfterMB      float64 `json:"rss_after_settle_mb"`
	RSSEndMB        float64 `json:"rss_end_mb"`
	PeakMB          float64 `json:"peak_rss_mb"`
	RSSPerConnKB    float64 `json:"rss_per_conn_kb"`
	RSSPerConnEndKB float64 `json:"rss_per_conn_end_kb"`
	Interrupted     bool    `json:"interrupted,omitempty"`
}
