package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/golang-jwt/jwt/v5"

	"collabd/nats/natstest"
)

// The browser tests drive the demo page and collab.js (frontend/) in headless Chromium against
// real collabd instances started through run: the demo over WebSocket (TestBrowserDemo), the
// fallback transports across two instances (TestBrowserTransports) and token refresh
// (TestBrowserTokenRefresh). Screenshots go to the temp directory (the test log names them).
// They need a Chromium binary: COLLABD_CHROMIUM, else /usr/bin/chromium. Without one they skip,
// except when CI=true, where they fail so that CI never skips silently.

const (
	browserDoc          = "browser-test"
	browserPollTimeout  = 10 * time.Second
	browserPollInterval = 25 * time.Millisecond
	// browserHTMLName must reach the other tab as text: an <img> made from it would run alert(1).
	browserHTMLName = `<img src=x onerror=alert(1)>`
)

var browserListenRE = regexp.MustCompile(`collabd listening"? addr=(\S+)`)

// browserLog is a goroutine-safe stderr for run that reports the listen address once.
type browserLog struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	addr chan string // buffered, receives one value
	sent bool
}

func (w *browserLog) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	if !w.sent {
		if m := browserListenRE.FindSubmatch(w.buf.Bytes()); m != nil {
			w.sent = true
			w.addr <- string(m[1])
		}
	}
	return len(p), nil
}

