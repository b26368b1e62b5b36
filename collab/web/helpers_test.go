package web_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fasthttp/websocket"

	"collabd/collab"
	"collabd/collab/web"
	"collabd/nats"
	"collabd/nats/natstest"
)

// instance is one collabd instance (bus, hub, web server) on loopback.
type instance struct {
	url string // http://127.0.0.1:port
	hub *collab.Hub
	srv *web.Server
	bus *nats.Bus
}

type instanceOpts struct {
	web web.Config
	hub collab.Config
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// startInstance runs an instance on the NATS server at natsURL; it stops when the test ends.
func startInstance(t *testing.T, natsURL string, o instanceOpts) *instance {
	t.Helper()
	ctx := context.Background()
	bus, err := nats.Open(ctx, nats.Options{URL: natsURL, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	hc := o.hub
	if hc.Heartbeat == 0 {
		hc.Heartbeat, hc.DownAfter = 100*time.Millisecond, 400*time.Millisecond
	}
	hc.Logger = quietLogger()
	hub, err := collab.NewHub(ctx, bus, hc)
	if err != nil {
		t.Fatal(err)
	}
	bus.OnReconnect(hub.Resync)
	wc := o.web
	wc.Logger = quietLogger()
	wc.Ready = bus.Connected
	wc.NATSReconnects = bus.Reconnects
	srv := web.New(hub, wc)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	inst := &instance{url: "http://" + ln.Addr().String(), hub: hub, srv: srv, bus: bus}
	t.Cleanup(func() {
		hub.Drain()
		if err := srv.Shutdown(5 * time.Second); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		<-done
		hub.Close()
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		bus.Close(cctx)
	})
	return inst
}

// startCluster runs n instances on one real nats-server.
func startCluster(t *testing.T, n int, o instanceOpts) []*instance {
	t.Helper()
	ns := natstest.NewServer(t)
	out := make([]*instance, n)
	for i := range out {
		out[i] = startInstance(t, ns.URL(), o)
	}
	if n > 1 {
		// Instances know each other from their heartbeats; wait for them so that a join
		// waits for every instance's presence.
		natstest.WaitFor(t, 5*time.Second, func() bool {
			for _, in := range out {
				if len(in.hub.Peers()) < n-1 {
					return false
				}
			}
			return true
		})
	}
	return out
}

func (in *instance) wsURL(path string) string {
	return "ws" + strings.TrimPrefix(in.url, "http") + path
}

// frame is a native server frame.
type frame struct {
	Type    string          `json:"type"`
	Ref     string          `json:"ref,omitempty"`
	Payload json.RawMessage `json:"payload,omitempty"`
}

// frameStream is what a test client of any transport has read: the frames in arrival order,
// the channel closed when the connection ends. ended says how it ended, for failures.
type frameStream struct {
	t      *testing.T
	frames chan frame
	ended  func() any
}

func newFrameStream(t *testing.T, ended func() any) frameStream {
	return frameStream{t: t, frames: make(chan frame, 4096), ended: ended}
}

// next returns the next frame, failing the test after timeout.
func (c *frameStream) next(timeout time.Duration) frame {
	c.t.Helper()
	select {
	case f, ok := <-c.frames:
		if !ok {
			c.t.Fatalf("connection ended (%v) while waiting for a frame", c.ended())
		}
		return f
	case <-time.After(timeout):
		c.t.Fatalf("no frame within %s", timeout)
	}
	return frame{}
}

// expect returns the next frame, which must be of type typ.
func (c *frameStream) expect(typ string) frame {
	c.t.Helper()
	f := c.next(5 * time.Second)
	if f.Type != typ {
		c.t.Fatalf("got frame %s %s, want type %s", f.Type, f.Payload, typ)
	}
	return f
}

// until skips frames until one of type typ satisfies match (nil: any).
func (c *frameStream) until(typ string, match func(frame) bool) frame {
	c.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			c.t.Fatalf("no %s frame matched within 5s", typ)
		}
		if f := c.next(left); f.Type == typ && (match == nil || match(f)) {
			return f
		}
	}
}

// client is a real WebSocket client of the native protocol.
type client struct {
	frameStream
	ws     *websocket.Conn
	mu     sync.Mutex
	closed *websocket.CloseError // guarded by mu: the server's close, once read
	done   chan struct{}
	stop   chan struct{} // closed when the test ends
	resume chan struct{} // guarded by mu: non-nil while the client pretends not to read
	id     string        // session id from welcome
	pings  atomic.Int32  // pings the server sent (each answered, as a browser does)
}

// pause stops reading from the socket (after at most one more frame), as a stuck browser
// tab does; unpause reads again.
func (c *client) pause() {
	c.mu.Lock()
	c.resume = make(chan struct{})
	c.mu.Unlock()
}

func (c *client) unpause() {
	c.mu.Lock()
	close(c.resume)
	c.resume = nil
	c.mu.Unlock()
}

// dial connects to path on in and returns once the upgrade answered.
func dial(t *testing.T, in *instance, path string, header http.Header) (*client, *http.Response, error) {
	t.Helper()
	d := websocket.Dialer{HandshakeTimeout: 5 * time.Second}
	ws, resp, err := d.Dial(in.wsURL(path), header)
	if err != nil {
		return nil, resp, err
	}
	c := &client{ws: ws, done: make(chan struct{}), stop: make(chan struct{})}
	c.frameStream = newFrameStream(t, func() any { return c.closeErr() })
	ws.SetPingHandler(func(data string) error {
		c.pings.Add(1)
		err := ws.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(time.Second))
		if errors.Is(err, websocket.ErrCloseSent) || errors.Is(err, net.ErrClosed) {
			return nil // as the library's own handler: the connection is ending anyway
		}
		return err
	})
	go c.readLoop() // ends when the connection closes or the test ends
	t.Cleanup(func() {
		close(c.stop)
		ws.Close()
		<-c.done
	})
	return c, resp, nil
}

