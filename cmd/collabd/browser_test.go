package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// The browser test drives the demo page (frontend/) in headless Chromium against a real collabd
// started through run. It needs a Chromium binary: COLLABD_CHROMIUM, else /usr/bin/chromium.
// Without one it skips, except when CI=true, where it fails so that CI never skips silently.

const (
	browserDoc          = "browser-test"
	browserScreenshot   = "/tmp/collabd-demo.png"
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

func browserEval[T any](t *testing.T, b *browserTab, expr string) T {
	t.Helper()
	v, err := chromedp.Run(b.ctx, chromedp.Evaluate[T](expr))
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
			png, err := chromedp.Run(b.ctx, chromedp.CaptureScreenshot())
			if err != nil {
				t.Fatalf("screenshot: %v", err)
			}
			if err := os.WriteFile(browserScreenshot, png, 0o644); err != nil {
				t.Fatalf("write screenshot: %v", err)
			}
			t.Logf("screenshot of tab B: %s", browserScreenshot)
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