func (w *browserLog) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// browserExecPath finds Chromium, or skips (fails when CI=true).
func browserExecPath(t *testing.T) string {
	t.Helper()
	p := os.Getenv("COLLABD_CHROMIUM")
	if p == "" {
		p = "/usr/bin/chromium"
	}
	found, err := exec.LookPath(p)
	if err != nil {
		msg := fmt.Sprintf("no Chromium for the browser test at %q (%v); install it (apt-get install chromium) or set COLLABD_CHROMIUM", p, err)
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return found
}

// browserServer is one collabd instance run through run in a goroutine; it can be stopped
// and started again on the same address (a server that goes away and comes back).
type browserServer struct {
	t      *testing.T
	args   []string // without -addr
	addr   string   // host:port once listening
	cancel context.CancelFunc
	done   chan error // receives run's result; nil while stopped
	logw   *browserLog
}

// browserStartServer runs collabd with args (and -addr 127.0.0.1:0); cleanup stops it.
func browserStartServer(t *testing.T, args ...string) *browserServer {
	t.Helper()
	s := &browserServer{t: t, args: args, addr: "127.0.0.1:0"}
	s.start()
	t.Cleanup(s.stop)
	return s
}

// URL is the server's base URL.
func (s *browserServer) URL() string { return "http://" + s.addr }

// start runs the server (again, on its address).
func (s *browserServer) start() {
	t := s.t
	t.Helper()
	logw := &browserLog{addr: make(chan string, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	args := append([]string{"-addr", s.addr}, s.args...)
	go func() { done <- run(ctx, args, func(string) string { return "" }, logw) }()
	s.cancel, s.done, s.logw = cancel, done, logw
	select {
	case addr := <-logw.addr:
		s.addr = addr
	case err := <-done:
		s.done = nil
		t.Fatalf("run returned before listening: %v\nlog:\n%s", err, logw.String())
	case <-time.After(15 * time.Second):
		t.Fatalf("no %q line within 15s; log:\n%s", "collabd listening", logw.String())
	}
}

// stop cancels run and waits for it to return (a graceful shutdown: clients get 1012).
func (s *browserServer) stop() {
	t := s.t
	if s.done == nil {
		return
	}
	s.cancel()
	select {
	case err := <-s.done:
		if err != nil {
			t.Errorf("run returned %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Errorf("run did not return within 15s of cancel")
	}
	s.done = nil
	if t.Failed() {
		t.Logf("collabd %s log:\n%s", s.addr, s.logw.String())
	}
}

// browserStart starts headless Chromium; the returned context opens tabs in it.
func browserStart(t *testing.T, execPath string, timeout time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	t.Cleanup(cancel)
	allocCtx, allocCancel := chromedp.NewExecAllocator(ctx,
		chromedp.ExecPath(execPath),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("hide-scrollbars", true),
		chromedp.UserDataDir(t.TempDir()),
	)
	t.Cleanup(allocCancel)
	root, rootCancel := chromedp.NewContext(allocCtx)
	t.Cleanup(func() {
		// Close the browser gracefully before the allocator's temp dir goes away.
		cctx, ccancel := context.WithTimeout(root, 10*time.Second)
		defer ccancel()
		if err := chromedp.Cancel(cctx); err != nil {
			t.Logf("close Chromium: %v", err)
		}
		rootCancel()
	})
	if err := chromedp.Do(root); err != nil {
		t.Fatalf("start Chromium %s: %v", execPath, err)
	}
	return root
}

// browserTab is one page of the demo with the JavaScript problems it reported.
type browserTab struct {
	name    string
	ctx     context.Context
	cancel  context.CancelFunc
	mu      sync.Mutex
	errs    []string // uncaught exceptions and console.error calls
	dialogs atomic.Int32
}

func (b *browserTab) problems() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.errs...)
}

// browserDebugJS summarises what a tab shows, for failure messages.
const browserDebugJS = `JSON.stringify({
  status: document.querySelector('[data-testid=status]')?.textContent,
  transport: window.collab?.transport,
  retry: document.querySelector('[data-testid=retry]')?.hidden === false,
  runs: window.__runs && Object.fromEntries(Object.entries(window.__runs).map(([k, r]) =>
    [k, { calls: r.calls, log: r.log.length > 8 ? [...r.log.slice(0, 4), '…', ...r.log.slice(-3)] : r.log }])),
  visibility: document.visibilityState,
  count: document.querySelector('[data-testid=member-count]')?.textContent,
  members: [...document.querySelectorAll('[data-testid=member-name]')].map((e) => e.textContent),
  cursors: [...document.querySelectorAll('[data-testid=cursor]')].map((c) => ({label: c.textContent, cls: c.className, transform: c.style.transform})),
  pings: [...document.querySelectorAll('[data-testid=ping]')].map((p) => ({label: p.textContent, left: p.style.left, top: p.style.top})),
  imgs: document.querySelectorAll('img').length,
  board: [document.querySelector('[data-testid=board]')?.clientWidth, document.querySelector('[data-testid=board]')?.clientHeight],
})`

func (b *browserTab) debug() string {
	ctx, cancel := context.WithTimeout(b.ctx, 2*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string](browserDebugJS))
	if err != nil {
		return "(page state unavailable: " + err.Error() + ")"
	}
	return s
}

// wait polls fn (a JavaScript function of args) in the tab until it returns a truthy value.
func (b *browserTab) wait(t *testing.T, what, fn string, args ...any) {
	t.Helper()
	opts := []chromedp.PollOption{chromedp.WithPollingInterval(browserPollInterval), chromedp.WithPollingTimeout(browserPollTimeout)}
	if len(args) > 0 {
		opts = append(opts, chromedp.WithPollingArgs(args...))
	}
	if _, err := chromedp.Run(b.ctx, chromedp.PollFunction[chromedp.Void](fn, opts...)); err != nil {
		t.Fatalf("tab %s: %s: %v\npage: %s", b.name, what, err, b.debug())
	}
}

// do runs actions in the tab.
func (b *browserTab) do(t *testing.T, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := chromedp.Do(b.ctx, actions...); err != nil {
		t.Fatalf("tab %s: %s: %v\npage: %s", b.name, what, err, b.debug())
	}
}

func browserEval[T any](t *testing.T, b *browserTab, expr string, opts ...chromedp.EvaluateOption) T {
	t.Helper()
	v, err := chromedp.Run(b.ctx, chromedp.Evaluate[T](expr, opts...))
	if err != nil {
		t.Fatalf("tab %s: evaluate %s: %v", b.name, expr, err)
	}
	return v
}

// browserOpenTab opens the demo in a new tab (its own window, so both tabs stay visible) with a
// viewport of w x h, waits for it to connect, and types name into the name field. initJS, if
// any, runs in the page before its own scripts, on every load.
func browserOpenTab(t *testing.T, root context.Context, label, url string, w, h int64, name string, initJS ...string) *browserTab {
	t.Helper()
	ctx, cancel := chromedp.NewContext(root)
	b := &browserTab{name: label, ctx: ctx, cancel: cancel}
	t.Cleanup(cancel)
	if err := chromedp.Listen(ctx, func(ev any) {
		switch ev := ev.(type) {
		case *runtime.EventExceptionThrown:
			b.mu.Lock()
			b.errs = append(b.errs, "exception: "+ev.ExceptionDetails.Text+browserExceptionDesc(ev.ExceptionDetails))
			b.mu.Unlock()
		case *runtime.EventConsoleAPICalled:
			if ev.Type == runtime.ConsoleAPICalledTypeError {
				var parts []string
				for _, a := range ev.Args {
					parts = append(parts, string(a.Value)+a.Description)
				}
				b.mu.Lock()
				b.errs = append(b.errs, fmt.Sprintf("console.error: %v", parts))
				b.mu.Unlock()
			}
		case *page.EventJavascriptDialogOpening:
			b.dialogs.Add(1)
			// Close it from another goroutine: a listener must not run commands.
			go chromedp.Call(ctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: false}) //nolint:errcheck
		}
	}); err != nil {
		t.Fatalf("tab %s: listen: %v", label, err)
	}
	b.do(t, "open the demo",
		chromedp.EmulateViewport(w, h),
		chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
			// Each tab behaves as if focused, as two windows side by side would: the page
			// hides its cursor on blur.
			_, err := chromedp.Call(ctx, emulation.SetFocusEmulationEnabled, emulation.SetFocusEmulationEnabledParams{Enabled: true})
			if err != nil {
				return err
			}
			for _, js := range initJS {
				if _, err := chromedp.Call(ctx, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: js}); err != nil {
					return err
				}
			}
			return nil
		}),
		chromedp.Navigate(url),
	)
	b.wait(t, "page connects", `() => document.querySelector('[data-testid=status]').dataset.state === 'online' && document.visibilityState === 'visible'`)
	b.setName(t, name)
	return b
}

