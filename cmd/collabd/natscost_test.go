package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"collabd/nats"
)

// TestNATSServerCost measures what a nats-server process spends per message in collabd's
// traffic pattern: 12 instances on their own connections (collabd's nats.Bus), 200
// documents, every instance publishing cursor batches of 150 bytes into the documents it
// holds (is subscribed to, collab.doc.<t>.*, as an instance with members there is) as fast
// as the subscribers take it. Two layouts: each document held by 4 instances (with NoEcho
// each message is delivered to the 3 others), and each held by one (the message reaches
// nobody: the documents of a load balancer that keeps a document on one instance). It
// checks that every message arrives and logs (-v) the server's CPU per message, for
// docs/scaling.md.
func TestNATSServerCost(t *testing.T) {
	if testing.Short() {
		t.Skip("pushes about a million messages through a nats-server process")
	}
	bins := procBuild(t)
	nd := startNatsCluster(t, bins.natsServer, 1)[0]
	if _, ok := procCPU(nd.p.cmd.Process.Pid); !ok {
		t.Skip("no /proc: cannot read the server's CPU time")
	}
	for _, holders := range []int{4, 1} {
		natsCost(t, nd, holders)
	}
}

// natsCost runs one layout of TestNATSServerCost: each document held by holders instances.
func natsCost(t *testing.T, nd *natsNode, holders int) {
	const (
		nInst    = 12
		nDocs    = 200
		perInst  = 25000
		perRound = 1000 // perInst is a multiple of it
		size     = 150
	)
	ctx := context.Background()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	buses := make([]*nats.Bus, nInst)
	for i := range buses {
		b, err := nats.Open(ctx, nats.Options{URL: nd.url(), Name: "inst-" + strconv.Itoa(i), Prefix: "h" + strconv.Itoa(holders), Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		defer func() {
			cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			b.Close(cctx)
		}()
		buses[i] = b
	}
	rng := rand.New(rand.NewPCG(3, 4))
	held := make([][]string, nInst) // the cursor subjects each instance publishes to
	var received atomic.Int64
	for d := range nDocs {
		doc := "doc-" + strconv.Itoa(d)
		for _, i := range rng.Perm(nInst)[:holders] {
			if _, err := buses[i].Subscribe(buses[i].DocSubject(doc, "*"), func(string, []byte) { received.Add(1) }); err != nil {
				t.Fatal(err)
			}
			held[i] = append(held[i], buses[i].DocSubject(doc, "cursor"))
		}
	}
	for _, b := range buses {
		if err := b.Flush(ctx); err != nil {
			t.Fatal(err)
		}
	}
	// Expected deliveries: each publish reaches the other holders of its document.
	published, want := int64(0), int64(0)
	for i := range buses {
		if len(held[i]) > 0 { // an instance that holds no document publishes nothing
			published += perInst
			want += perInst * int64(holders-1)
		}
	}
	payload := bytes.Repeat([]byte("x"), size)
	cpu0, _ := procCPU(nd.p.cmd.Process.Pid)
	start := time.Now()
	// In rounds of perRound publishes per instance, each waiting for the last round's
	// deliveries: as fast as the subscribers take it, never faster. A backlog without bound
	// would, on a busy machine, hold a subscriber's PONGs behind megabytes of messages until
	// its client declared the connection stale.
	delivered := int64(0)
	for from := 0; from < perInst; from += perRound {
		var wg sync.WaitGroup
		errs := make([]error, nInst)
		for i, b := range buses {
			if len(held[i]) == 0 {
				continue
			}
			wg.Go(func() {
				for k := from; k < from+perRound; k++ {
					if err := b.Publish(held[i][k%len(held[i])], payload); err != nil {
						errs[i] = err
						return
					}
				}
				fctx, cancel := context.WithTimeout(ctx, time.Minute) // slow under the race detector
				defer cancel()
				errs[i] = b.Flush(fctx)
			})
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Fatalf("instance %d, publishes %d-%d: %v", i, from, from+perRound, err)
			}
		}
		delivered += want * perRound / perInst
		procPoll(t, 60*time.Second, fmt.Sprintf("%d deliveries", delivered), func() bool { return received.Load() >= delivered })
	}
	took := time.Since(start)
	cpu1, _ := procCPU(nd.p.cmd.Process.Pid)
	if got := received.Load(); got != want {
		t.Errorf("got %d deliveries, want %d", got, want)
	}
	cpu := cpu1 - cpu0
	perDelivered := "no deliveries"
	if want > 0 {
		perDelivered = fmt.Sprintf("%.2f µs per delivered message", float64(cpu.Nanoseconds())/1e3/float64(want))
	}
	t.Logf("nats-server, documents held by %d of %d instances: %d published (%d B payload) in %s, %d delivered (%.0f/s); server CPU %s: %.2f µs per published message, %s",
		holders, nInst, published, size, took.Round(time.Millisecond), want, float64(want)/took.Seconds(), cpu,
		float64(cpu.Nanoseconds())/1e3/float64(published), perDelivered)
}

// procCPU returns the user and system CPU time of process pid, from /proc/<pid>/stat
// (Linux; the kernel counts in ticks of 10 ms).
func procCPU(pid int) (time.Duration, bool) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, false
	}
	// The command name, in parentheses, may hold spaces; utime and stime are the 12th and
	// 13th fields after it.
	rest := string(data)
	if i := strings.LastIndexByte(rest, ')'); i >= 0 {
		rest = rest[i+1:]
	}
	f := strings.Fields(rest)
	if len(f) < 13 {
		return 0, false
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, false
	}
	return time.Duration(ut+st) * 10 * time.Millisecond, true
}
