package main

import (
	"context"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fasthttp/websocket"
	"github.com/golang-jwt/jwt/v5"
)

func TestPositionRoundTrip(t *testing.T) {
	cases := []Position{
		{Sender: 1, X: 0, Y: 0, SentNS: 0},
		{Sender: 4294967295, X: -5, Y: 1079, SentNS: 123456789012345},
		{Sender: 42, X: 2147483647, Y: -2147483648, SentNS: 1},
	}
	for _, p := range cases {
		b := appendPosition(nil, p)
		got, bad := scanPositions(b, nil)
		if bad != 0 || len(got) != 1 || got[0] != p {
			t.Errorf("%s: got %+v (bad %d), want %+v", b, got, bad, p)
		}
	}
}

func TestScanPositionsRejectsMalformed(t *testing.T) {
	for _, s := range []string{
		`{"u":1,"x":2,"y":3}`,
		`{"u":1,"x":2,"y":3,"t":4`,
		`{"u":-1,"x":2,"y":3,"t":4}`,
		`{"u":1,"y":2,"x":3,"t":4}`,
		`{"u":1,"x":99999999999,"y":3,"t":4}`,
		`{"u":"a","x":2,"y":3,"t":4}`,
	} {
		got, bad := scanPositions([]byte(s), nil)
		if len(got) != 0 || bad != 1 {
			t.Errorf("%s: got %+v, bad %d; want nothing, bad 1", s, got, bad)
		}
	}
}

func TestCentrifugoSession(t *testing.T) {
	s := &centrifugoSession{prefix: []byte(`,"publish":{"channel":"doc:d1","data":`), nextID: 3}
	p := Position{Sender: 7, X: 10, Y: 20, SentNS: 30}
	if got, want := string(s.AppendCursor(nil, p)), `{"id":3,"publish":{"channel":"doc:d1","data":{"u":7,"x":10,"y":20,"t":30}}}`; got != want {
		t.Fatalf("publish frame\n got %s\nwant %s", got, want)
	}
	if got := string(s.AppendCursor(nil, p)); !strings.HasPrefix(got, `{"id":4,`) {
		t.Fatalf("command ids must increase: %s", got)
	}
	// A batched frame as Centrifugo writes it: replies and pushes separated by newlines.
	frame := strings.Join([]string{
		`{"push":{"channel":"doc:d1","pub":{"data":{"u":8,"x":1,"y":2,"t":3},"info":{"user":"8","client":"c8"}}}}`,
		`{"id":3,"publish":{}}`,
		`{}`,
		`{"push":{"channel":"doc:d1","pub":{"data":{"u":9,"x":4,"y":5,"t":6},"info":{"user":"9","client":"c9"}}}}`,
		`{"push":{"channel":"doc:d1","join":{"info":{"user":"10","client":"c10"}}}}`,
		`{"id":4,"error":{"code":103,"message":"permission denied"}}`,
	}, "\n")
	var in Inbound
	if err := s.Decode([]byte(frame), &in); err != nil {
		t.Fatal(err)
	}
	want := []Position{{8, 1, 2, 3}, {9, 4, 5, 6}}
	if len(in.Positions) != 2 || in.Positions[0] != want[0] || in.Positions[1] != want[1] {
		t.Errorf("positions %+v, want %+v", in.Positions, want)
	}
	if string(in.Reply) != "{}" || in.Acks != 1 || in.ServerErrors != 1 || in.Other != 2 || in.DecodeErrors != 0 {
		t.Errorf("got reply %q acks %d errors %d other %d decode errors %d", in.Reply, in.Acks, in.ServerErrors, in.Other, in.DecodeErrors)
	}
	in.reset()
	if err := s.Decode([]byte(`{"push":{"disconnect":{"code":3001,"reason":"shutdown"}}}`), &in); err == nil {
		t.Error("a disconnect push must end the session")
	}
}