func browserExceptionDesc(d *runtime.ExceptionDetails) string {
	if d != nil && d.Exception != nil {
		return " " + d.Exception.Description
	}
	return ""
}

// setName types name into the name field, as a user would.
func (b *browserTab) setName(t *testing.T, name string) {
	t.Helper()
	b.do(t, "type name "+name,
		chromedp.Evaluate[chromedp.Void](`document.querySelector('[data-testid=name-input]').value = ''`),
		chromedp.SendKeys(chromedp.CSS(`[data-testid=name-input]`), name),
	)
	b.wait(t, "own name in own presence list", `(name) => [...document.querySelectorAll('[data-testid=member]')].some((li) =>
		li.querySelector('.you') && li.querySelector('[data-testid=member-name]').textContent === name)`, name)
}

// browserMembersJS is true when the presence list shows exactly names (in any order), each
// visible as text.
const browserMembersJS = `(...names) => {
  const els = [...document.querySelectorAll('[data-testid=member-name]')];
  if (els.length !== names.length || document.querySelector('[data-testid=member-count]').textContent !== String(names.length)) return false;
  return names.every((n) => els.some((e) => e.textContent === n && e.children.length === 0 && e.getClientRects().length > 0 && getComputedStyle(e).visibility === 'visible'));
}`

// browserCursorAtJS is true when the cursor labelled name is shown at (x, y), relative to the
// board, within tol.
const browserCursorAtJS = `(name, x, y, tol) => {
  const board = document.querySelector('[data-testid=board]').getBoundingClientRect();
  const cur = [...document.querySelectorAll('[data-testid=cursor]')].find((c) =>
    c.querySelector('[data-testid=cursor-label]').textContent === name);
  if (!cur || cur.classList.contains('hidden') || getComputedStyle(cur).opacity !== '1') return false;
  const label = cur.querySelector('[data-testid=cursor-label]');
  if (label.children.length !== 0 || label.getClientRects().length === 0) return false;
  const r = cur.getBoundingClientRect();
  return Math.abs((r.left - board.left) / board.width - x) <= tol && Math.abs((r.top - board.top) / board.height - y) <= tol;
}`

