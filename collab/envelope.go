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

// bcastEnvelope is one broadcast, numbered Seq in its sender's Epoch of the document (zero
// when the document is not open on the sender: a REST broadcast). See replay.go.
type bcastEnvelope struct {
	Node  string          `json:"n"`
	From  string          `json:"from"`
	Event string          `json:"event"`
	Data  json.RawMessage `json:"data"`
	Epoch uint64          `json:"e,omitempty"`
	Seq   uint64          `json:"s,omitempty"`
	// Binary: Data is the base64 JSON string of a binary payload (Command.Binary).
	Binary bool `json:"bin,omitempty"`
}

// presenceEnvelope is a change ("diff": Joins and Leaves) or the whole ("snap": Members)
// of one instance's members in one document, at version V. A snapshot larger than
// snapPartBytes travels as Parts messages, Part 0 first, each with some of the members; the
// receiver applies it once every part arrived (a NATS message is at most 1 MiB by default).
type presenceEnvelope struct {
	Node    string           `json:"n"`
	Type    string           `json:"t"`
	V       presence.Version `json:"v"`
	Joins   presence.Members `json:"j,omitempty"`
	Leaves  presence.Members `json:"l,omitempty"`
	Members presence.Members `json:"m,omitempty"`
	Part    int              `json:"p,omitempty"`
	Parts   int              `json:"np,omitempty"` // 0 or 1: the snapshot is whole
	Bcast   uint64           `json:"b,omitempty"`  // snapshots: the broadcasts published so far in epoch V.Epoch
}

// snapPartBytes bounds the members of one snapshot message, well under NATS's default
// max_payload of 1 MiB (a member is at most about 4.5 KiB).
const snapPartBytes = 256 << 10

// snapshotParts splits members into the messages of one snapshot: an empty snapshot is one
// message with no members.
func snapshotParts(node string, v presence.Version, members presence.Members, bcast uint64) []presenceEnvelope {
	parts := []presenceEnvelope{{Node: node, Type: presenceSnap, V: v, Members: presence.Members{}, Bcast: bcast}}
	size := 0
	for id, e := range members {
		n := presence.Size(id, e)
		if size > 0 && size+n > snapPartBytes {
			parts = append(parts, presenceEnvelope{Node: node, Type: presenceSnap, V: v, Members: presence.Members{}})
			size = 0
		}
		parts[len(parts)-1].Members[id] = e
		size += n
	}
	for i := range parts {
		parts[i].Part, parts[i].Parts = i, len(parts)
	}
	return parts
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
