package web

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"collabd/collab"
)

// recorder is a transport that keeps what it is written.
type recorder struct {
	mu     sync.Mutex
	frames []string
	pings  int
}

func (r *recorder) frame(_ bool, data []byte) error {
	r.mu.Lock()
	r.frames = append(r.frames, string(data))
	r.mu.Unlock()
	return nil
}
func (r *recorder) flush() error                     { return nil }
func (r *recorder) ping() error                      { r.mu.Lock(); r.pings++; r.mu.Unlock(); return nil }
func (r *recorder) close(*collab.CloseError) error   { return nil }
func (r *recorder) setWriteDeadline(time.Time) error { return nil }
func (r *recorder) count() int                       { r.mu.Lock(); defer r.mu.Unlock(); return len(r.frames) }
func (r *recorder) pinged() bool                     { r.mu.Lock(); defer r.mu.Unlock(); return r.pings > 0 }

// soon reports whether cond came to hold within 2 s; it yields between looks, so that a
// writer on a busy machine gets to run.
func soon(cond func() bool) bool {
	deadline := time.Now().Add(2 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		runtime.Gosched()
	}
	return true
}

// Writer runs start and end thousands of times under pushers that race each other and the
// end of each run: every event is written, once, in each pusher's order, and (under -race)
// one run hands the writer's state to the next. A round's wait times out if a push is left
// with no run to write it.
func TestWriterRunsUnderRacingPushes(t *testing.T) {
	srv := &Server{cfg: Config{WriteTimeout: time.Second}}
	c := &conn{srv: srv, out: collab.NewOutbox(0), enc: nativeEncoder{}}
	rec := &recorder{}
	c.startWriter(rec, time.Millisecond)
	const pushers, perRound, rounds = 2, 4, 5000
	for r := range rounds {
		var wg sync.WaitGroup
		for p := range pushers {
			wg.Go(func() {
				for i := r * perRound; i < (r+1)*perRound; i++ {
					c.out.Push(collab.Event{Kind: collab.EventOK, Ref: fmt.Sprintf("%d/%d", p, i)})
				}
			})
		}
		wg.Wait()
		want := (r + 1) * perRound * pushers
		if !soon(func() bool { return rec.count() >= want }) {
			t.Fatalf("round %d: %d of %d events written within 2s", r, rec.count(), want)
		}
	}
	next := make([]int, pushers)
	for _, f := range rec.frames {
		var ok struct{ Ref string }
		var p, i int
		if json.Unmarshal([]byte(f), &ok) != nil {
			t.Fatalf("frame %q", f)
		}
		fmt.Sscanf(ok.Ref, "%d/%d", &p, &i)
		if i != next[p] {
			t.Fatalf("pusher %d: event %d came when %d was due", p, i, next[p])
		}
		next[p]++
	}
	c.out.Close(errClientGone)
	if err := c.awaitWriter(); err != nil {
		t.Fatal(err)
	}
	if !rec.pinged() {
		t.Error("no ping in all that time")
	}
}

// A ping can be due before startWriter returns (a tiny interval, a busy machine): the writer
// that sends it must find the ping timer there to rearm it. Under -race, any start whose
// first ping beat the timer's assignment is reported; without it, that start crashes.
func TestWriterPingDueAtOnce(t *testing.T) {
	srv := &Server{cfg: Config{WriteTimeout: time.Second}}
	for range 2000 {
		c := &conn{srv: srv, out: collab.NewOutbox(0), enc: nativeEncoder{}}
		rec := &recorder{}
		c.startWriter(rec, time.Nanosecond)
		if !soon(rec.pinged) {
			t.Fatal("no ping within 2s of a 1ns interval")
		}
		c.out.Close(errClientGone)
		if err := c.awaitWriter(); err != nil {
			t.Fatal(err)
		}
	}
}

// brokenTransport panics on its first frame, as a bug in an encoder or a transport would.
type brokenTransport struct{ recorder }

func (b *brokenTransport) frame(bool, []byte) error { panic("broken transport") }

// A panic in one connection's writer ends that connection alone: it counts as 1011, its
// network connection is cut, awaitWriter reports it, and the process and every other
// connection go on.
func TestWriterPanicEndsOnlyItsConnection(t *testing.T) {
	srv := &Server{cfg: Config{WriteTimeout: time.Second}, log: slog.New(slog.DiscardHandler)}
	var aborted atomic.Bool
	broken := &conn{srv: srv, out: collab.NewOutbox(0), enc: nativeEncoder{}, abort: func() { aborted.Store(true) }}
	broken.startWriter(&brokenTransport{}, time.Hour)
	healthy := &conn{srv: srv, out: collab.NewOutbox(0), enc: nativeEncoder{}}
	rec := &recorder{}
	healthy.startWriter(rec, time.Hour)

	broken.out.Push(collab.Event{Kind: collab.EventOK, Ref: "1"})
	if err := broken.awaitWriter(); !errors.Is(err, errWriterPanic) {
		t.Fatalf("awaitWriter = %v, want %v", err, errWriterPanic)
	}
	if got := broken.out.Closed(); got != collab.ErrInternal {
		t.Errorf("closed with %v, want %v", got, collab.ErrInternal)
	}
	if !aborted.Load() {
		t.Error("the network connection was not cut")
	}

	healthy.out.Push(collab.Event{Kind: collab.EventOK, Ref: "2"})
	if !soon(func() bool { return rec.count() > 0 }) {
		t.Fatal("the healthy connection wrote nothing within 2s")
	}
	healthy.out.Close(errClientGone)
	if err := healthy.awaitWriter(); err != nil {
		t.Fatal(err)
	}
}