// browserPingAtJS is true when a ping labelled name is drawn at (x, y), relative to the board.
const browserPingAtJS = `(name, x, y, tol) => {
  const board = document.querySelector('[data-testid=board]').getBoundingClientRect();
  return [...document.querySelectorAll('[data-testid=ping]')].some((p) => {
    if (p.querySelector('[data-testid=ping-label]').textContent !== name) return false;
    const r = p.getBoundingClientRect();
    return Math.abs((r.left - board.left) / board.width - x) <= tol && Math.abs((r.top - board.top) / board.height - y) <= tol;
  });
}`

func TestBrowserDemo(t *testing.T) {
	execPath := browserExecPath(t)
	srv := browserStartServer(t, "-nats-listen", "off")
	url := srv.URL() + "/?doc=" + browserDoc
	root := browserStart(t, execPath, 60*time.Second)

	// Different viewports: positions travel normalised to the board, not in pixels.
	const nameA, nameB = "Alice Browser", "Bob Browser"
	a := browserOpenTab(t, root, "A", url+"&user=alice", 1200, 800, nameA)
	b := browserOpenTab(t, root, "B", url+"&user=bob", 1000, 700, nameB)

	// Presence: both tabs list both members.
	a.wait(t, "presence shows both members", browserMembersJS, nameA, nameB)
	b.wait(t, "presence shows both members", browserMembersJS, nameA, nameB)

	// Cursor: A's pointer shows in B, labelled with A's name, at the same relative place.
	boardA := browserEval[[]float64](t, a, `(() => { const r = document.querySelector('[data-testid=board]').getBoundingClientRect(); return [r.left, r.top, r.width, r.height]; })()`)
	rel := func(px, py float64) (float64, float64) {
		return (px - boardA[0]) / boardA[2], (py - boardA[1]) / boardA[3]
	}
	const tol = 0.01
	for i, p := range [][2]float64{{360, 240}, {780, 600}} {
		a.do(t, "move the mouse", chromedp.MouseEvent(chromedp.MouseMoved, p[0], p[1]))
		x, y := rel(p[0], p[1])
		b.wait(t, fmt.Sprintf("A's cursor at (%.3f, %.3f)", x, y), browserCursorAtJS, nameA, x, y, tol)
		if i == 0 {
			browserShot(t, b, "collabd-demo.png")
		}
	}
	// B never moved its pointer, so A shows no cursor for B.
	if n := browserEval[int](t, a, `document.querySelectorAll('[data-testid=cursor]:not(.hidden)').length`); n != 0 {
		t.Errorf("tab A shows %d cursors, want 0 (B never moved): %s", n, a.debug())
	}

	// Ping: a click in A draws the ring in B (broadcast) at the clicked place, and it goes away.
	a.do(t, "click", chromedp.MouseClickXY(600, 400))
	x, y := rel(600, 400)
	b.wait(t, "A's ping ring", browserPingAtJS, nameA, x, y, tol)
	b.wait(t, "ping ring removed", `() => !document.querySelector('[data-testid=ping]')`)

	// A name that is HTML stays text everywhere: in the list, on the cursor, on pings.
	a.setName(t, browserHTMLName)
	b.wait(t, "HTML name as text in presence list", browserMembersJS, browserHTMLName, nameB)
	a.do(t, "move the mouse", chromedp.MouseEvent(chromedp.MouseMoved, 500, 300))
	x, y = rel(500, 300)
	b.wait(t, "HTML-named cursor", browserCursorAtJS, browserHTMLName, x, y, tol)
	a.do(t, "click", chromedp.MouseClickXY(500, 300))
	b.wait(t, "HTML-named ping", browserPingAtJS, browserHTMLName, x, y, tol)
	for _, tab := range []*browserTab{a, b} {
		if n := browserEval[int](t, tab, `document.querySelectorAll('img, [onerror]').length`); n != 0 {
			t.Errorf("tab %s: the HTML name created %d elements: %s", tab.name, n, tab.debug())
		}
		if n := tab.dialogs.Load(); n != 0 {
			t.Errorf("tab %s: %d JavaScript dialogs opened (the name's onerror ran)", tab.name, n)
		}
	}

	// Closing A removes it from B's list, and its cursor from B's board.
	if err := chromedp.Cancel(a.ctx); err != nil {
		t.Fatalf("close tab A: %v", err)
	}
	b.wait(t, "A gone from presence", browserMembersJS, nameB)
	b.wait(t, "A's cursor removed", `() => document.querySelectorAll('[data-testid=cursor]').length === 0`)

	for _, tab := range []*browserTab{a, b} {
		for _, p := range tab.problems() {
			t.Errorf("tab %s: %s", tab.name, p)
		}
	}
}

