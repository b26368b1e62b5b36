package collab_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"collabd/collab"
	"collabd/nats"
	"collabd/nats/natstest"
)

// TestManyHubs runs 12 hubs, each on its own NATS connection, on one nats-server, with 200
// documents whose members are spread at random over the hubs. It checks that presence is
// complete everywhere and that the last cursor of every member reaches every other member
// of its document, and logs (-v) the NATS messages and bytes per second that each instance
// publishes and receives: while members join, at idle (heartbeats only) and under cursor
// load, from the server's per-connection counters. The defaults are used (1s heartbeat),
// so the idle figures are those of a production cluster of 12.
func TestManyHubs(t *testing.T) {
	if testing.Short() {
		t.Skip("12 hubs, 200 documents, and an idle window of several seconds")
	}
	const (
		nHubs      = 12
		nDocs      = 200
		maxPerDoc  = 10 // members per document: 1 to maxPerDoc, at random
		idleWindow = 5 * time.Second
		loadWindow = 3 * time.Second
		cursorHz   = 10
	)
	srv := natstest.NewServer(t).NATS()
	syncs := &durations{}
	hubs := make([]*collab.Hub, nHubs)
	names := make([]string, nHubs)
	for i := range hubs {
		names[i] = fmt.Sprintf("collabd-%02d", i)
		hubs[i] = newNamedHub(t, srv.ClientURL(), names[i], syncs.add)
	}
	peersKnown(t, nHubs-1, hubs...)

	rng := rand.New(rand.NewPCG(9, 12))
	heap0 := heapInUse()
	c0, cpu0, t0 := hubCounters(t, srv, names), cpuTime(), time.Now()
	var all []*mhMember
	byDoc := map[string][]*mhMember{}
	perHub := make([]int, nHubs)
	docsOn := make([]map[string]bool, nHubs)
	for i := range docsOn {
		docsOn[i] = map[string]bool{}
	}
	for d := range nDocs {
		doc := "doc-" + strconv.Itoa(d)
		for k := range 1 + rng.IntN(maxPerDoc) {
			h := rng.IntN(nHubs)
			m := mhJoin(t, hubs[h], doc, fmt.Sprintf("%s-m%d", doc, k))
			all = append(all, m)
			byDoc[doc] = append(byDoc[doc], m)
			perHub[h]++
			docsOn[h][doc] = true
		}
	}
	natstest.WaitFor(t, 20*time.Second, func() bool {
		for _, m := range all {
			m.sync()
			if !m.seesExactly(byDoc[m.s.Doc]) {
				return false
			}
		}
		return true
	})
	joined := time.Since(t0)
	c1, cpu1 := hubCounters(t, srv, names), cpuTime()
	heap1 := heapInUse()
	openings := 0
	for _, docs := range docsOn {
		openings += len(docs)
	}
	t.Logf("%d members in %d documents joined on %d hubs (%d document openings: a document open on an instance) and presence complete everywhere in %s; core heap %.1f KiB per member (hubs, documents, sessions, outboxes)",
		len(all), nDocs, nHubs, openings, time.Since(t0).Round(time.Millisecond), float64(heap1-heap0)/1024/float64(len(all)))
	t.Logf("document openings waited for the other instances' presence: %s", syncs.summary())
	logTraffic(t, "joins (sync requests and snapshots)", names, perHub, docsOn, c0, c1, joined, cpu1-cpu0)

	// Idle: nothing but heartbeats.
	time.Sleep(idleWindow)
	c2, cpu2 := hubCounters(t, srv, names), cpuTime()
	logTraffic(t, "idle", names, perHub, docsOn, c1, c2, idleWindow, cpu2-cpu1)

	// Cursor load: every member moves its cursor at cursorHz.
	tick := time.NewTicker(time.Second / cursorHz)
	start, x := time.Now(), 0
	for time.Since(start) < loadWindow {
		x++
		for _, m := range all {
			data, _ := json.Marshal(map[string]int{"x": x})
			if ce := m.s.Handle(collab.Command{Kind: collab.CmdCursor, Data: data}); ce != nil {
				t.Fatalf("%s: cursor: %v", m.s.User, ce)
			}
		}
		if x%cursorHz == 0 { // drain now and then, as writers would
			for _, m := range all {
				m.sync()
			}
		}
		<-tick.C
	}
	tick.Stop()
	loaded := time.Since(start)
	c3, cpu3 := hubCounters(t, srv, names), cpuTime()
	logTraffic(t, fmt.Sprintf("cursor load (%d members x %d Hz)", len(all), cursorHz), names, perHub, docsOn, c2, c3, loaded, cpu3-cpu2)

	natstest.WaitFor(t, 10*time.Second, func() bool {
		for _, m := range all {
			m.sync()
			for _, o := range byDoc[m.s.Doc] {
				if o != m && m.cursorX(o.s.ID) != x {
					return false
				}
			}
		}
		return true
	})
	for _, m := range all {
		if !m.seesExactly(byDoc[m.s.Doc]) {
			t.Errorf("%s: presence %v after the load, want the %d members of %s", m.s.User, m.state, len(byDoc[m.s.Doc]), m.s.Doc)
		}
	}
}

// newNamedHub runs a hub with the default heartbeat on its own connection, named name in
// the server's monitoring; onSync is told how long each document opening waited.
func newNamedHub(t *testing.T, url, name string, onSync func(time.Duration)) *collab.Hub {
	t.Helper()
	h, _ := openHub(t, nats.Options{URL: url, Name: name}, collab.Config{OnSync: onSync})
	return h
}

// natsCount is what one connection published (in) and received (out), as the server
// counts it.
type natsCount struct{ inMsgs, outMsgs, inBytes, outBytes int64 }

