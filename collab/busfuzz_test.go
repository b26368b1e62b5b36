package collab

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"collabd/presence"
)

// Whatever arrives on the bus, from an instance of another version, a broken one or anyone
// who can publish to NATS, is refused or applied, never a crash: every handler of a hub's
// subscriptions gets arbitrary bytes on its subject, in a document with a local member whose
// outbox is drained as a client would, and who stays open throughout.
func FuzzBusMessage(f *testing.F) {
	h := realHub(f, Config{Node: "local", SyncTimeout: 10 * time.Millisecond})
	out := NewOutbox(0)
	opts := JoinOptions{Doc: "fz", User: "u", Present: true, Presence: true, Cursors: true}
	if _, err := h.Join(context.Background(), out, opts); err != nil {
		f.Fatal(err)
	}
	h.mu.Lock()
	d := h.docs["fz"]
	h.mu.Unlock()

	handlers := []struct {
		subject string
		fn      func(string, []byte)
	}{
		{d.subject(kindCursor), d.onMessage},
		{d.subject(kindBcast), d.onMessage},
		{d.subject(kindReplay), d.onMessage},
		{d.subject(kindPresence), d.onMessage},
		{d.subject(kindSync), h.onSync},
		{h.bus.NodeSubject(kindHB), h.onHeartbeat},
		{h.bus.NodeSubject(kindBye), h.onBye},
	}
	seed := func(kind int, v any) {
		data, err := json.Marshal(v)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(uint8(kind), data)
	}
	v := presence.Version{Epoch: 7, Seq: 1}
	joins := presence.Members{"r1": {User: "ann", State: json.RawMessage(`{"x":1}`), Rev: 1}}
	seed(0, cursorEnvelope{Node: "peer", Cursors: []cursorEntry{{ID: "r1", Data: json.RawMessage(`{"x":0.5}`)}}})
	seed(1, bcastEnvelope{Node: "peer", From: "r1", Event: "e", Data: json.RawMessage(`{}`), Epoch: 7, Seq: 1})
	seed(1, bcastEnvelope{Node: "peer", From: "r1", Event: "b", Data: json.RawMessage(`"AAE="`), Binary: true})
	seed(2, replayEnvelope{Node: "peer", To: "local", Epoch: 1, From: 1})
	seed(3, presenceEnvelope{Node: "peer", Type: presenceDiff, V: v, Joins: joins})
	seed(3, presenceEnvelope{Node: "peer", Type: presenceSnap, V: v, Members: joins, Part: 0, Parts: 2, Bcast: 3})
	seed(3, presenceEnvelope{Node: "peer", Type: presenceSnap, V: v, Members: joins, Part: 1, Parts: 2})
	seed(4, syncEnvelope{Node: "peer"})
	seed(5, nodeEnvelope{Node: "peer", Hello: true})
	seed(6, nodeEnvelope{Node: "peer"})
	f.Add(uint8(3), []byte(`{"n":"peer","t":"snap","v":{"epoch":1,"seq":1},"p":-1,"np":-5}`))
	f.Add(uint8(0), []byte(`{"n":"peer","c":[{"id":"","data":}]}`))

	var events []Event
	var cursors Cursors
	f.Fuzz(func(t *testing.T, kind uint8, data []byte) {
		hd := handlers[int(kind)%len(handlers)]
		hd.fn(hd.subject, data)
		events, _ = out.Drain(events[:0], &cursors)
		if out.Closed() != nil {
			t.Fatalf("the local member was closed: %v", out.Closed())
		}
		_ = d.state()
	})

}
