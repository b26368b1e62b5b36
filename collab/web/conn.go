package web

import (
	"context"
	"errors"
	"io"
	"math"
	"net"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	fws "github.com/fasthttp/websocket"
	"github.com/gofiber/contrib/websocket"

	"collabd/collab"
)

// encoder turns what a connection's outbox held into frames of one protocol.
type encoder interface {
	encode(w *frameWriter, events []collab.Event, cursors *collab.Cursors) error
}

// frameSink takes the frames of a batch: a transport, or a poll's answer.
type frameSink interface {
	frame(binary bool, data []byte) error
}

// frameWriter hands frames to a sink, with a buffer reused across them. Once the
// connection's outbox overflowed, the frames it still holds are stale and it refuses them.
type frameWriter struct {
	sink  frameSink
	stale *atomic.Bool
	buf   []byte
}

// errStale stops a batch whose connection was closed as a slow consumer.
var errStale = errors.New("web: slow consumer, batch abandoned")

func (w *frameWriter) text(frame []byte) error { return w.write(false, frame) }

func (w *frameWriter) binary(frame []byte) error { return w.write(true, frame) }

func (w *frameWriter) write(binary bool, frame []byte) error {
	if w.stale != nil && w.stale.Load() {
		return errStale
	}
	return w.sink.frame(binary, frame)
}

// transport carries a streaming connection's frames to its client: a WebSocket or an SSE
// stream. Only the connection's writer calls it.
type transport interface {
	frameSink
	// flush ends a batch: what frame buffered goes out.
	flush() error
	// ping keeps the connection alive and finds a client that is gone.
	ping() error
	// close tells the client why the connection ends, after the last batch.
	close(cerr *collab.CloseError) error
	// setWriteDeadline bounds the writes that follow.
	setWriteDeadline(t time.Time) error
}

// errClientGone ends a connection without a close frame: the client is not there to read it.
var errClientGone = &collab.CloseError{Code: collab.CodeNormal, Reason: "client gone"}

// Close errors of the web layer (docs/protocol.md).
var (
	errAuthMissing  = &collab.CloseError{Code: collab.CodeUnauthorized, Reason: "token missing: send an auth message first"}
	errAuthExpired  = &collab.CloseError{Code: collab.CodeUnauthorized, Reason: "token expired"}
	errAuthInvalid  = &collab.CloseError{Code: collab.CodeUnauthorized, Reason: "token invalid"}
	errAuthUser     = &collab.CloseError{Code: collab.CodeForbidden, Reason: "token is for another user"}
	errAuthDoc      = &collab.CloseError{Code: collab.CodeForbidden, Reason: "token does not allow this document"}
	errFrameTooBig  = &collab.CloseError{Code: collab.CodeTooBig, Reason: "frame too large"}
	errBinaryFrames = &collab.CloseError{Code: collab.CodeProtocol, Reason: "binary frames are not part of this protocol"}
)

// conn is one client connection, whatever its transport: its outbox, encoder, slot in the
// limits, token expiry, and the machinery that ends it on time. Its owner (the WebSocket
// or SSE handler, or a poll session's writer) calls finish when it ends.
type conn struct {
	srv  *Server
	out  *collab.Outbox
	enc  encoder
	slot *slot

	// ctx ends when the outbox closes: a join still waiting for the document gives up.
	ctx    context.Context
	cancel context.CancelFunc

	expires atomic.Int64 // unix nanoseconds when the token expires; 0: never

	closing atomic.Bool // the outbox closed: frames the client still sends are ignored
	stale   atomic.Bool // the outbox overflowed: the writer drops what it holds

	// abort ends the network connection at once (nil: nothing to end, a poll session).
	abort func()

	abortMu  sync.Mutex
	deadline *time.Timer // guarded by abortMu: aborts a close that takes longer than CloseTimeout
	expiry   *time.Timer // guarded by abortMu: closes the connection when its token expires
	finished bool        // guarded by abortMu: the owner is done; abort must not run

	wr *writer // a streaming connection's writer (startWriter); nil for a poll session

	// WebSocket connections only.
	ws         *websocket.Conn
	readFailed bool      // owned by the reader: the WebSocket library's reader failed, it reads no more
	readBy     time.Time // owned by the reader: its deadline (readWithin)
}

// newConn registers a connection of the server; abort ends its network connection.
func (s *Server) newConn(sl *slot, enc encoder, abort func()) *conn {
	c := &conn{
		srv:   s,
		out:   collab.NewOutbox(s.cfg.QueueBytes),
		enc:   enc,
		slot:  sl,
		abort: abort,
	}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.out.OnClose(c.onClose)
	s.register(c)
	return c
}