// join connects a native client to doc as user and waits for its welcome.
func join(t *testing.T, in *instance, doc, user string) *client {
	t.Helper()
	c, resp, err := dial(t, in, "/ws/"+url.PathEscape(doc)+"?user="+url.QueryEscape(user), nil)
	if err != nil {
		t.Fatalf("dial %s: %v (response %v)", doc, err, resp)
	}
	w := c.expect("welcome")
	var p struct{ ID, User, Doc string }
	if err := json.Unmarshal(w.Payload, &p); err != nil {
		t.Fatal(err)
	}
	if p.Doc != doc || p.User != user || p.ID == "" {
		t.Fatalf("welcome %s, want doc %q user %q", w.Payload, doc, user)
	}
	c.id = p.ID
	return c
}

func (c *client) readLoop() {
	defer close(c.done)
	defer close(c.frames)
	for {
		c.mu.Lock()
		resume := c.resume
		c.mu.Unlock()
		if resume != nil {
			select {
			case <-resume:
			case <-c.stop:
				return
			}
		}
		mt, data, err := c.ws.ReadMessage()
		if err != nil {
			if ce, ok := err.(*websocket.CloseError); ok {
				c.mu.Lock()
				c.closed = ce
				c.mu.Unlock()
			}
			return
		}
		if mt != websocket.TextMessage {
			continue
		}
		var f frame
		if err := json.Unmarshal(data, &f); err != nil {
			f = frame{Type: "!undecodable", Payload: json.RawMessage(fmt.Sprintf("%q", data))}
		}
		select {
		case c.frames <- f:
		default:
			c.t.Errorf("test client buffer full, dropping %s", data)
		}
	}
}

func (c *client) send(typ, ref string, payload any) {
	c.t.Helper()
	m := map[string]any{"type": typ}
	if ref != "" {
		m["ref"] = ref
	}
	if payload != nil {
		m["payload"] = payload
	}
	data, err := json.Marshal(m)
	if err != nil {
		c.t.Fatal(err)
	}
	c.sendRaw(data)
}

func (c *client) sendRaw(data []byte) {
	c.t.Helper()
	if err := c.ws.WriteMessage(websocket.TextMessage, data); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// sendUntilClosed sends data n times, or until a write fails: the server closes as soon as
// a limit is passed, so the writes after that may find the connection closed.
func (c *client) sendUntilClosed(data []byte, n int) {
	for range n {
		if c.ws.WriteMessage(websocket.TextMessage, data) != nil {
			return
		}
	}
}

// quiet asserts that no frame of type typ arrives within d.
func (c *client) quiet(typ string, d time.Duration) {
	c.t.Helper()
	deadline := time.After(d)
	for {
		select {
		case f, ok := <-c.frames:
			if !ok {
				return
			}
			if f.Type == typ {
				c.t.Fatalf("unexpected %s frame: %s", typ, f.Payload)
			}
		case <-deadline:
			return
		}
	}
}

// waitClose waits for the server to close the connection and returns its close frame.
func (c *client) waitClose(timeout time.Duration) *websocket.CloseError {
	c.t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case _, ok := <-c.frames:
			if !ok {
				return c.closeErr()
			}
		case <-deadline:
			c.t.Fatalf("connection not closed within %s", timeout)
		}
	}
}

func (c *client) closeErr() *websocket.CloseError {
	<-c.done
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

// members decodes a presence.state payload.
type member struct {
	User  string          `json:"user"`
	State json.RawMessage `json:"state"`
}

func decodeMembers(t *testing.T, raw json.RawMessage) map[string]member {
	t.Helper()
	var m map[string]member
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("presence payload %s: %v", raw, err)
	}
	return m
}

type diff struct {
	Joins  map[string]member `json:"joins"`
	Leaves map[string]member `json:"leaves"`
}

func decodeDiff(t *testing.T, raw json.RawMessage) diff {
	t.Helper()
	var d diff
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatalf("presence.diff payload %s: %v", raw, err)
	}
	return d
}

type cursorEntry struct {
	ID   string          `json:"id"`
	Data json.RawMessage `json:"data"`
}

func decodeCursors(t *testing.T, raw json.RawMessage) []cursorEntry {
	t.Helper()
	var c []cursorEntry
	if err := json.Unmarshal(raw, &c); err != nil {
		t.Fatalf("cursors payload %s: %v", raw, err)
	}
	return c
}

// leftDoc reports, without blocking, whether c has been told that member id left.
func leftDoc(c *client, id string) bool {
	for {
		select {
		case f, ok := <-c.frames:
			if !ok {
				c.t.Fatalf("watcher closed: %v", c.closeErr())
			}
			if f.Type == "presence.diff" {
				if _, ok := decodeDiff(c.t, f.Payload).Leaves[id]; ok {
					return true
				}
			}
		default:
			return false
		}
	}
}

func webQueue(n int) web.Config { return web.Config{QueueBytes: n} }
