package web

import (
	"errors"
	"io"
	"math"
	"runtime"
	"runtime/debug"
	"sync/atomic"
	"time"

	fws "github.com/fasthttp/websocket"
	"github.com/gofiber/contrib/websocket"
	"golang.org/x/sync/errgroup"

	"collabd/collab"
)

// encoder turns what a connection's outbox held into frames of one protocol.
type encoder interface {
	encode(w *frameWriter, events []collab.Event, cursors []collab.CursorSlot) error
}

// frameWriter writes frames with a buffer reused across them.
type frameWriter struct {
	ws  *websocket.Conn
	buf []byte
}

func (w *frameWriter) text(frame []byte) error {
	return w.ws.WriteMessage(websocket.TextMessage, frame)
}
func (w *frameWriter) binary(frame []byte) error {
	return w.ws.WriteMessage(websocket.BinaryMessage, frame)
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

// conn is one client WebSocket connection. The handler goroutine reads; a writer goroutine
// that the handler owns and waits for writes everything the outbox holds, and the pings.
type conn struct {
	srv *Server
	ws  *websocket.Conn
	out *collab.Outbox
	enc encoder

	expires    atomic.Int64  // unix nanoseconds when the token expires; 0: never
	expiryMove chan struct{} // capacity 1: expires changed
}

// serveConn runs an upgraded connection until it ends: read is the protocol's reader, enc
// its writer's encoder. The connection's slot in the limits is released after.
func (s *Server) serveConn(ws *websocket.Conn, sl *slot, readLimit int64, enc encoder, read func(*conn) *collab.CloseError) {
	s.handlers.Add(1)
	defer s.handlers.Add(-1)
	defer sl.release()
	ws.SetReadLimit(readLimit)
	c := &conn{
		srv:        s,
		ws:         ws,
		out:        collab.NewOutbox(s.cfg.QueueBytes),
		enc:        enc,
		expiryMove: make(chan struct{}, 1),
	}
	c.serve(func() *collab.CloseError { return read(c) })
}

// serve runs the writer, then read on this goroutine; when read returns, the writer sends
// what is queued and the close frame, and serve returns once it stopped.
func (c *conn) serve(read func() *collab.CloseError) {
	var g errgroup.Group
	g.Go(c.writeLoop)
	cerr := c.readSafely(read)
	if cerr == nil {
		cerr = errClientGone
	}
	c.out.Close(cerr)
	if err := g.Wait(); err != nil {
		c.srv.log.Debug("write failed", "err", err)
	}
	if final := c.out.Closed(); final != nil && final != errClientGone {
		c.srv.metrics.closed(final.Code)
		c.linger()
	}
}

// lingerTime bounds how long a connection the server closed is read after its close frame.
const lingerTime = time.Second

// linger reads and discards what the client still sends, until it closes or lingerTime
// passes: closing a socket with unread input makes the kernel reset the connection, and
// the client may then lose the close frame that says why.
func (c *conn) linger() {
	nc := c.ws.NetConn()
	if err := nc.SetReadDeadline(time.Now().Add(lingerTime)); err != nil {
		return
	}
	_, _ = io.CopyN(io.Discard, nc, 1<<20) // ends at EOF, the deadline or 1 MiB
}

// readSafely runs read, turning a panic into an internal-error close.
func (c *conn) readSafely(read func() *collab.CloseError) (cerr *collab.CloseError) {
	defer func() {
		if p := recover(); p != nil {
			c.srv.log.Error("panic in connection reader", "panic", p, "stack", string(debug.Stack()))
			cerr = collab.ErrInternal
		}
	}()
	return read()
}

// setExpiry makes the connection close with 4001 at t (zero: never).
func (c *conn) setExpiry(t time.Time) {
	var n int64
	if !t.IsZero() {
		n = t.UnixNano()
	}
	c.expires.Store(n)
	select {
	case c.expiryMove <- struct{}{}:
	default:
	}
}

func (c *conn) writeLoop() error {
	cfg := &c.srv.cfg
	ping := time.NewTicker(cfg.PingInterval)
	defer ping.Stop()
	expiry := time.NewTimer(math.MaxInt64)
	defer expiry.Stop()
	w := frameWriter{ws: c.ws}
	var events []collab.Event
	var cursors []collab.CursorSlot
	for {
		select {
		case <-c.out.Wake():
		case <-ping.C:
			if err := c.ws.WriteControl(websocket.PingMessage, nil, time.Now().Add(cfg.WriteTimeout)); err != nil {
				return c.stop(err)
			}
			continue
		case <-c.expiryMove:
			expiry.Reset(time.Duration(math.MaxInt64))
			if n := c.expires.Load(); n != 0 {
				expiry.Reset(time.Until(time.Unix(0, n)))
			}
			continue
		case <-expiry.C:
			c.out.Close(errAuthExpired)
		}
		// Let the goroutines that woke this one finish their fan-out first: the drain then
		// takes more senders into one frame (see docs/benchmarks.md).
		runtime.Gosched()
		var cerr *collab.CloseError
		events, cursors, cerr = c.out.Drain(events[:0], cursors[:0])
		if err := c.ws.SetWriteDeadline(time.Now().Add(cfg.WriteTimeout)); err != nil {
			return c.stop(err)
		}
		if err := c.enc.encode(&w, events, cursors); err != nil {
			return c.stop(err)
		}
		clear(events)
		clear(cursors)
		if cerr != nil {
			var err error
			if cerr != errClientGone && cerr != errFrameTooBig { // the library sent 1009 itself
				err = c.ws.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(cerr.Code, cerr.Reason))
			}
			return c.stop(err)
		}
	}
}

// stop ends the writer: the reader is unblocked, so the handler returns.
func (c *conn) stop(err error) error {
	c.out.Close(errClientGone)
	_ = c.ws.SetReadDeadline(time.Now()) // a connection that fails here is closing anyway
	return err
}

// readFrame reads the next message, keeping the connection alive while the client talks
// or answers pings. It returns the close error to end with.
func (c *conn) readFrame() (int, []byte, *collab.CloseError) {
	if err := c.ws.SetReadDeadline(time.Now().Add(c.srv.cfg.IdleTimeout)); err != nil {
		return 0, nil, errClientGone
	}
	mt, data, err := c.ws.ReadMessage()
	if err != nil {
		if errors.Is(err, fws.ErrReadLimit) {
			return 0, nil, errFrameTooBig
		}
		return 0, nil, errClientGone
	}
	return mt, data, nil
}

func (c *conn) extendOnPong() {
	c.ws.SetPongHandler(func(string) error {
		return c.ws.SetReadDeadline(time.Now().Add(c.srv.cfg.IdleTimeout))
	})
}