func TestSocketIOSession(t *testing.T) {
	var s socketIOSession
	p := Position{Sender: 7, X: 10, Y: 20, SentNS: 30}
	if got, want := string(s.AppendCursor(nil, p)), `42["cursor",{"u":7,"x":10,"y":20,"t":30}]`; got != want {
		t.Fatalf("emit frame\n got %s\nwant %s", got, want)
	}
	var in Inbound
	for _, f := range []string{`42["cursor",{"u":8,"x":1,"y":2,"t":3}]`, `2`, `42["presence_join","9"]`} {
		if err := s.Decode([]byte(f), &in); err != nil {
			t.Fatal(err)
		}
	}
	if len(in.Positions) != 1 || in.Positions[0] != (Position{8, 1, 2, 3}) {
		t.Errorf("positions %+v", in.Positions)
	}
	if string(in.Reply) != "3" || in.Other != 2 {
		t.Errorf("reply %q other %d; want pong and 2 others", in.Reply, in.Other)
	}
	for _, f := range []string{"41", `44{"message":"no"}`, "1"} {
		if err := s.Decode([]byte(f), &in); err == nil {
			t.Errorf("%q must end the session", f)
		}
	}
}

func TestNativeSession(t *testing.T) {
	var s nativeSession
	p := Position{Sender: 7, X: 10, Y: 20, SentNS: 30}
	if got, want := string(s.AppendCursor(nil, p)), `{"type":"cursor","payload":{"u":7,"x":10,"y":20,"t":30}}`; got != want {
		t.Fatalf("cursor frame\n got %s\nwant %s", got, want)
	}
	tests := []struct {
		name                          string
		frame                         string
		want                          []Position
		acks, errs, other, decodeErrs int
	}{
		{name: "batched cursors",
			frame: `{"type":"cursors","payload":[{"id":"s8","data":{"u":8,"x":1,"y":2,"t":3}},{"id":"s9","data":{"u":9,"x":-4,"y":5,"t":6}}]}`,
			want:  []Position{{8, 1, 2, 3}, {9, -4, 5, 6}}},
		{name: "one cursor", frame: `{"type":"cursors","payload":[{"id":"s8","data":{"u":8,"x":1,"y":2,"t":3}}]}`, want: []Position{{8, 1, 2, 3}}},
		{name: "re-encoded cursor data",
			frame: `{"payload":[{"data":{"t":3,"u":8,"x":1,"y":2},"id":"s8"}, {"id":"s9","data":{"u":9, "x":4, "y":5, "t":6}}],"type":"cursors"}`,
			want:  []Position{{8, 1, 2, 3}, {9, 4, 5, 6}}},
		{name: "hidden cursor", frame: `{"type":"cursors","payload":[{"id":"s8","data":null},{"id":"s9","data":{"u":9,"x":4,"y":5,"t":6}}]}`,
			want: []Position{{9, 4, 5, 6}}},
		{name: "only hidden cursors", frame: `{"type":"cursors","payload":[{"id":"s8","data":null}]}`, other: 1},
		{name: "cursor that is not a position", frame: `{"type":"cursors","payload":[{"id":"s8","data":{"x":0.42,"y":0.17}}]}`, decodeErrs: 1},
		{name: "truncated position", frame: `{"type":"cursors","payload":[{"id":"s8","data":{"u":8,"x":1,"y":2}}]}`, decodeErrs: 1},
		{name: "welcome", frame: `{"type":"welcome","payload":{"id":"s7","user":"7","doc":"d1"}}`, other: 1},
		{name: "presence state", frame: `{"type":"presence.state","payload":{"s7":{"user":"7","state":{}},"s8":{"user":"8","state":{}}}}`, other: 1},
		{name: "presence diff", frame: `{"type":"presence.diff","payload":{"joins":{"s9":{"user":"9","state":{}}},"leaves":{}}}`, other: 1},
		{name: "broadcast", frame: `{"type":"broadcast","payload":{"from":"s8","event":"click","data":{"u":8,"x":1,"y":2,"t":3}}}`, other: 1},
		{name: "ok", frame: `{"type":"ok","ref":"1"}`, acks: 1},
		{name: "pong", frame: `{"type":"pong","ref":"2","payload":"hi"}`, acks: 1},
		{name: "error", frame: `{"type":"error","payload":{"code":"rate_limited","message":"too many cursor updates"}}`, errs: 1},
		{name: "unknown type", frame: `{"type":"later.v2","payload":{}}`, other: 1},
		{name: "not json", frame: `hello`, decodeErrs: 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var in Inbound
			if err := s.Decode([]byte(tc.frame), &in); err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if len(in.Positions) != len(tc.want) {
				t.Fatalf("got positions %+v, want %+v", in.Positions, tc.want)
			}
			for i := range tc.want {
				if in.Positions[i] != tc.want[i] {
					t.Errorf("got position %d = %+v, want %+v", i, in.Positions[i], tc.want[i])
				}
			}
			if len(in.Reply) != 0 || in.Acks != tc.acks || in.ServerErrors != tc.errs || in.Other != tc.other || in.DecodeErrors != tc.decodeErrs {
				t.Errorf("got reply %q acks %d errors %d other %d decode errors %d; want no reply, %d, %d, %d, %d",
					in.Reply, in.Acks, in.ServerErrors, in.Other, in.DecodeErrors, tc.acks, tc.errs, tc.other, tc.decodeErrs)
			}
		})
	}
}