// browserBlockWebSocketJS makes WebSocket fail in the page the way a proxy that refuses it
// does (error, then close 1006, before open). window.__wsAttempts counts this load's attempts.
const browserBlockWebSocketJS = `(() => {
  window.__wsAttempts = 0;
  window.WebSocket = class {
    constructor(url) {
      window.__wsAttempts++;
      this.url = url;
      this.readyState = 0;
      this.bufferedAmount = 0;
      setTimeout(() => {
        this.readyState = 3;
        if (this.onerror) this.onerror(new Event('error'));
        if (this.onclose) this.onclose(new CloseEvent('close', { code: 1006, reason: '', wasClean: false }));
      }, 20);
    }
    send() { throw new DOMException('blocked', 'InvalidStateError'); }
    close() {}
  };
})()`

// browserTransportJS is true when the page is connected over the transport name and shows it.
const browserTransportJS = `(name) => {
  const el = document.querySelector('[data-testid=transport]');
  return window.collab && window.collab.connected && window.collab.transport === name &&
    !el.hidden && el.dataset.transport === name && el.textContent.length > 0;
}`

// browserCursorOnTopJS is true when the cursor labelled name is over the panel and drawn above
// it: hit-testing (which follows the paint order) at its label's centre finds the label.
const browserCursorOnTopJS = `(name) => {
  const cur = [...document.querySelectorAll('[data-testid=cursor]')].find((c) =>
    c.querySelector('[data-testid=cursor-label]').textContent === name);
  if (!cur) return 'no cursor';
  const label = cur.querySelector('[data-testid=cursor-label]');
  const r = label.getBoundingClientRect();
  const p = document.querySelector('[data-testid=panel]').getBoundingClientRect();
  const x = r.left + r.width / 2, y = r.top + r.height / 2;
  if (!(x > p.left && x < p.right && y > p.top && y < p.bottom)) return 'cursor label not over the panel';
  cur.style.pointerEvents = 'auto';
  label.style.pointerEvents = 'auto';
  try {
    const hit = document.elementFromPoint(x, y);
    return label.contains(hit) ? 'on top' : 'hidden under ' + (hit && (hit.id || hit.className || hit.tagName));
  } finally {
    cur.style.pointerEvents = '';
    label.style.pointerEvents = '';
  }
}`

// browserCountdownJS returns the seconds of a "retrying in N s" status with the retry button
// shown, or -1.
const browserCountdownJS = `(() => {
  const st = document.querySelector('[data-testid=status]');
  const m = /retrying in (\d+) s/.exec(st.textContent);
  const retry = document.querySelector('[data-testid=retry]');
  return st.dataset.state === 'reconnecting' && m && !retry.hidden && retry.getClientRects().length > 0 ? Number(m[1]) : -1;
})()`

// browserRel returns a function from a tab's page coordinates to board-relative ones.
func browserRel(t *testing.T, b *browserTab) func(px, py float64) (float64, float64) {
	t.Helper()
	r := browserEval[[]float64](t, b, `(() => { const r = document.querySelector('[data-testid=board]').getBoundingClientRect(); return [r.left, r.top, r.width, r.height]; })()`)
	return func(px, py float64) (float64, float64) { return (px - r[0]) / r[2], (py - r[1]) / r[3] }
}

func browserShot(t *testing.T, b *browserTab, name string) {
	t.Helper()
	png, err := chromedp.Run(b.ctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatalf("tab %s: screenshot: %v", b.name, err)
	}
	path := filepath.Join(os.TempDir(), name)
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatalf("write screenshot: %v", err)
	}
	t.Logf("screenshot of tab %s: %s", b.name, path)
}

