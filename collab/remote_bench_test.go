package collab_test

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"collabd/collab"
	"collabd/nats"
	"collabd/nats/natstest"
)

// BenchmarkRemoteCursorBatch measures what an instance spends on one cursor batch another
// instance published for a document (one cursor in it), with members members there: the
// decoding and the fan-out into their outboxes, without NATS's own work. The batch is the
// bytes a real hub published, captured on its bus, so the figure follows the wire format.
// ns/delivery divides by the local members; docs/scaling.md uses it for the cost of
// cross-instance traffic.
//
//	go test -run '^$' -bench RemoteCursorBatch -benchmem ./collab/
func BenchmarkRemoteCursorBatch(b *testing.B) {
	for _, members := range []int{1, 10, 100} {
		b.Run("members="+itoa(members), func(b *testing.B) {
			ns := natstest.NewServer(b)
			from := newTapHub(b, ns.URL())
			to := newTapHub(b, ns.URL())
			peersKnown(b, 1, from.hub, to.hub)
			const doc = "remote-bench"
			sender := joinTB(b, from.hub, doc, "sender")
			var first *collab.Session
			for i := range members {
				s := joinTB(b, to.hub, doc, "m"+itoa(i))
				if first == nil {
					first = s
				}
			}
			if ce := sender.Handle(collab.Command{Kind: collab.CmdCursor, Data: json.RawMessage(`{"x":0.42,"y":0.17}`)}); ce != nil {
				b.Fatal(ce)
			}
			subject := from.bus.DocSubject(doc, "cursor")
			var batch []byte
			natstest.WaitFor(b, 5*time.Second, func() bool { batch = from.published(subject); return batch != nil })
			handle := to.handler(to.bus.DocSubject(doc, "*"))
			if handle == nil {
				b.Fatal("the receiving hub did not subscribe to the document")
			}
			// The replayed batch must reach the members: drain one and look for the cursor.
			natstest.WaitFor(b, 5*time.Second, func() bool {
				handle(subject, batch)
				for _, frame := range drainCursors(b, first.Out) {
					for _, c := range frame {
						if c.ID == sender.ID {
							return true
						}
					}
				}
				return false
			})
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				handle(subject, batch)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(members), "ns/delivery")
		})
	}
}

// tapHub is a hub on a real NATS connection whose bus remembers the handlers it subscribed
// and the last message published on each subject, so that a benchmark can hand the hub what
// another instance published without timing NATS.
type tapHub struct {
	hub *collab.Hub
	bus *nats.Bus

	mu        sync.Mutex
	handlers  map[string]func(string, []byte) // guarded by mu
	publishes map[string][]byte               // guarded by mu
}

// tapBus is the collab.Bus of a tapHub: the real bus, watched.
type tapBus struct {
	*nats.Bus
	tap *tapHub
}

func (b tapBus) Subscribe(subject string, fn func(string, []byte)) (func() error, error) {
	b.tap.mu.Lock()
	b.tap.handlers[subject] = fn
	b.tap.mu.Unlock()
	return b.Bus.Subscribe(subject, fn)
}

func (b tapBus) Publish(subject string, data []byte) error {
	b.tap.mu.Lock()
	b.tap.publishes[subject] = append([]byte(nil), data...)
	b.tap.mu.Unlock()
	return b.Bus.Publish(subject, data)
}

func newTapHub(tb testing.TB, url string) *tapHub {
	tb.Helper()
	ctx := context.Background()
	bus, err := nats.Open(ctx, nats.Options{URL: url, Logger: quiet()})
	if err != nil {
		tb.Fatal(err)
	}
	th := &tapHub{bus: bus, handlers: map[string]func(string, []byte){}, publishes: map[string][]byte{}}
	th.hub, err = collab.NewHub(ctx, tapBus{Bus: bus, tap: th}, collab.Config{Logger: quiet()})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		th.hub.Close()
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		bus.Close(cctx)
	})
	return th
}

func (th *tapHub) published(subject string) []byte {
	th.mu.Lock()
	defer th.mu.Unlock()
	return th.publishes[subject]
}

func (th *tapHub) handler(subject string) func(string, []byte) {
	th.mu.Lock()
	defer th.mu.Unlock()
	return th.handlers[subject]
}

// joinTB joins a present member that wants presence and cursors; the benchmark never
// drains its outbox (cursors replace each other in it).
func joinTB(tb testing.TB, h *collab.Hub, doc, user string) *collab.Session {
	tb.Helper()
	s, err := h.Join(context.Background(), collab.NewOutbox(0), collab.JoinOptions{Doc: doc, User: user, Present: true, Presence: true, Cursors: true})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { h.Leave(s) })
	return s
}
