package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fasthttp/websocket"
)

// This file holds the helpers of run_test.go and process_test.go: a goroutine-safe log
// buffer, a native-protocol WebSocket client (nclient), and real processes (procX) for
// nats-server and collabd instances. Every wait polls with a deadline.

// procLogBuf is an io.Writer that many goroutines (a logger, an exec pipe copier) may write
// to while a test reads it.
type procLogBuf struct {
	mu  sync.Mutex
	buf bytes.Buffer // guarded by mu
}

func (b *procLogBuf) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *procLogBuf) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// procListenRE finds the address in the "collabd listening addr=..." log line (text or
// JSON format).
var procListenRE = regexp.MustCompile(`collabd listening"?[ ,]"?addr"?[=:]"?([^\s",]+)`)

// listenAddr returns the address of the log line, or "" while there is none.
func (b *procLogBuf) listenAddr() string {
	if m := procListenRE.FindStringSubmatch(b.String()); m != nil {
		return m[1]
	}
	return ""
}

// procPoll polls cond every few milliseconds until it holds, failing the test after timeout.
func procPoll(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, timeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// procHTTP is the client of every plain HTTP request of these tests.
var procHTTP = &http.Client{Timeout: 2 * time.Second}

// procGet fetches url and returns its status and body; err when no answer came.
func procGet(url string) (int, string, error) {
	resp, err := procHTTP.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), err
}

// procStatus is the status of GET url, 0 when no answer came.
func procStatus(url string) int {
	code, _, _ := procGet(url)
	return code
}

// ---- native WebSocket client ----

// nframe is one native server frame as the test client received it.
type nframe struct {
	Type    string          `json:"type"`
	Ref     string          `json:"ref,omitempty"`
	Payload json.RawMessage `json:"payload,omitempty"`
}

// nentry is a member in presence payloads.
type nentry struct {
	User  string          `json:"user"`
	State json.RawMessage `json:"state"`
}

// nclient is a native-protocol client (DESIGN.md section 3). Its reader goroutine keeps a
// presence view built from presence.state and presence.diff, the latest cursor of each
// sender, when each member's leave arrived, and why the connection ended, so that tests
// poll conditions instead of matching frame sequences.
type nclient struct {
	t    *testing.T
	name string
	ws   *websocket.Conn
	wmu  sync.Mutex    // serialises writes
	done chan struct{} // closed when the reader stopped

	mu         sync.Mutex
	id         string                     // guarded by mu: session id, from welcome
	frames     []nframe                   // guarded by mu: every frame, in order
	firstState map[string]nentry          // guarded by mu: the first presence.state
	members    map[string]nentry          // guarded by mu: the presence view
	leftAt     map[string]time.Time       // guarded by mu: when each member's leave arrived
	cursors    map[string]json.RawMessage // guarded by mu: latest cursor of each sender
	readErr    error                      // guarded by mu: why the reader stopped
	closedAt   time.Time                  // guarded by mu: when it stopped
}

// ndial connects a native client as user to doc on the instance at base (http://host:port)
// and waits for its welcome. The connection closes when the test ends.
func ndial(t *testing.T, base, doc, user string) *nclient {
	t.Helper()
	u := "ws" + strings.TrimPrefix(base, "http") + "/ws/" + url.PathEscape(doc) + "?user=" + url.QueryEscape(user)
	d := websocket.Dialer{HandshakeTimeout: 5 * time.Second}
	ws, resp, err := d.Dial(u, nil)
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.Fatalf("dial %s: %v (HTTP status %d)", u, err, status)
	}
	c := &nclient{
		t: t, name: user, ws: ws, done: make(chan struct{}),
		members: map[string]nentry{}, leftAt: map[string]time.Time{}, cursors: map[string]json.RawMessage{},
	}
	go c.readLoop() // ends when the connection closes; Cleanup closes it
	t.Cleanup(func() {
		ws.Close()
		<-c.done
	})
	procPoll(t, 5*time.Second, user+": welcome", func() bool { return c.ID() != "" || c.closed() })
	if c.ID() == "" {
		t.Fatalf("%s: connection ended before welcome: %v", user, c.err())
	}
	return c
}

func (c *nclient) readLoop() {
	defer close(c.done)
	for {
		_, data, err := c.ws.ReadMessage()
		now := time.Now()
		c.mu.Lock()
		if err != nil {
			c.readErr, c.closedAt = err, now
			c.mu.Unlock()
			return
		}
		var f nframe
		if jerr := json.Unmarshal(data, &f); jerr != nil {
			f = nframe{Type: "!undecodable", Payload: json.RawMessage(strconv.Quote(string(data)))}
		}
		c.frames = append(c.frames, f)
		c.applyLocked(f, now)
		c.mu.Unlock()
	}
}