// fakeWire replays frames to Join and records what it sends.
type fakeWire struct {
	in   []string
	sent []string
}

func (w *fakeWire) Send(frame []byte) error { w.sent = append(w.sent, string(frame)); return nil }

func (w *fakeWire) Recv() ([]byte, error) {
	if len(w.in) == 0 {
		return nil, errors.New("join deadline")
	}
	f := w.in[0]
	w.in = w.in[1:]
	return []byte(f), nil
}

func TestNativeJoin(t *testing.T) {
	ad, err := newAdapter("native", adapterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	const state = `{"type":"presence.state","payload":{"s7":{"user":"7","state":{}}}}`
	tests := []struct {
		name    string
		in      []string
		wantErr string // empty: joined
		left    int    // frames left for the session
	}{
		{"welcome then state", []string{`{"type":"welcome","payload":{"id":"s7","user":"7","doc":"d1"}}`, state}, "", 1},
		{"welcome with other key order", []string{`{"payload":{"doc":"d1","user":"7","id":"s7"},"type":"welcome"}`}, "", 0},
		{"no welcome", []string{state}, "join deadline", 0},
		{"other document", []string{`{"type":"welcome","payload":{"id":"s7","user":"7","doc":"d2"}}`}, `"d2"`, 0},
		{"error first", []string{`{"type":"error","payload":{"code":"forbidden","message":"no"}}`}, "forbidden", 0},
		{"not json", []string{`40`}, "bad frame", 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := &fakeWire{in: tc.in}
			s, err := ad.Join(w, "d1", 7)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("Join: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("got error %v, want one containing %q", err, tc.wantErr)
			case tc.wantErr == "" && s == nil:
				t.Fatal("Join returned no session")
			}
			if len(w.sent) != 0 || len(w.in) != tc.left {
				t.Errorf("got sent %q and %d frames left, want nothing sent and %d left", w.sent, len(w.in), tc.left)
			}
		})
	}
}

func TestNativePath(t *testing.T) {
	const secret = "s3cret"
	tests := []struct {
		name  string
		opts  adapterOptions
		doc   string
		want  string // exact path, or empty to check a minted token
		extra map[string]any
	}{
		{name: "no auth", doc: "d1", want: "/ws/d1?user=7"},
		{name: "document with colon", doc: "realtime:room-1", want: "/ws/realtime:room-1?user=7"},
		{name: "static token", opts: adapterOptions{nativeToken: "a.b.c"}, doc: "d1", want: "/ws/d1?token=a.b.c&user=7"},
		{name: "minted token", opts: adapterOptions{nativeSecret: secret}, doc: "d1"},
		{name: "minted token with claims", opts: adapterOptions{nativeSecret: secret, nativeClaims: `{"docs":["d1"],"write":true}`}, doc: "d1",
			extra: map[string]any{"docs": []any{"d1"}, "write": true}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ad, err := newAdapter("native", tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			path := ad.Path(tc.doc, 7)
			if tc.want != "" {
				if path != tc.want {
					t.Errorf("got %s, want %s", path, tc.want)
				}
				return
			}
			u, err := url.Parse(path)
			if err != nil || u.Path != "/ws/"+tc.doc || u.Query().Get("user") != "7" {
				t.Fatalf("got %s (%v), want /ws/%s?token=…&user=7", path, err, tc.doc)
			}
			claims := jwt.MapClaims{}
			if _, err := jwt.ParseWithClaims(u.Query().Get("token"), claims, func(*jwt.Token) (any, error) { return []byte(secret), nil },
				jwt.WithValidMethods([]string{"HS256"}), jwt.WithExpirationRequired()); err != nil {
				t.Fatalf("token: %v", err)
			}
			if claims["sub"] != "7" {
				t.Errorf("got sub %v, want 7", claims["sub"])
			}
			for k, v := range tc.extra {
				if !reflect.DeepEqual(claims[k], v) {
					t.Errorf("got claim %s = %v, want %v", k, claims[k], v)
				}
			}
		})
	}
}