// onClose runs when the outbox closes, under its lock. A connection the server closes is
// gone within CloseTimeout whatever the client does: its writer may be blocked on a client
// that does not read, and the client may never answer the close.
func (c *conn) onClose(cerr *collab.CloseError) {
	c.closing.Store(true)
	if cerr == collab.ErrSlowConsumer {
		c.stale.Store(true)
	}
	c.cancel()
	if cerr == errClientGone || c.abort == nil {
		return
	}
	c.abortMu.Lock()
	defer c.abortMu.Unlock()
	if !c.finished && c.deadline == nil {
		c.deadline = time.AfterFunc(c.srv.cfg.CloseTimeout, c.abortNow)
	}
}

// abortNow ends the network connection, unless the owner finished with it.
func (c *conn) abortNow() {
	c.abortMu.Lock()
	defer c.abortMu.Unlock()
	if !c.finished && c.abort != nil {
		c.abort()
	}
}

// finish ends the connection's life: no abort after this, the slot is free, the server
// forgets it. Its owner calls it once every goroutine of the connection stopped.
func (c *conn) finish() {
	c.abortMu.Lock()
	c.finished = true
	if c.deadline != nil {
		c.deadline.Stop()
	}
	if c.expiry != nil {
		c.expiry.Stop()
	}
	c.abortMu.Unlock()
	c.cancel()
	c.srv.unregister(c)
	c.slot.release()
}

// ended counts a connection's end in the metrics, by the close code the server sent.
func (c *conn) ended() {
	if final := c.out.Closed(); final != nil && final != errClientGone {
		c.srv.metrics.closed(final.Code)
	}
}

// hijacked returns the connection under fasthttp's wrapper of a hijacked one (TCP, or TLS
// on a TLS listener): closing the wrapper does nothing, and it is reused once the handler
// returned.
func hijacked(nc net.Conn) net.Conn {
	if u, ok := nc.(interface{ UnsafeConn() net.Conn }); ok {
		return u.UnsafeConn()
	}
	return nc
}

// tcpConn returns the TCP connection under nc: closing it ends the connection at once,
// where closing a TLS connection first writes a close_notify that a blocked write holds up.
func tcpConn(nc net.Conn) net.Conn {
	if t, ok := nc.(interface{ NetConn() net.Conn }); ok {
		return t.NetConn()
	}
	return nc
}

// serveConn runs an upgraded connection until it ends: read is the protocol's reader, enc
// its writer's encoder. The connection's slot in the limits is released after.
func (s *Server) serveConn(ws *websocket.Conn, sl *slot, readLimit int64, enc encoder, read func(*conn) *collab.CloseError) {
	defer s.handlers.Add(-1) // counted by handOver
	ws.SetReadLimit(readLimit)
	nc := tcpConn(hijacked(ws.NetConn()))
	c := s.newConn(sl, enc, func() { _ = nc.Close() })
	defer c.finish()
	c.ws = ws
	c.serveWS(func() *collab.CloseError { return read(c) })
}

// serveWS starts the writer, then runs read on this goroutine; when read returns, the writer
// sends what is queued and the close frame, and serveWS returns once it ended.
//
// Closing follows RFC 6455 7.1.1: the server closes the TCP connection as soon as the
// client's close frame answered its own. When the writer sent the close (the outbox was
// closed: drain, expiry, slow consumer), the reader is still reading and returns on that
// answer; when the reader decided it, serveWS reads until the answer. CloseTimeout bounds
// both for a client that never answers.
func (c *conn) serveWS(read func() *collab.CloseError) {
	c.startWriter(wsTransport{ws: c.ws, writeTimeout: c.srv.cfg.WriteTimeout}, c.srv.cfg.PingInterval)
	cerr := c.readSafely(read)
	if cerr == nil {
		cerr = errClientGone
	}
	c.out.Close(cerr)
	if err := c.awaitWriter(); err != nil {
		c.srv.log.Debug("write failed", "err", err)
	}
	c.ended()
	if final := c.out.Closed(); final != errClientGone {
		c.awaitCloseAnswer(final)
	}
}

// awaitCloseAnswer reads what the client still sends after the server's close frame until
// its close frame (or the end of the connection) arrives: closing a socket with unread input
// makes the kernel reset the connection, and the client may then lose the close frame.
func (c *conn) awaitCloseAnswer(final *collab.CloseError) {
	deadline := time.Now().Add(c.srv.cfg.CloseTimeout)
	if !c.readFailed {
		_ = c.ws.SetReadDeadline(deadline)
		for {
			if _, _, err := c.ws.ReadMessage(); err != nil {
				return
			}
		}
	}
	if final == errFrameTooBig {
		// The library stopped reading mid-frame and sent 1009 itself: discard raw bytes.
		nc := c.ws.NetConn()
		if nc.SetReadDeadline(deadline) == nil {
			_, _ = io.CopyN(io.Discard, nc, 1<<20) // ends at EOF, the deadline or 1 MiB
		}
	}
}

