package web

import (
	"bufio"
	"bytes"
	"errors"
	"net"
	"net/url"
	"time"

	"github.com/gofiber/fiber/v2"

	"collabd/collab"
)

// sseMaxKeepAlive bounds the time between two writes on an SSE stream: proxies close
// streams that stay silent for long.
const sseMaxKeepAlive = 15 * time.Second

// sseOpen opens a Server-Sent Events stream: GET /sse/{doc}. The response is written on
// the hijacked connection, by the connection's writer, until the session ends; its first
// event gives the client the secret it POSTs its frames with.
func (s *Server) sseOpen(c *fiber.Ctx) error {
	o, err := s.checkOpen(c)
	if o == nil {
		return err
	}
	var origin string
	if o := c.Get(fiber.HeaderOrigin); o != "" {
		origin = o // allowed: checkOpen refuses the others
	}
	return s.handOver(c, o.slot, func() error {
		c.Context().HijackSetNoResponse(true)
		c.Context().Hijack(func(nc net.Conn) { s.serveSSE(nc, o, origin) })
		return nil
	})
}

// serveSSE runs an SSE session on its hijacked connection: the writer streams the
// session's frames as events; this goroutine joins, then reads the connection, which the
// client uses for nothing else, so that its going away is a leave at once.
func (s *Server) serveSSE(nc net.Conn, o *admission, origin string) {
	defer s.handlers.Add(-1) // counted by handOver
	raw := hijacked(nc)
	tcp := tcpConn(raw)
	c := s.newConn(o.slot, nativeEncoder{}, func() { _ = tcp.Close() })
	defer c.finish()
	hs := s.newHTTPSession(transportSSE, o, c)
	defer s.endHTTPSession(hs)
	joined := false
	defer func() {
		if !joined {
			close(hs.joined)
		}
	}()

	t := &sseTransport{nc: nc, raw: raw, bw: bufio.NewWriterSize(nc, 8<<10)}
	if err := t.open(hs, origin, s.cfg.WriteTimeout); err != nil {
		c.out.Close(errClientGone)
		return
	}
	keepAlive := min(s.cfg.PingInterval, sseMaxKeepAlive)
	c.startWriter(t, keepAlive)
	cerr := c.readSafely(func() *collab.CloseError {
		m, cerr := s.joinNative(c, o.doc, o.user, o.ident, "")
		hs.member, joined = m, true
		close(hs.joined)
		if cerr != nil {
			return cerr
		}
		defer s.hub.Leave(m.sess)
		buf := make([]byte, 512)
		for {
			if _, err := nc.Read(buf); err != nil {
				return errClientGone
			}
		}
	})
	c.out.Close(cerr)
	if err := c.awaitWriter(); err != nil {
		s.log.Debug("sse write failed", "err", err)
	}
	c.ended()
}

// sseTransport writes an SSE stream: every frame one event, the close an "event: close".
type sseTransport struct {
	nc  net.Conn // the hijacked connection
	raw net.Conn // under fasthttp's wrapper (TCP or TLS), to end the response
	bw  *bufio.Writer
}

var errBinaryOverSSE = errors.New("web: binary frames cannot go over SSE")

// open writes the response head and the session event.
func (t *sseTransport) open(hs *httpSession, origin string, timeout time.Duration) error {
	if err := t.nc.SetWriteDeadline(time.Now().Add(timeout)); err != nil {
		return err
	}
	t.bw.WriteString("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nX-Accel-Buffering: no\r\nConnection: close\r\n")
	if origin != "" {
		t.bw.WriteString("Access-Control-Allow-Origin: " + origin + "\r\nVary: Origin\r\n")
	}
	t.bw.WriteString("\r\n")
	t.bw.WriteString(`event: session` + "\n" + `data: {"sid":"` + hs.sid + `","post":"/sse/` + url.PathEscape(hs.doc) + `?sid=` + hs.sid + "\"}\n\n")
	return t.bw.Flush()
}

func (t *sseTransport) frame(binary bool, data []byte) error {
	if binary {
		return errBinaryOverSSE
	}
	// A frame is JSON, whose only line breaks are white space: each line is one data line,
	// and the client joins them with "\n".
	for len(data) > 0 {
		line := data
		rest := []byte(nil)
		if i := bytes.IndexAny(data, "\r\n"); i >= 0 {
			line, rest = data[:i], data[i+1:]
		}
		t.bw.WriteString("data: ")
		t.bw.Write(line)
		t.bw.WriteByte('\n')
		data = rest
	}
	_, err := t.bw.WriteString("\n")
	return err
}

func (t *sseTransport) flush() error { return t.bw.Flush() }

func (t *sseTransport) ping() error {
	t.bw.WriteString(": ping\n\n")
	return t.bw.Flush()
}

// close writes the close event and ends the response.
func (t *sseTransport) close(cerr *collab.CloseError) error {
	t.bw.WriteString("event: close\ndata: ")
	t.bw.Write(appendClose(nil, cerr))
	t.bw.WriteString("\n\n")
	if err := t.bw.Flush(); err != nil {
		return err
	}
	if cw, ok := t.raw.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return t.raw.Close()
}

func (t *sseTransport) setWriteDeadline(d time.Time) error { return t.nc.SetWriteDeadline(d) }