func TestNewAdapterRefuses(t *testing.T) {
	for name, tc := range map[string]struct {
		adapter string
		opts    adapterOptions
	}{
		"unknown adapter":       {adapter: "nope"},
		"token and secret":      {adapter: "native", opts: adapterOptions{nativeToken: "a.b.c", nativeSecret: "s"}},
		"claims without secret": {adapter: "native", opts: adapterOptions{nativeClaims: `{"write":true}`}},
		"claims not an object":  {adapter: "native", opts: adapterOptions{nativeSecret: "s", nativeClaims: `[1]`}},
		"claims null":           {adapter: "native", opts: adapterOptions{nativeSecret: "s", nativeClaims: `null`}},
	} {
		if _, err := newAdapter(tc.adapter, tc.opts); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestHistogramQuantiles(t *testing.T) {
	var h Histogram
	rng := rand.New(rand.NewPCG(1, 2))
	vals := make([]int64, 100000)
	for i := range vals {
		vals[i] = rng.Int64N(200_000_000) // up to 200 ms in ns
		h.Record(vals[i], i)
	}
	sort.Slice(vals, func(i, j int) bool { return vals[i] < vals[j] })
	s := h.Snapshot()
	if s.Count() != uint64(len(vals)) {
		t.Fatalf("count %d", s.Count())
	}
	for _, q := range []float64{0.5, 0.9, 0.99, 0.999} {
		exact := vals[int(q*float64(len(vals)))-1]
		got := s.Quantile(q)
		if got < exact || float64(got) > float64(exact)*(1+1.0/subCount)+1 {
			t.Errorf("q%.3f: got %d, exact %d", q, got, exact)
		}
	}
	if s.Quantile(1) != vals[len(vals)-1] {
		t.Errorf("max %d, want %d", s.Quantile(1), vals[len(vals)-1])
	}
}

func TestBucketBounds(t *testing.T) {
	for _, v := range []int64{0, 1, 127, 128, 129, 255, 256, 1000, 1 << 40, 1<<62 + 12345} {
		b := bucketOf(v)
		if up := bucketUpper(b); up < v || (b > 0 && bucketUpper(b-1) >= v) {
			t.Errorf("v=%d bucket %d upper %d prev upper %d", v, b, up, bucketUpper(b-1))
		}
	}
}

func TestParseURLs(t *testing.T) {
	tests := []struct {
		in      string
		want    []string
		wantErr bool
	}{
		{in: "ws://127.0.0.1:8080", want: []string{"ws://127.0.0.1:8080"}},
		{in: " ws://h:1/base ", want: []string{" ws://h:1/base "}}, // one URL is used exactly as given
		{in: "ws://127.0.0.1:8080,ws://127.0.0.1:8081", want: []string{"ws://127.0.0.1:8080", "ws://127.0.0.1:8081"}},
		{in: "ws://a:1, ws://b:2 ,ws://a:1", want: []string{"ws://a:1", "ws://b:2", "ws://a:1"}},
		{in: "ws://a:1,", wantErr: true},
		{in: ",ws://a:1", wantErr: true},
		{in: "ws://a:1,,ws://b:2", wantErr: true},
		{in: " , ", wantErr: true},
	}
	for _, tc := range tests {
		got, err := parseURLs(tc.in)
		if (err != nil) != tc.wantErr || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("parseURLs(%q) = %q, %v; want %q, error %v", tc.in, got, err, tc.want, tc.wantErr)
		}
	}
}

func TestParsePIDs(t *testing.T) {
	tests := []struct {
		in      string
		want    []int
		wantErr bool
	}{
		{in: "", want: nil},
		{in: "0", want: nil}, // the old default: no sampling
		{in: "123", want: []int{123}},
		{in: "123,456", want: []int{123, 456}},
		{in: " 123 , 456,789 ", want: []int{123, 456, 789}},
		{in: "123,123", wantErr: true},
		{in: "123,", wantErr: true},
		{in: "123,0", wantErr: true},
		{in: "-5", wantErr: true},
		{in: "12a", wantErr: true},
		{in: "1.5", wantErr: true},
	}
	for _, tc := range tests {
		got, err := parsePIDs(tc.in)
		if (err != nil) != tc.wantErr || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("parsePIDs(%q) = %v, %v; want %v, error %v", tc.in, got, err, tc.want, tc.wantErr)
		}
	}
}