// readSafely runs read, turning a panic into an internal-error close.
func (c *conn) readSafely(read func() *collab.CloseError) (cerr *collab.CloseError) {
	defer func() {
		if p := recover(); p != nil {
			c.panicked("reader", p)
			cerr = collab.ErrInternal
		}
	}()
	return read()
}

// panicked logs a panic recovered in one of the connection's goroutines and ends the
// connection with 1011: a bug met by one connection stays with that connection.
func (c *conn) panicked(where string, p any) {
	c.srv.log.Error("panic in connection "+where, "panic", p, "stack", string(debug.Stack()))
	c.out.Close(collab.ErrInternal)
}

// setExpiry makes the connection close with 4001 at t (zero: never), replacing the expiry
// it had.
func (c *conn) setExpiry(t time.Time) {
	var n int64
	if !t.IsZero() {
		n = t.UnixNano()
	}
	c.expires.Store(n)
	c.abortMu.Lock()
	defer c.abortMu.Unlock()
	if c.expiry != nil {
		c.expiry.Stop()
	}
	switch {
	case n == 0 || c.finished:
	case c.expiry == nil:
		c.expiry = time.AfterFunc(time.Until(t), c.expireIfDue)
	default:
		c.expiry.Reset(time.Until(t))
	}
}

// expireIfDue runs on the expiry timer: a timer that fired just as a refresh moved the
// expiry finds it not due.
func (c *conn) expireIfDue() {
	if n := c.expires.Load(); n != 0 && time.Now().UnixNano() >= n {
		c.out.Close(errAuthExpired)
	}
}

// startWriter makes t the connection's writer. The writer is not a goroutine that waits:
// one runs while the outbox holds something, a ping is due or the connection is closing,
// and ends when that is done, so an idle connection holds no writer and no buffers. Every
// pingEvery a ping goes out (and a writer that has been idle since the last one lets its
// buffers go). awaitWriter returns once the writer sent the close, or a write failed.
func (c *conn) startWriter(t transport, pingEvery time.Duration) {
	c.wr = &writer{t: t, every: pingEvery, done: make(chan struct{})}
	c.wr.w = frameWriter{sink: t, stale: &c.stale}
	// The timer is in place before it is armed: a ping due at once (a short interval, a
	// busy machine) finds it to rearm. Reset orders the assignment before the timer's run.
	c.wr.ping = time.AfterFunc(math.MaxInt64, c.pingDue)
	c.wr.ping.Reset(pingEvery)
	c.out.Notify(c.kick)
	c.kick()
}

// writer is the state of a connection's writer between its runs; one run at a time owns it.
type writer struct {
	t     transport
	every time.Duration
	ping  *time.Timer

	pending atomic.Bool // there may be work: set before a run is asked for
	running atomic.Bool // a run goroutine exists (or the writer ended)
	pinging atomic.Bool // a ping is due

	// Owned by the running goroutine.
	w       frameWriter
	events  []collab.Event
	cursors collab.Cursors
	busy    bool // wrote since the last ping

	done chan struct{} // closed when the writer ended
	err  error         // set before done is closed: the write that failed
}

// kick asks for a writer run; it never blocks (the outbox calls it under its lock).
func (c *conn) kick() {
	wr := c.wr
	wr.pending.Store(true)
	if wr.running.CompareAndSwap(false, true) {
		go c.writeRuns()
	}
}

// pingDue runs on the ping timer.
func (c *conn) pingDue() {
	c.wr.pinging.Store(true)
	c.kick()
}

// writeRuns works while there is work. A kick that comes after the last look at pending
// either sees running false and starts the next run, or is seen here.
func (c *conn) writeRuns() {
	wr := c.wr
	for {
		for wr.pending.Swap(false) {
			if ended, err := c.writeSafely(); ended {
				wr.err = err
				wr.ping.Stop()
				close(wr.done) // running stays true: no run after this
				return
			}
		}
		wr.trim(false)
		wr.running.Store(false)
		if !wr.pending.Load() || !wr.running.CompareAndSwap(false, true) {
			return
		}
	}
}

// trim lets go of the storage a burst grew (a presence state, a backlog of events), or of
// all of it when the connection is at rest: the writer of an idle connection holds little.
func (wr *writer) trim(all bool) {
	if all || cap(wr.events) > keptEvents {
		wr.events = nil
	}
	if all || cap(wr.w.buf) > keptFrameBytes {
		wr.w.buf = nil
	}
	if all {
		wr.cursors = collab.Cursors{}
	}
}

// What a writer keeps between runs.
const (
	keptEvents     = 8
	keptFrameBytes = 2 << 10
)

// awaitWriter waits for the writer to end and returns the write error, if any.
func (c *conn) awaitWriter() error {
	<-c.wr.done
	return c.wr.err
}

