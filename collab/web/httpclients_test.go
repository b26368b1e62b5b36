package web_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

// closeInfo is how an HTTP transport says a session ended.
type closeInfo struct {
	Code   int    `json:"code"`
	Reason string `json:"reason"`
}

// sseClient is a real Server-Sent Events client of the native protocol over HTTP.
type sseClient struct {
	frameStream
	base   string // http://host:port
	post   string // the session's POST path
	sid    string
	resp   *http.Response
	cancel context.CancelFunc
	done   chan struct{}
	mu     sync.Mutex
	closed *closeInfo // guarded by mu: the close event, once read
	id     string     // session id from welcome
}

// openSSE opens GET /sse/{path} (path with its query) and returns once the session event
// arrived, or the refusal's response when it did not answer 200.
func openSSE(t *testing.T, in *instance, path string, header http.Header) (*sseClient, *http.Response) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, in.url+"/sse/"+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		cancel()
		return nil, resp
	}
	for k, want := range map[string]string{"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"} {
		if got := resp.Header.Get(k); got != want {
			t.Errorf("SSE header %s: %q, want %q", k, got, want)
		}
	}
	c := &sseClient{base: in.url, resp: resp, cancel: cancel, done: make(chan struct{})}
	c.frameStream = newFrameStream(t, func() any { return c.closeEvent() })
	session := make(chan string, 1)
	go c.readLoop(session) // ends when the stream ends or the test cancels it
	t.Cleanup(func() {
		cancel()
		<-c.done
	})
	select {
	case data := <-session:
		var s struct{ Sid, Post string }
		if err := json.Unmarshal([]byte(data), &s); err != nil || s.Sid == "" || !strings.Contains(s.Post, "sid="+s.Sid) {
			t.Fatalf("session event %q: want a sid and the POST path with it", data)
		}
		c.sid, c.post = s.Sid, s.Post
	case <-time.After(5 * time.Second):
		t.Fatal("no session event within 5s")
	}
	return c, resp
}

// joinSSE opens an SSE session in doc as user and waits for its welcome.
func joinSSE(t *testing.T, in *instance, doc, user string) *sseClient {
	t.Helper()
	c, resp := openSSE(t, in, url.PathEscape(doc)+"?user="+url.QueryEscape(user), nil)
	if c == nil {
		t.Fatalf("open SSE: HTTP %d", resp.StatusCode)
	}
	var p struct{ ID string }
	json.Unmarshal(c.expect("welcome").Payload, &p)
	c.id = p.ID
	return c
}

// readLoop parses the event stream: the session event, then frames, then maybe a close.
func (c *sseClient) readLoop(session chan<- string) {
	defer close(c.done)
	defer close(c.frames)
	defer c.resp.Body.Close()
	r := bufio.NewReader(c.resp.Body)
	var event, data string
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimRight(line, "\n")
		switch {
		case line == "":
			switch event {
			case "session":
				session <- data
			case "close":
				var ci closeInfo
				json.Unmarshal([]byte(data), &ci)
				c.mu.Lock()
				c.closed = &ci
				c.mu.Unlock()
			case "":
				if data != "" {
					var f frame
					if err := json.Unmarshal([]byte(data), &f); err != nil {
						c.t.Errorf("SSE data is not a frame: %q", data)
					}
					c.frames <- f
				}
			}
			event, data = "", ""
		case strings.HasPrefix(line, ":"): // a comment: keep-alive
		case strings.HasPrefix(line, "event: "):
			event = line[len("event: "):]
		case strings.HasPrefix(line, "data: "):
			if data != "" {
				data += "\n"
			}
			data += line[len("data: "):]
		}
	}
}

// send POSTs frames, one per line, and returns the status and body.
func (c *sseClient) send(frames ...string) (int, string) {
	c.t.Helper()
	return postText(c.t, c.base+c.post, strings.Join(frames, "\n"))
}

