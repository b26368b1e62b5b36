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

// benchHub runs a hub on a real NATS server for a benchmark.
func benchHub(b *testing.B) *Hub {
	b.Helper()
	ns := natstest.NewServer(b)
	ctx := context.Background()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	bus, err := nats.Open(ctx, nats.Options{URL: ns.URL(), Logger: quiet})
	if err != nil {
		b.Fatal(err)
	}
	h, err := NewHub(ctx, bus, Config{Logger: quiet, CursorRate: 1e9, CursorBurst: 1 << 30})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
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
			h := benchHub(b)
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
		entries := make([]cursorEntry, n)
		for i := range entries {
			entries[i] = cursorEntry{ID: fmt.Sprintf("%016x", 0x5f2c9e01a7b34d68+i), Data: benchCursor(i)}
		}
		env := cursorEnvelope{Node: "a1b2c3d4e5f6", Cursors: entries}
		data, err := json.Marshal(env)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(fmt.Sprint("encode/entries=", n), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				if _, err := json.Marshal(env); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprint("decode/entries=", n), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				var got cursorEnvelope
				if err := json.Unmarshal(data, &got); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkOutboxCursors: 19 senders' cursors queued for one connection, then drained.
func BenchmarkOutboxCursors(b *testing.B) {
	s := &Session{ID: "me"}
	o := NewOutbox(0)
	ids := make([]string, 19)
	for i := range ids {
		ids[i] = fmt.Sprintf("%016x", i)
	}
	data := benchCursor(1)
	var events []Event
	var cursors []CursorSlot
	b.ReportAllocs()
	for b.Loop() {
		for _, id := range ids {
			o.putCursor(s, id, data)
		}
		events, cursors, _ = o.Drain(events[:0], cursors[:0])
	}
}

// The hooks below tie the benchmarks to the queue's current design.

type cursorView struct{ slots []CursorSlot }

var benchSlots []CursorSlot

func drainForBench(o *Outbox, events []Event) ([]Event, *cursorView) {
	events, benchSlots, _ = o.Drain(events, benchSlots[:0])
	return events, &cursorView{benchSlots}
}

func (v *cursorView) appendFrame(dst []byte) []byte {
	for _, c := range v.slots {
		dst = append(dst, c.ID...)
		dst = append(dst, c.Data...)
	}
	return dst
}

func flushForBench(d *doc) { d.publishCursors() }
