package collab

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"collabd/nats"
	"collabd/nats/natstest"
)

// go test -run '^$' -bench . -benchmem ./collab/

// realHub runs a hub with cfg, logging nowhere, on its own real NATS server; both stop when
// tb ends.
func realHub(tb testing.TB, cfg Config) *Hub {
	tb.Helper()
	ns := natstest.NewServer(tb)
	ctx := context.Background()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	bus, err := nats.Open(ctx, nats.Options{URL: ns.URL(), Logger: quiet})
	if err != nil {
		tb.Fatal(err)
	}
	cfg.Logger = quiet
	h, err := NewHub(ctx, bus, cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		h.Close()
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		bus.Close(cctx)
	})
	return h
}

func benchCursor(i int) json.RawMessage {
	return json.RawMessage(fmt.Sprintf(`{"x":0.%04d,"y":0.%04d,"t":17180000%08d}`, i*37%10000, i*91%10000, i%100000000))
}

// BenchmarkCursorFanout: every one of n members of a document sends one cursor, then the
// document publishes to the bus and every member's writer drains its outbox and encodes
// its frame (the encoding is a plain append here: collab cannot import wire). One op is
// that round; ns/delivery divides it by the n*(n-1) positions delivered.
func BenchmarkCursorFanout(b *testing.B) {
	for _, n := range []int{20, 200} {
		b.Run(fmt.Sprint("members=", n), func(b *testing.B) {
			// No thinning: the benchmark measures the fan-out of every cursor.
			h := realHub(b, Config{CursorRate: 1e9, CursorBurst: 1 << 30, CursorFrameMax: 1 << 20, CursorBudget: 1 << 40})
			outs := make([]*Outbox, n)
			sess := make([]*Session, n)
			for i := range n {
				outs[i] = NewOutbox(0)
				s, err := h.Join(context.Background(), outs[i], JoinOptions{Doc: "bench", User: "u", Present: true, Presence: true, Cursors: true})
				if err != nil {
					b.Fatal(err)
				}
				sess[i] = s
			}
			var events []Event
			var frame []byte
			drain := func() {
				for _, o := range outs {
					var cur *cursorView
					events, cur = drainForBench(o, events[:0])
					frame = cur.appendFrame(frame[:0])
					clear(events)
				}
			}
			drain()
			data := make([]json.RawMessage, 64)
			for i := range data {
				data[i] = benchCursor(i)
			}
			b.ReportAllocs()
			round := 0
			for b.Loop() {
				for i, s := range sess {
					s.Handle(Command{Kind: CmdCursor, Data: data[(round+i)%len(data)]})
				}
				flushForBench(sess[0].doc)
				drain()
				round++
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n*(n-1)), "ns/delivery")
		})
	}
}

// BenchmarkCursorEnvelope encodes and decodes the bus message of one document's tick.
func BenchmarkCursorEnvelope(b *testing.B) {
	for _, n := range []int{1, 19} {
		entries := make([]CursorEntry, n)
		for i := range entries {
			entries[i] = CursorEntry{ID: fmt.Sprintf("%016x", 0x5f2c9e01a7b34d68+i), Data: benchCursor(i)}
		}
		var data []byte
		b.Run(fmt.Sprint("encode/entries=", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				data, _ = appendCursorEnvelope(data[:0], "a1b2c3d4e5f6", entries, maxCursorMessage)
			}
			b.SetBytes(int64(len(data)))
		})
		b.Run(fmt.Sprint("decode/entries=", n), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				if _, err := decodeCursorEnvelope(data); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkOutboxCursors: one tick's batch of 19 senders queued for a connection, drained
// and written: the per-recipient part of the fan-out. "all" takes the shared bytes as they
// are; "sender" is one of the batch's senders, whose own entry is cut out.
func BenchmarkOutboxCursors(b *testing.B) {
	me := &Session{ID: "me"}
	entries := make([]CursorEntry, 19)
	for i := range entries {
		entries[i] = CursorEntry{ID: fmt.Sprintf("%016x", i), Data: benchCursor(i), seq: 1}
	}
	for _, name := range []string{"all", "sender"} {
		b.Run(name, func(b *testing.B) {
			if name == "sender" {
				entries[7].sender = me
			}
			batch := &CursorBatch{Entries: entries, minSeq: 1}
			o := NewOutbox(0)
			var events []Event
			var cur Cursors
			written := 0
			b.ReportAllocs()
			for b.Loop() {
				o.putCursors(me, batch)
				events, _ = o.Drain(events[:0], &cur)
				_ = cur.Frames(benchEncoder, func(_ *Session, frame []byte) error { written += len(frame); return nil })
			}
		})
	}
}

// The hooks below tie the benchmarks to the queue's current design.

type cursorView struct{ c *Cursors }

var benchCursors Cursors

func drainForBench(o *Outbox, events []Event) ([]Event, *cursorView) {
	events, _ = o.Drain(events, &benchCursors)
	return events, &cursorView{&benchCursors}
}

func (v *cursorView) appendFrame(dst []byte) []byte {
	enc := benchEncoder
	_ = v.c.Frames(enc, func(_ *Session, frame []byte) error { dst = append(dst, frame...); return nil })
	return dst
}

// benchEncoder stands in for the native encoder (collab cannot import wire).
var benchEncoder = &CursorEncoder{Prefix: "[", Suffix: "]", Entry: func(dst []byte, e *CursorEntry) []byte {
	dst = append(dst, e.ID...)
	return append(dst, e.Data...)
}}

func flushForBench(d *doc) { d.flushCursors() }