// errWriterPanic is the writer's error when a run panicked.
var errWriterPanic = errors.New("panic in connection writer")

// writeSafely runs writeOnce, turning a panic into the end of this connection alone: its
// writer's state can no longer be trusted, so the network connection is cut (the client
// sees it drop and reconnects) and the connection counts as ended with 1011.
func (c *conn) writeSafely() (ended bool, err error) {
	defer func() {
		if p := recover(); p != nil {
			c.panicked("writer", p)
			c.abortNow()
			ended, err = true, errWriterPanic
		}
	}()
	return c.writeOnce()
}

// writeOnce sends a ping when one is due and what the outbox holds; ended reports that the
// writer is done: it sent the close, or a write failed.
func (c *conn) writeOnce() (ended bool, err error) {
	wr := c.wr
	pinging := wr.pinging.Swap(false)
	if pinging && !wr.busy {
		wr.trim(true) // idle since the last ping
	}
	var cerr *collab.CloseError
	wr.events, cerr = c.out.Drain(wr.events[:0], &wr.cursors)
	queued := len(wr.events) > 0 || !wr.cursors.Empty() || cerr != nil
	if !pinging && !queued {
		return false, nil
	}
	err = wr.t.setWriteDeadline(time.Now().Add(c.srv.cfg.WriteTimeout))
	if err == nil && pinging {
		wr.busy = false
		err = wr.t.ping()
		wr.ping.Reset(wr.every)
	}
	if err != nil {
		return true, c.stop(err)
	}
	if !queued {
		return false, nil
	}
	wr.busy = true
	err = c.enc.encode(&wr.w, wr.events, &wr.cursors)
	if err == nil {
		err = wr.t.flush()
	}
	clear(wr.events)
	if err == errStale {
		// The outbox overflowed while this batch was going out: skip the rest, say why.
		err, cerr = nil, c.out.Closed()
	}
	if err == nil && cerr != nil && cerr != errClientGone {
		err = wr.t.close(cerr)
	}
	if err != nil {
		return true, c.stop(err)
	}
	return cerr != nil, nil
}

// stop ends the writer after a failed write: the client is gone, so the connection ends
// now and the reader returns.
func (c *conn) stop(err error) error {
	c.out.Close(errClientGone)
	c.abortNow()
	return err
}

// readFrame reads the next message, keeping the connection alive while the client talks
// or answers pings, and ignoring what it sends once the connection is closing. It returns
// the close error to end with.
func (c *conn) readFrame() (int, []byte, *collab.CloseError) {
	return c.readFrameWithin(c.srv.cfg.IdleTimeout)
}

// readFrameWithin is readFrame with the time the client has to send the frame.
func (c *conn) readFrameWithin(timeout time.Duration) (int, []byte, *collab.CloseError) {
	for {
		if err := c.readWithin(timeout); err != nil {
			c.readFailed = true
			return 0, nil, errClientGone
		}
		mt, data, err := c.ws.ReadMessage()
		if err != nil {
			c.readFailed = true
			if errors.Is(err, fws.ErrReadLimit) {
				return 0, nil, errFrameTooBig
			}
			return 0, nil, errClientGone
		}
		if !c.closing.Load() {
			return mt, data, nil
		}
	}
}

// readWithin makes the reader's deadline timeout from now. The deadline moves only when it
// would move by more than a sixteenth of timeout (at most a second): a client sending 30
// frames a second costs one timer change a second, not one a frame, and gets a deadline at
// most that much early.
func (c *conn) readWithin(timeout time.Duration) error {
	want := time.Now().Add(timeout)
	if d := want.Sub(c.readBy); d >= 0 && d <= min(timeout/16, time.Second) {
		return nil
	}
	c.readBy = want
	return c.ws.SetReadDeadline(want)
}

func (c *conn) extendOnPong() {
	c.ws.SetPongHandler(func(string) error { return c.readWithin(c.srv.cfg.IdleTimeout) })
}

// wsTransport writes a WebSocket's frames; each frame goes out as it is written.
type wsTransport struct {
	ws           *websocket.Conn
	writeTimeout time.Duration
}

func (t wsTransport) frame(binary bool, data []byte) error {
	if binary {
		return t.ws.WriteMessage(websocket.BinaryMessage, data)
	}
	return t.ws.WriteMessage(websocket.TextMessage, data)
}

func (t wsTransport) flush() error { return nil }

func (t wsTransport) ping() error {
	return t.ws.WriteControl(websocket.PingMessage, nil, time.Now().Add(t.writeTimeout))
}

func (t wsTransport) close(cerr *collab.CloseError) error {
	if cerr == errFrameTooBig {
		return nil // the library sent 1009 itself
	}
	return t.ws.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(cerr.Code, cerr.Reason))
}

func (t wsTransport) setWriteDeadline(d time.Time) error { return t.ws.SetWriteDeadline(d) }