func hubCounters(t *testing.T, srv *server.Server, names []string) map[string]natsCount {
	t.Helper()
	cz, err := srv.Connz(&server.ConnzOptions{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]natsCount{}
	for _, c := range cz.Conns {
		out[c.Name] = natsCount{c.InMsgs, c.OutMsgs, c.InBytes, c.OutBytes}
	}
	for _, n := range names {
		if _, ok := out[n]; !ok {
			t.Fatalf("no connection named %s in the server's Connz", n)
		}
	}
	return out
}

// logTraffic logs, per instance, messages and bytes per second published and received
// between two readings of the counters, and the totals.
func logTraffic(t *testing.T, phase string, names []string, perHub []int, docsOn []map[string]bool, a, b map[string]natsCount, d time.Duration, cpu time.Duration) {
	t.Helper()
	sec := d.Seconds()
	var sb strings.Builder
	fmt.Fprintf(&sb, "NATS traffic per instance, %s, over %s (process CPU %.2f cores: 12 hubs, nats-server and the test):\n", phase, d.Round(time.Millisecond), cpu.Seconds()/sec)
	fmt.Fprintf(&sb, "  %-11s %7s %5s %10s %10s %12s %12s\n", "instance", "members", "docs", "pub msg/s", "recv msg/s", "pub B/s", "recv B/s")
	var tot natsCount
	for i, n := range names {
		dc := natsCount{b[n].inMsgs - a[n].inMsgs, b[n].outMsgs - a[n].outMsgs, b[n].inBytes - a[n].inBytes, b[n].outBytes - a[n].outBytes}
		tot.inMsgs += dc.inMsgs
		tot.outMsgs += dc.outMsgs
		tot.inBytes += dc.inBytes
		tot.outBytes += dc.outBytes
		fmt.Fprintf(&sb, "  %-11s %7d %5d %10.1f %10.1f %12.0f %12.0f\n", n, perHub[i], len(docsOn[i]),
			float64(dc.inMsgs)/sec, float64(dc.outMsgs)/sec, float64(dc.inBytes)/sec, float64(dc.outBytes)/sec)
	}
	k := float64(len(names))
	fmt.Fprintf(&sb, "  %-11s %7s %5s %10.1f %10.1f %12.0f %12.0f\n", "mean", "", "",
		float64(tot.inMsgs)/sec/k, float64(tot.outMsgs)/sec/k, float64(tot.inBytes)/sec/k, float64(tot.outBytes)/sec/k)
	fmt.Fprintf(&sb, "  %-11s %7s %5s %10.1f %10.1f %12.0f %12.0f", "all", "", "",
		float64(tot.inMsgs)/sec, float64(tot.outMsgs)/sec, float64(tot.inBytes)/sec, float64(tot.outBytes)/sec)
	t.Log(sb.String())
}

// durations collects durations from many goroutines.
type durations struct {
	mu sync.Mutex
	ds []time.Duration // guarded by mu
}

func (d *durations) add(v time.Duration) {
	d.mu.Lock()
	d.ds = append(d.ds, v)
	d.mu.Unlock()
}

// summary is n, median, p99 and max.
func (d *durations) summary() string {
	d.mu.Lock()
	ds := slices.Clone(d.ds)
	d.mu.Unlock()
	if len(ds) == 0 {
		return "none"
	}
	slices.Sort(ds)
	q := func(f float64) time.Duration { return ds[int(f*float64(len(ds)-1))].Round(10 * time.Microsecond) }
	return fmt.Sprintf("n=%d, median %s, p99 %s, max %s", len(ds), q(0.5), q(0.99), q(1))
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func heapInUse() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

// mhMember is a session whose outbox the test drains: its presence view and the latest
// cursor of each sender.
type mhMember struct {
	t       *testing.T
	s       *collab.Session
	out     *collab.Outbox
	state   map[string]string // id -> user
	cursors map[string]json.RawMessage
	events  []collab.Event
	drained collab.Cursors
}

func mhJoin(t *testing.T, h *collab.Hub, doc, user string) *mhMember {
	t.Helper()
	out := collab.NewOutbox(0)
	s, err := h.Join(context.Background(), out, collab.JoinOptions{Doc: doc, User: user, Present: true, Presence: true, Cursors: true})
	if err != nil {
		t.Fatalf("join %s as %s: %v", doc, user, err)
	}
	t.Cleanup(func() { h.Leave(s) })
	return &mhMember{t: t, s: s, out: out, state: map[string]string{}, cursors: map[string]json.RawMessage{}}
}

// sync applies everything queued; it must be called from the test's goroutine.
func (m *mhMember) sync() {
	var ce *collab.CloseError
	m.events, ce = m.out.Drain(m.events[:0], &m.drained)
	if ce != nil {
		m.t.Fatalf("%s: outbox closed: %v", m.s.User, ce)
	}
	applyPresence(m.state, m.events)
	for _, frame := range cursorFrames(m.t, &m.drained) {
		for _, c := range frame {
			m.cursors[c.ID] = c.Data
		}
	}
}

// seesExactly reports whether m's presence holds exactly want.
func (m *mhMember) seesExactly(want []*mhMember) bool {
	if len(m.state) != len(want) {
		return false
	}
	for _, o := range want {
		if m.state[o.s.ID] != o.s.User {
			return false
		}
	}
	return true
}

// cursorX is the x of the latest cursor of sender id, or -1.
func (m *mhMember) cursorX(id string) int {
	var p struct{ X *int }
	if json.Unmarshal(m.cursors[id], &p) != nil || p.X == nil {
		return -1
	}
	return *p.X
}
