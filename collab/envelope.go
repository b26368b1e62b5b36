package collab

import (
	"encoding/json"
	"time"

	"collabd/presence"
)

// The messages instances exchange on the bus, JSON-encoded. Every one names its sender
// instance in "n".

// cursorEnvelope carries every cursor a document gathered on one instance since its last
// publish, at most one per sender.
type cursorEnvelope struct {
	Node    string        `json:"n"`
	Cursors []cursorEntry `json:"c"`
}

type cursorEntry struct {
	ID   string          `json:"id"`
	Data json.RawMessage `json:"data"`
}

// bcastEnvelope is one broadcast.
type bcastEnvelope struct {
	Node  string          `json:"n"`
	From  string          `json:"from"`
	Event string          `json:"event"`
	Data  json.RawMessage `json:"data"`
}

// presenceEnvelope is a change ("diff": Joins and Leaves) or the whole ("snap": Members)
// of one instance's members in one document, at version V.
type presenceEnvelope struct {
	Node    string           `json:"n"`
	Type    string           `json:"t"`
	V       presence.Version `json:"v"`
	Joins   presence.Members `json:"j,omitempty"`
	Leaves  presence.Members `json:"l,omitempty"`
	Members presence.Members `json:"m,omitempty"`
}

const (
	presenceDiff = "diff"
	presenceSnap = "snap"
)

// syncEnvelope asks the instances (or only To) for a snapshot of a document.
type syncEnvelope struct {
	Node string `json:"n"`
	To   string `json:"to,omitempty"`
}

// nodeEnvelope is a heartbeat (Hello on start, asking the others to answer at once) or a
// goodbye.
type nodeEnvelope struct {
	Node  string `json:"n"`
	Hello bool   `json:"hello,omitempty"`
}

// publish encodes v and sends it on subject.
func (h *Hub) publish(subject string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return h.bus.Publish(subject, data)
}

// publishFailed logs a failed publish, at most once a second: while NATS is away every
// cursor batch fails, and one line says it.
func (h *Hub) publishFailed(what, doc string, err error) {
	now := time.Now().UnixNano()
	last := h.lastPublishErr.Load()
	if now-last < int64(time.Second) || !h.lastPublishErr.CompareAndSwap(last, now) {
		return
	}
	h.log.Warn("publish failed (repeats are not logged for a second)", "what", what, "doc", doc, "err", err)
}