func TestParseFlagsServers(t *testing.T) {
	c, err := parseFlags([]string{"-url", "ws://127.0.0.1:8080,ws://127.0.0.1:8081", "-server-pid", "10,11,12"})
	if err != nil {
		t.Fatal(err)
	}
	if c.url != "ws://127.0.0.1:8080,ws://127.0.0.1:8081" || !reflect.DeepEqual(c.urls, []string{"ws://127.0.0.1:8080", "ws://127.0.0.1:8081"}) ||
		!reflect.DeepEqual(c.serverPIDs, []int{10, 11, 12}) {
		t.Errorf("got url %q urls %q pids %v", c.url, c.urls, c.serverPIDs)
	}
	c, err = parseFlags([]string{"-url", "ws://127.0.0.1:8080", "-server-pid", "10"})
	if err != nil || c.url != "ws://127.0.0.1:8080" || !reflect.DeepEqual(c.urls, []string{c.url}) || !reflect.DeepEqual(c.serverPIDs, []int{10}) {
		t.Errorf("single: got url %q urls %q pids %v (%v)", c.url, c.urls, c.serverPIDs, err)
	}
	for _, args := range [][]string{
		{"-url", "ws://a:1,,ws://b:2"},
		{"-server-pid", "10,x"},
		{"-mode", "idle", "-server-pid", "0"},
	} {
		if _, err := parseFlags(args); err == nil {
			t.Errorf("%q: accepted", args)
		}
	}
}

func TestClientURL(t *testing.T) {
	one := []string{"ws://h:1"}
	for i := range 100 {
		if got := clientURL(one, 7, i); got != one[0] {
			t.Fatalf("one URL: client %d got %q", i, got)
		}
	}
	urls := []string{"ws://a", "ws://b", "ws://c"}
	// 4 documents x 5 clients: the number within the document picks the URL.
	const docs, perDoc = 4, 5
	want := []string{"ws://a", "ws://b", "ws://c", "ws://a", "ws://b"}
	for i := range docs * perDoc {
		if got := clientURL(urls, perDoc, i); got != want[i%perDoc] {
			t.Errorf("client %d (doc %d, number %d): got %q, want %q", i, i/perDoc, i%perDoc, got, want[i%perDoc])
		}
	}
	// Every document has members on every URL once it has as many clients as URLs.
	for _, perDoc := range []int{3, 4, 20} {
		for doc := range 3 {
			seen := map[string]int{}
			for j := range perDoc {
				seen[clientURL(urls, perDoc, doc*perDoc+j)]++
			}
			if len(seen) != len(urls) {
				t.Errorf("%d clients per document: document %d reaches %v", perDoc, doc, seen)
			}
		}
	}
}