// applyLocked updates the client's view with frame f, received at now.
func (c *nclient) applyLocked(f nframe, now time.Time) {
	switch f.Type {
	case "welcome":
		var w struct{ ID string }
		if json.Unmarshal(f.Payload, &w) == nil {
			c.id = w.ID
		}
	case "presence.state":
		var m map[string]nentry
		if json.Unmarshal(f.Payload, &m) == nil {
			c.members = m
			if c.firstState == nil {
				c.firstState = m
			}
		}
	case "presence.diff":
		var d struct{ Joins, Leaves map[string]nentry }
		if json.Unmarshal(f.Payload, &d) == nil {
			for id := range d.Leaves {
				delete(c.members, id)
				c.leftAt[id] = now
			}
			for id, e := range d.Joins {
				c.members[id] = e
			}
		}
	case "cursors":
		var cs []struct {
			ID   string          `json:"id"`
			Data json.RawMessage `json:"data"`
		}
		if json.Unmarshal(f.Payload, &cs) == nil {
			for _, e := range cs {
				c.cursors[e.ID] = e.Data
			}
		}
	}
}

// ID is the session id from welcome, "" before it.
func (c *nclient) ID() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.id
}

// sees reports whether member id is in the client's presence view.
func (c *nclient) sees(id string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.members[id]
	return ok
}

// leftTime returns when the client was told that member id left.
func (c *nclient) leftTime(id string) (time.Time, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	at, ok := c.leftAt[id]
	return at, ok
}

// cursorX returns the x of the latest cursor of sender id, or -1.
func (c *nclient) cursorX(id string) int {
	c.mu.Lock()
	raw := c.cursors[id]
	c.mu.Unlock()
	var p struct{ X *int }
	if json.Unmarshal(raw, &p) != nil || p.X == nil {
		return -1
	}
	return *p.X
}

// first returns the first presence.state, nil before it.
func (c *nclient) first() map[string]nentry {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.firstState
}

// types lists the types of the frames received so far.
func (c *nclient) types() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]string, len(c.frames))
	for i, f := range c.frames {
		out[i] = f.Type
	}
	return out
}

// closed reports whether the connection ended.
func (c *nclient) closed() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// err is why the connection ended (nil while it is open).
func (c *nclient) err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.readErr
}

// closeCode returns the code of the server's close frame and when the connection ended;
// code is -1 when it ended without one.
func (c *nclient) closeCode() (int, time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if ce, ok := c.readErr.(*websocket.CloseError); ok {
		return ce.Code, c.closedAt
	}
	return -1, c.closedAt
}

// send writes one native frame.
func (c *nclient) send(typ string, payload any) {
	c.t.Helper()
	c.sendRef(typ, "", payload)
}

// sendRef writes one native frame with a ref ("": none).
func (c *nclient) sendRef(typ, ref string, payload any) {
	c.t.Helper()
	msg := map[string]any{"type": typ, "payload": payload}
	if ref != "" {
		msg["ref"] = ref
	}
	data, err := json.Marshal(msg)
	if err != nil {
		c.t.Fatal(err)
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if err := c.ws.WriteMessage(websocket.TextMessage, data); err != nil {
		c.t.Fatalf("%s: write: %v", c.name, err)
	}
}

// mustBeOpen fails the test when the connection ended.
func (c *nclient) mustBeOpen() {
	c.t.Helper()
	if c.closed() {
		c.t.Fatalf("%s: connection ended: %v", c.name, c.err())
	}
}

// ---- processes ----

// procBins are the binaries the process tests run.
type procBins struct {
	collabd, natsServer string
}

// procBuild builds collabd and nats-server (from the module cache, offline) into a
// directory that lives as long as t.
func procBuild(t *testing.T) procBins {
	t.Helper()
	goCmd, err := exec.LookPath("go")
	if err != nil {
		goCmd = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	dir := t.TempDir()
	bins := procBins{collabd: filepath.Join(dir, "collabd"), natsServer: filepath.Join(dir, "nats-server")}
	builds := [][]string{
		{"build", "-o", bins.collabd, "."},
		{"build", "-o", bins.natsServer, "github.com/nats-io/nats-server/v2"},
	}
	errs := make([]error, len(builds))
	var wg sync.WaitGroup
	for i, args := range builds {
		wg.Go(func() {
			out, err := exec.Command(goCmd, args...).CombinedOutput()
			if err != nil {
				errs[i] = fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, out)
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	return bins
}

// procEnv is the environment of the processes: this one's, without collabd's settings, so
// that only the flags a test passes count.
func procEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, "COLLABD_") || name == "NATS_URL" || name == "PORT" {
			continue
		}
		env = append(env, kv)
	}
	return env
}

// procX is a running process that the test owns: it is killed (by its pid) and waited for
// when the test ends, and its output is logged when the test failed.
type procX struct {
	name string
	cmd  *exec.Cmd
	out  *procLogBuf
	done chan struct{} // closed once the process exited and its output was copied
	err  error         // cmd.Wait's result; set before done closes
}

func startProcX(t *testing.T, name, bin string, args ...string) *procX {
	t.Helper()
	p := &procX{name: name, cmd: exec.Command(bin, args...), out: &procLogBuf{}, done: make(chan struct{})}
	p.cmd.Env = procEnv()
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() { // ends when the process exits; Cleanup makes sure it does
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill() // fails only when it already exited
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			t.Errorf("%s (pid %d) did not exit after SIGKILL", name, p.cmd.Process.Pid)
		}
		if t.Failed() {
			t.Logf("output of %s (pid %d):\n%s", name, p.cmd.Process.Pid, p.out)
		}
	})
	return p
}

