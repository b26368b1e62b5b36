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
// documents each held by 4 of them (subscribed to collab.doc.<t>.*, as an instance with
// members there is), every instance publishing cursor batches of 150 bytes into its
// documents as fast as it can; with NoEcho each is delivered to the 3 other holders. It
// checks that every message arrives and logs (-v) the server's CPU per message, for the
// NATS sizing in docs/scaling.md.
func TestNATSServerCost(t *testing.T) {
	if testing.Short() {
		t.Skip("pushes about a million messages through a nats-server process")
	}
	const (
		nInst   = 12
		nDocs   = 200
		holders = 4
		perInst = 25000
		size    = 150
	)
	bins := procBuild(t)
	nd := startNatsCluster(t, bins.natsServer, 1)[0]
	ctx := context.Background()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	buses := make([]*nats.Bus, nInst)
	for i := range buses {
		b, err := nats.Open(ctx, nats.Options{URL: nd.url(), Name: "inst-" + strconv.Itoa(i), Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			b.Close(cctx)
		})
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
	want := int64(0)
	for i := range buses {
		if len(held[i]) > 0 { // an instance that holds no document publishes nothing
			want += perInst * (holders - 1)
		}
	}
	payload := bytes.Repeat([]byte("x"), size)
	cpu0, ok := procCPU(nd.p.cmd.Process.Pid)
	if !ok {
		t.Skip("no /proc: cannot read the server's CPU time")
	}
	start := time.Now()
	var wg sync.WaitGroup
	errs := make([]error, nInst)
	for i, b := range buses {
		if len(held[i]) == 0 {
			continue
		}
		wg.Go(func() {
			for k := range perInst {
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
			t.Fatalf("instance %d: %v", i, err)
		}
	}
	procPoll(t, 60*time.Second, fmt.Sprintf("%d deliveries", want), func() bool { return received.Load() >= want })
	took := time.Since(start)
	cpu1, _ := procCPU(nd.p.cmd.Process.Pid)
	if got := received.Load(); got != want {
		t.Errorf("got %d deliveries, want %d", got, want)
	}
	published := want / (holders - 1)
	cpu := cpu1 - cpu0
	t.Logf("nats-server: %d published (%d B payload) and %d delivered in %s (%.0f delivered/s); server CPU %s: %.2f µs per delivered message, %.2f µs per message in or out",
		published, size, want, took.Round(time.Millisecond), float64(want)/took.Seconds(), cpu,
		float64(cpu.Nanoseconds())/1e3/float64(want), float64(cpu.Nanoseconds())/1e3/float64(want+published))
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