// TestBrowserTransports: a page on WebSocket (instance 1), a page whose WebSocket is blocked so
// that it falls back to SSE, and a page forced onto long polling (both on instance 2, one NATS)
// see each other's presence, cursors and broadcasts; the SSE page remembers its transport across
// a reload; when instance 2 goes away the pages count down to their next attempt and come back
// with it.
func TestBrowserTransports(t *testing.T) {
	execPath := browserExecPath(t)
	ns := natstest.NewServer(t)
	s1 := browserStartServer(t, "-nats", ns.URL())
	s2 := browserStartServer(t, "-nats", ns.URL())
	root := browserStart(t, execPath, 60*time.Second)

	const doc = "browser-transports"
	const nameW, nameS, nameP = "Wanda WebSocket", "Sam SSE", "Polly Poll"
	w := browserOpenTab(t, root, "W", s1.URL()+"/?doc="+doc+"&user=wanda", 1200, 800, nameW)
	s := browserOpenTab(t, root, "S", s2.URL()+"/?doc="+doc+"&user=sam", 1000, 700, nameS, browserBlockWebSocketJS)
	p := browserOpenTab(t, root, "P", s2.URL()+"/?doc="+doc+"&user=polly&transport=poll", 900, 650, nameP)
	tabs := []*browserTab{w, s, p}

	w.wait(t, "on WebSocket", browserTransportJS, "websocket")
	s.wait(t, "fell back to SSE", browserTransportJS, "sse")
	p.wait(t, "forced onto long polling", browserTransportJS, "poll")
	if n := browserEval[int](t, s, `window.__wsAttempts`); n < 1 {
		t.Errorf("tab S: %d WebSocket attempts before SSE, want at least 1", n)
	}

	// Presence, with three different palette colours.
	for _, tab := range tabs {
		tab.wait(t, "presence shows all three", browserMembersJS, nameW, nameS, nameP)
	}
	w.wait(t, "three different colours", `() => {
		const cs = [...document.querySelectorAll('[data-testid=member] .dot')].map((d) => d.style.getPropertyValue('--c'));
		return cs.length === 3 && new Set(cs).size === 3 && cs.every((c) => /^#[0-9a-f]{6}$/.test(c) && c !== '#94a3b8');
	}`)

	// Cursors both ways between WebSocket and each fallback.
	const tol = 0.01
	move := func(from *browserTab, name string, px, py float64, to ...*browserTab) {
		t.Helper()
		from.do(t, "move the mouse", chromedp.MouseEvent(chromedp.MouseMoved, px, py))
		x, y := browserRel(t, from)(px, py)
		for _, tab := range to {
			tab.wait(t, fmt.Sprintf("%s's cursor at (%.3f, %.3f)", name, x, y), browserCursorAtJS, name, x, y, tol)
		}
	}
	move(w, nameW, 360, 240, s, p)
	move(s, nameS, 200, 150, w, p)
	move(p, nameP, 300, 500, w, s)

	// Broadcasts both ways.
	click := func(from *browserTab, name string, px, py float64, to ...*browserTab) {
		t.Helper()
		from.do(t, "click", chromedp.MouseClickXY(px, py))
		x, y := browserRel(t, from)(px, py)
		for _, tab := range to {
			tab.wait(t, name+"'s ping", browserPingAtJS, name, x, y, tol)
		}
	}
	click(w, nameW, 600, 400, s, p)
	click(s, nameS, 300, 300, w)
	click(p, nameP, 450, 200, w)

	// Round trips (a ping and its pong) per transport: logged for docs/client.md, not asserted.
	for _, tab := range tabs {
		ms := browserEval[[]float64](t, tab, `(async () => {
			const ms = [];
			for (let i = 0; i < 21; i++) ms.push(await window.collab.ping());
			return ms.sort((a, b) => a - b);
		})()`, chromedp.EvalAwaitPromise)
		t.Logf("tab %s (%s): ping round trip median %.0f ms, max %.0f ms over %d", tab.name,
			browserEval[string](t, tab, `window.collab.transport`), ms[len(ms)/2], ms[len(ms)-1], len(ms))
	}

	// A cursor where W's panel is stays visible: drawn above the panel.
	ws := browserEval[[]float64](t, w, `(() => { const p = document.querySelector('[data-testid=panel]').getBoundingClientRect(); return [p.left, p.top, p.width, p.height, innerWidth, innerHeight]; })()`)
	rx, ry := (ws[0]+ws[2]*0.3)/ws[4], (ws[1]+ws[3]*0.4)/ws[5] // board-relative, inside W's panel
	ss := browserEval[[]float64](t, s, `[innerWidth, innerHeight]`)
	move(s, nameS, rx*ss[0], ry*ss[1], w)
	if got := browserEval[string](t, w, "("+browserCursorOnTopJS+")("+strconv.Quote(nameS)+")"); got != "on top" {
		t.Errorf("tab W: a cursor over the panel: %s", got)
	}
	browserShot(t, w, "collabd-demo-transports.png")

	// A reload goes straight to the remembered transport: no WebSocket attempt, and the old
	// session leaves (W lists three members again, not four).
	s.do(t, "reload", chromedp.Reload())
	s.wait(t, "back on SSE after the reload", browserTransportJS, "sse")
	if n := browserEval[int](t, s, `window.__wsAttempts`); n != 0 {
		t.Errorf("tab S: %d WebSocket attempts after the reload, want 0 (SSE remembered)", n)
	}
	w.wait(t, "S's old session gone, the new one present", browserMembersJS, nameW, nameS, nameP)

	// Instance 2 goes away: its pages count down (ticking) with a retry button; W sees them leave.
	s2.stop()
	w.wait(t, "S and P left", browserMembersJS, nameW)
	s.wait(t, "countdown of 2 s or more", `() => (`+browserCountdownJS+`) >= 2`)
	n := browserEval[int](t, s, browserCountdownJS)
	if got := browserEval[string](t, s, `(() => { const e = document.querySelector('[data-testid=transport]'); return e.dataset.transport + (e.classList.contains('stale') ? ' stale' : ''); })()`); got != "sse stale" {
		t.Errorf("tab S: transport badge while reconnecting = %q, want %q (the transport that joined last, dimmed)", got, "sse stale")
	}
	browserShot(t, s, "collabd-demo-reconnecting.png")
	s.wait(t, "countdown ticks", `(n) => { const m = (`+browserCountdownJS+`); return m >= 0 && m < n; }`, n)
	p.wait(t, "P counts down too", `() => (`+browserCountdownJS+`) >= 0`)

	// It comes back: "Retry now" reconnects at once; every page is back on its transport.
	s2.start()
	for _, tab := range []*browserTab{s, p} {
		tab.do(t, "click retry", chromedp.Evaluate[chromedp.Void](`document.querySelector('[data-testid=retry]').click()`))
	}
	s.wait(t, "S back on SSE", browserTransportJS, "sse")
	p.wait(t, "P back on long polling", browserTransportJS, "poll")
	for _, tab := range tabs {
		tab.wait(t, "presence shows all three again", browserMembersJS, nameW, nameS, nameP)
	}
	move(p, nameP, 320, 420, w)
	move(w, nameW, 500, 300, s, p)

	// 420 px wide: the panel is a bar at the bottom that covers a small part of the board.
	s.do(t, "narrow viewport", chromedp.EmulateViewport(420, 800))
	s.wait(t, "panel collapsed at the bottom", `() => {
		const p = document.querySelector('[data-testid=panel]').getBoundingClientRect();
		const b = document.querySelector('[data-testid=board]').getBoundingClientRect();
		return b.width === 420 && p.height < b.height * 0.2 && p.bottom <= b.bottom && p.top > b.height / 2;
	}`)
	move(w, nameW, 700, 200, s)
	browserShot(t, s, "collabd-demo-420.png")
	s.do(t, "open the panel", chromedp.Evaluate[chromedp.Void](`document.querySelector('[data-testid=panel-toggle]').click()`))
	s.wait(t, "panel open with the members", browserMembersJS, nameW, nameS, nameP)
	browserShot(t, s, "collabd-demo-420-open.png")

	for _, tab := range tabs {
		for _, pr := range tab.problems() {
			t.Errorf("tab %s: %s", tab.name, pr)
		}
	}
}