// signal sends sig to the process.
func (p *procX) signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("signal %s to %s: %v", sig, p.name, err)
	}
}

// exited reports whether the process has exited.
func (p *procX) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// waitExit waits up to timeout for the process to exit and returns cmd.Wait's result.
func (p *procX) waitExit(t *testing.T, timeout time.Duration) error {
	t.Helper()
	select {
	case <-p.done:
		return p.err
	case <-time.After(timeout):
		t.Fatalf("%s did not exit within %s", p.name, timeout)
		return nil
	}
}

// handedOut is every port procFreePort returned in this test binary.
var handedOut = struct {
	sync.Mutex
	ports map[int]bool
}{ports: map[int]bool{}}

// procFreePort returns a loopback TCP port that was free a moment ago and that it never
// returned before: the kernel may give a closed listener's port out again at once, and two
// processes of a test (a cluster's nodes, their monitoring ports) must not get the same.
func procFreePort(t *testing.T) int {
	t.Helper()
	handedOut.Lock()
	defer handedOut.Unlock()
	for range 100 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		if !handedOut.ports[port] {
			handedOut.ports[port] = true
			return port
		}
	}
	t.Fatal("no loopback port that was not handed out already in 100 tries")
	return 0
}

// natsProc is a nats-server process on a fixed loopback port, which a test can kill and
// start again on the same port.
type natsProc struct {
	bin  string
	port int
	p    *procX // the current process
}

func startNatsProc(t *testing.T, bin string) *natsProc {
	t.Helper()
	n := &natsProc{bin: bin, port: procFreePort(t)}
	n.start(t)
	return n
}

func (n *natsProc) url() string { return "nats://127.0.0.1:" + strconv.Itoa(n.port) }

// start runs nats-server (again) on its port and waits until it accepts connections.
func (n *natsProc) start(t *testing.T) {
	t.Helper()
	n.p = startProcX(t, "nats-server", n.bin, "-a", "127.0.0.1", "-p", strconv.Itoa(n.port))
	waitAccepting(t, n.p, "nats-server", n.port)
}

// waitAccepting waits until the process p (called name) accepts TCP connections on port of
// the loopback, failing the test when it exits first.
func waitAccepting(t *testing.T, p *procX, name string, port int) {
	t.Helper()
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	procPoll(t, 10*time.Second, name+" accepting on "+addr, func() bool {
		if p.exited() {
			t.Fatalf("%s exited: %v\n%s", name, p.err, p.out)
		}
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return false
		}
		c.Close()
		return true
	})
}

// kill9 kills nats-server and waits until it is gone, so its port is free again.
func (n *natsProc) kill9(t *testing.T) {
	t.Helper()
	n.p.signal(t, syscall.SIGKILL)
	n.p.waitExit(t, 5*time.Second)
}

// collabdProc is a collabd instance running as a process on an external NATS.
type collabdProc struct {
	*procX
	base string // http://127.0.0.1:port
}

// Flags of every collabd process; tests append their own, which win (the last value of a
// flag counts).
var procCollabdFlags = []string{"-addr", "127.0.0.1:0", "-heartbeat", "100ms", "-down-after", "500ms"}

// startCollabdProc starts an instance on natsURL, reads its address from the
// "collabd listening" log line (it listens on port 0, so no port can be taken from under
// it), and waits until /readyz answers 200.
func startCollabdProc(t *testing.T, bin, name, natsURL string, extra ...string) *collabdProc {
	t.Helper()
	p := launchCollabdProc(t, bin, name, natsURL, extra...)
	procPoll(t, 10*time.Second, name+": /readyz 200", func() bool { return procStatus(p.base+"/readyz") == http.StatusOK })
	return p
}

// launchCollabdProc starts an instance and waits only for its "collabd listening" line.
func launchCollabdProc(t *testing.T, bin, name, natsURL string, extra ...string) *collabdProc {
	t.Helper()
	args := append(append([]string{"-nats", natsURL}, procCollabdFlags...), extra...)
	p := &collabdProc{procX: startProcX(t, name, bin, args...)}
	procPoll(t, 10*time.Second, name+": listening log line", func() bool {
		if p.exited() {
			t.Fatalf("%s exited before listening: %v", name, p.err)
		}
		return p.out.listenAddr() != ""
	})
	p.base = "http://" + p.out.listenAddr()
	return p
}