func postText(t *testing.T, u, body string) (int, string) {
	t.Helper()
	resp, err := http.Post(u, "text/plain", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// waitEnd waits for the stream to end and returns its close event (nil: none).
func (c *sseClient) waitEnd(timeout time.Duration) *closeInfo {
	c.t.Helper()
	select {
	case <-c.done:
	case <-time.After(timeout):
		c.t.Fatalf("stream not ended within %s", timeout)
	}
	return c.closeEvent()
}

func (c *sseClient) closeEvent() *closeInfo {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

// poller is a real long-polling client of the native protocol over HTTP.
type poller struct {
	t    *testing.T
	base string // http://host:port/poll/{doc}
	sid  string
	id   string
	buf  []frame
	end  *closeInfo
}

// pollAnswer is the JSON of a poll's answer.
type pollAnswer struct {
	Sid      string          `json:"sid"`
	Messages []frame         `json:"messages"`
	Close    *closeInfo      `json:"close"`
	Error    string          `json:"error"`
	Raw      json.RawMessage `json:"-"`
}

// getPoll sends GET u and decodes the answer; it may run on any goroutine.
func getPoll(t *testing.T, ctx context.Context, u string) (int, pollAnswer, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return 0, pollAnswer{}, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, pollAnswer{}, err
	}
	defer resp.Body.Close()
	if cc := resp.Header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("poll answer %d: Cache-Control %q, want no-store", resp.StatusCode, cc)
	}
	var a pollAnswer
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, pollAnswer{}, err
	}
	if len(b) > 0 && b[0] == '{' {
		if err := json.Unmarshal(b, &a); err != nil {
			return 0, pollAnswer{}, fmt.Errorf("poll answer %q: %w", b, err)
		}
	}
	a.Raw = b
	return resp.StatusCode, a, nil
}

// joinPoll opens a long-polling session in doc as user; its first answer holds welcome.
func joinPoll(t *testing.T, in *instance, doc, user string) *poller {
	t.Helper()
	p := &poller{t: t, base: in.url + "/poll/" + url.PathEscape(doc)}
	status, a, err := getPoll(t, context.Background(), p.base+"?user="+url.QueryEscape(user))
	if err != nil || status != http.StatusOK || a.Sid == "" {
		t.Fatalf("open poll: HTTP %d %s %v, want 200 with a sid", status, a.Raw, err)
	}
	p.sid = a.Sid
	p.buf = a.Messages
	w := p.expect("welcome")
	var pl struct{ ID string }
	json.Unmarshal(w.Payload, &pl)
	p.id = pl.ID
	return p
}

// poll sends one poll and keeps its messages.
func (p *poller) poll() (int, pollAnswer) {
	p.t.Helper()
	status, a, err := getPoll(p.t, context.Background(), p.base+"?sid="+p.sid)
	if err != nil {
		p.t.Fatal(err)
	}
	p.buf = append(p.buf, a.Messages...)
	if a.Close != nil {
		p.end = a.Close
	}
	return status, a
}

func (p *poller) send(frames ...string) (int, string) {
	p.t.Helper()
	return postText(p.t, p.base+"?sid="+p.sid, strings.Join(frames, "\n"))
}

// until polls until a frame of type typ satisfies match (nil: any).
func (p *poller) until(typ string, match func(frame) bool) frame {
	p.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for len(p.buf) > 0 {
			f := p.buf[0]
			p.buf = p.buf[1:]
			if f.Type == typ && (match == nil || match(f)) {
				return f
			}
		}
		if p.end != nil {
			p.t.Fatalf("session ended (%+v) while waiting for %s", p.end, typ)
		}
		p.poll()
	}
	p.t.Fatalf("no %s frame matched within 10s", typ)
	return frame{}
}

func (p *poller) expect(typ string) frame {
	p.t.Helper()
	if len(p.buf) == 0 {
		p.poll()
	}
	if len(p.buf) == 0 {
		p.t.Fatalf("no frame, want %s", typ)
	}
	f := p.buf[0]
	p.buf = p.buf[1:]
	if f.Type != typ {
		p.t.Fatalf("got frame %s %s, want %s", f.Type, f.Payload, typ)
	}
	return f
}