// TestBrowserTokenRefresh: with a token function, a 4001 (the token expired) fetches a fresh
// token and reconnects; a fresh token refused at once stops with the server's reason instead
// of spinning. Over each transport, in a real page against a real server with auth on.
func TestBrowserTokenRefresh(t *testing.T) {
	execPath := browserExecPath(t)
	const secret = "browser-test-secret"
	srv := browserStartServer(t, "-nats-listen", "off", "-jwt-secret", secret)
	root := browserStart(t, execPath, 60*time.Second)
	mint := func(sub string, exp time.Time, key string) string {
		s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": sub, "exp": exp.Unix()}).SignedString([]byte(key))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}

	ctx, cancel := chromedp.NewContext(root)
	t.Cleanup(cancel)
	tab := &browserTab{name: "T", ctx: ctx, cancel: cancel}
	// Any page of the server's origin can import collab.js; this one runs nothing by itself.
	tab.do(t, "open a page of the server", chromedp.Navigate(srv.URL()+"/style.css"))
	tab.do(t, "load collab.js", chromedp.Evaluate[chromedp.Void](`import('/collab.js').then((m) => {
		window.__runs = {};
		// start connects to doc over transports with a token function returning tokens in turn
		// (the last one again and again), and records what happens.
		window.__start = (doc, transports, tokens) => {
			const run = { log: [], calls: 0 };
			const c = m.connect({ doc, transports, backoffMin: 100, backoffMax: 200,
				token: () => tokens[Math.min(run.calls++, tokens.length - 1)] });
			c.on('welcome', () => run.log.push('welcome'));
			c.on('close', (code, reason, retry) => run.log.push(code + ' ' + reason + (retry == null ? ' (stop)' : ' (retry)')));
			window.__runs[doc] = run;
		};
	})`, chromedp.EvalAwaitPromise))

	for _, tr := range []string{"websocket", "sse", "poll"} {
		// Started together: each case waits for a token to expire (exp has 1 s granularity).
		soon := time.Now().Add(3 * time.Second)
		cases := map[string][]string{
			// expires mid-connection; the fresh token works
			"refresh": {mint("ann", soon, secret), mint("ann", time.Now().Add(time.Hour), secret)},
			// expires mid-connection; the fresh one expires a second later, right after its
			// welcome (or before it, when the first close reached the page late): stop
			"again": {mint("bob", soon, secret), mint("bob", soon.Add(time.Second), secret)},
		}
		// never valid: refused twice (the token function is called again once), then stop
		cases["refused"] = []string{mint("cat", time.Now().Add(time.Hour), "wrong-secret")}
		for name, tokens := range cases {
			js, _ := json.Marshal(tokens)
			tab.do(t, "start "+name, chromedp.Evaluate[chromedp.Void](fmt.Sprintf(`__start(%q, [%q], %s)`, tr+"-"+name, tr, js)))
		}
		state := func(doc string) string {
			return `JSON.stringify(window.__runs[` + strconv.Quote(doc) + `])`
		}
		tab.wait(t, tr+": refreshed and joined again", `(doc) => {
			const r = window.__runs[doc];
			return r.log.join('|') === 'welcome|4001 token expired (retry)|welcome' && r.calls === 2;
		}`, tr+"-refresh")
		tab.wait(t, tr+": a fresh token that fails at once stops", `(doc) => {
			const r = window.__runs[doc];
			return /^welcome\|4001 token expired \(retry\)(\|welcome)?\|4001 token expired \(stop\)$/.test(r.log.join('|')) && r.calls === 2;
		}`, tr+"-again")
		tab.wait(t, tr+": a refused token stops with the server's reason", `(doc) => {
			const r = window.__runs[doc];
			return r.calls === 2 && r.log.length === 2 && /^4001 (token invalid|invalid token).* \(retry\)$/.test(r.log[0]) && /^4001 (token invalid|invalid token).* \(stop\)$/.test(r.log[1]);
		}`, tr+"-refused")
		if t.Failed() {
			for name := range cases {
				t.Logf("%s %s: %s", tr, name, browserEval[string](t, tab, state(tr+"-"+name)))
			}
			return
		}
	}
}