func TestServersStats(t *testing.T) {
	t0 := time.Unix(1000, 0)
	a := []procSample{
		{at: t0, cpu: 1 * time.Second, rssKB: 10240, peakKB: 20480},
		{at: t0.Add(time.Millisecond), cpu: 5 * time.Second, rssKB: 2048, peakKB: 4096},
	}
	b := []procSample{
		{at: t0.Add(10 * time.Second), cpu: 21 * time.Second, rssKB: 30720, peakKB: 40960},
		{at: t0.Add(10*time.Second + time.Millisecond), cpu: 15 * time.Second, rssKB: 3072, peakKB: 5120},
	}
	one, each := serversStats([]int{7}, a[:1], b[:1])
	if each != nil || *one != (ServerStats{PID: 7, CPUS: 20, CPUCores: 2, RSSStartMB: 10, RSSEndMB: 30, PeakMB: 40}) {
		t.Errorf("one process: got %+v and list %v", *one, each)
	}
	sum, each := serversStats([]int{7, 8}, a, b)
	if *sum != (ServerStats{CPUS: 30, CPUCores: 3, RSSStartMB: 12, RSSEndMB: 33, PeakMB: 45}) {
		t.Errorf("sum: got %+v", *sum)
	}
	if len(each) != 2 || *each[0] != *one || *each[1] != (ServerStats{PID: 8, CPUS: 10, CPUCores: 1, RSSStartMB: 2, RSSEndMB: 3, PeakMB: 5}) {
		t.Errorf("each: got %+v", each)
	}
	b[1].peakKB = -1 // VmHWM missing
	if sum, _ := serversStats([]int{7, 8}, a, b); sum.PeakMB != -1 || sum.RSSEndMB != 33 {
		t.Errorf("a missing peak must make the summed peak missing: got %+v", *sum)
	}
	out, _ := json.Marshal(&Summary{Server: one})
	if !strings.Contains(string(out), `"server":{"pid":7,"cpu_s":20,`) || strings.Contains(string(out), `"servers"`) {
		t.Errorf("one process: JSON %s", out)
	}
	out, _ = json.Marshal(&Summary{Server: sum, Servers: each})
	if !strings.Contains(string(out), `"server":{"cpu_s":30,`) || !strings.Contains(string(out), `"servers":[{"pid":7,`) {
		t.Errorf("several processes: JSON %s", out)
	}
}

func TestReadProcs(t *testing.T) {
	self, parent := os.Getpid(), os.Getppid()
	ss, err := readProcs([]int{self, parent})
	if err != nil {
		t.Skipf("no /proc here: %v", err)
	}
	if len(ss) != 2 || ss[0].rssKB <= 0 || ss[0].peakKB < ss[0].rssKB || ss[1].rssKB <= 0 {
		t.Errorf("got %+v", ss)
	}
	if _, err := readProcs(nil); err == nil {
		t.Error("no process: want an error")
	}
	if _, err := readProcs([]int{self, 1 << 30}); err == nil {
		t.Error("a process that does not exist: want an error")
	}
}

// TestDialSpreadsOverURLs runs the native adapter against two local
// servers and checks that each client dialled the URL its number in its
// document picks.
func TestDialSpreadsOverURLs(t *testing.T) {
	up := websocket.Upgrader{}
	var mu sync.Mutex
	got := map[string]string{} // user -> server
	mk := func(name string) *httptest.Server {
		return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			c, err := up.Upgrade(w, r, nil)
			if err != nil {
				return
			}
			defer c.Close()
			mu.Lock()
			got[r.URL.Query().Get("user")] = name
			mu.Unlock()
			doc := strings.TrimPrefix(r.URL.Path, "/ws/")
			if c.WriteMessage(websocket.TextMessage, []byte(`{"type":"welcome","payload":{"id":"s","user":"u","doc":"`+doc+`"}}`)) != nil {
				return
			}
			for {
				if _, _, err := c.ReadMessage(); err != nil {
					return
				}
			}
		}))
	}
	a, b := mk("a"), mk("b")
	defer a.Close()
	defer b.Close()
	wsA, wsB := "ws"+strings.TrimPrefix(a.URL, "http"), "ws"+strings.TrimPrefix(b.URL, "http")
	cfg, err := parseFlags([]string{"-adapter", "native", "-url", wsA + "," + wsB, "-docs", "3", "-clients", "5", "-quiet"})
	if err != nil {
		t.Fatal(err)
	}
	ad, err := newAdapter(cfg.adapter, cfg.adapterOpts)
	if err != nil {
		t.Fatal(err)
	}
	r := newRun(cfg, ad)
	clients := r.connectAll(context.Background())
	for i, c := range clients {
		if c == nil {
			t.Fatalf("client %d did not connect: %v", i, r.errSamples)
		}
	}
	r.closeAll(clients)
	mu.Lock()
	defer mu.Unlock()
	for i := range 15 {
		want := []string{"a", "b"}[i%5%2]
		if g := got[strconv.Itoa(i+1)]; g != want {
			t.Errorf("client %d (doc %d, number %d) went to %q, want %q", i+1, i/5, i%5, g, want)
		}
	}
}
