package collab

import (
	"encoding/json"
	"slices"
	"time"
)

// Broadcasts are never lost to a short NATS outage. Each instance numbers the broadcasts it
// publishes in a document (per opening of the document: epoch E, sequence S) and keeps the
// recent ones; a receiver delivers them in order, holds what comes after a gap and asks the
// sender for the missing ones (kind "replay"). A loss at the tail, which no later broadcast
// reveals, shows in the sequence every presence snapshot carries: snapshots go out after
// every reconnection, from both sides. What a sender no longer keeps is skipped once the
// hold times out, so a long outage delays delivery by at most holdFor.
const (
	replayKeep      = 1024    // broadcasts an instance keeps per document
	replayKeepBytes = 1 << 20 // and their bytes at most
	holdFor         = time.Second
	holdMax         = replayKeep // broadcasts held behind one gap before they are delivered anyway: a sender keeps no more to fill it
)

// replayEnvelope asks instance To for its broadcasts in a document from sequence From on.
type replayEnvelope struct {
	Node  string `json:"n"`
	To    string `json:"to"`
	Epoch uint64 `json:"e"`
	From  uint64 `json:"from"`
}

// sentBcast is a broadcast this instance published, kept for a replay.
type sentBcast struct {
	seq  uint64
	data []byte
}

// bcastStream is what one other instance's broadcasts in a document have delivered here.
type bcastStream struct {
	epoch uint64
	last  uint64                   // the last sequence delivered
	held  map[uint64]bcastEnvelope // after a gap, waiting for it to fill
	since time.Time                // when the oldest held broadcast arrived
	asked uint64                   // the highest sequence already asked for
}

// publishBroadcastLocked numbers env, keeps it for replays and publishes it.
func (d *doc) publishBroadcastLocked(env bcastEnvelope) {
	d.bseq++
	env.Epoch, env.Seq = d.epoch, d.bseq
	data, err := json.Marshal(env)
	if err != nil {
		d.hub.log.Error("encode broadcast", "doc", d.id, "err", err)
		return
	}
	d.sent = append(d.sent, sentBcast{seq: env.Seq, data: data})
	d.sentBytes += len(data)
	drop := 0
	for len(d.sent)-drop > replayKeep || d.sentBytes > replayKeepBytes {
		d.sentBytes -= len(d.sent[drop].data)
		drop++
	}
	if drop > 0 {
		clear(d.sent[:drop])
		d.sent = d.sent[drop:]
	}
	if err := d.hub.bus.Publish(d.subject(kindBcast), data); err != nil {
		d.hub.publishFailed("broadcast", d.id, err) // kept: a replay sends it later
	}
}

// onBroadcastLocked delivers a broadcast from another instance in its sender's order.
func (d *doc) onBroadcastLocked(env bcastEnvelope) {
	if env.Seq == 0 { // not numbered: from an instance where the document is not open (REST)
		d.deliverBroadcastLocked(nil, env)
		return
	}
	st := d.streamLocked(env.Node, env.Epoch, env.Seq-1)
	switch {
	case env.Seq <= st.last:
		return // a replay of what was delivered
	case env.Seq > st.last+1:
		if st.held == nil {
			st.held = map[uint64]bcastEnvelope{}
		}
		if len(st.held) == 0 {
			st.since = time.Now()
		}
		st.held[env.Seq] = env
		d.askLocked(env.Node, st, env.Seq-1)
		if len(st.held) > holdMax {
			d.releaseHeldLocked(st)
		}
		return
	}
	st.last = env.Seq
	d.deliverBroadcastLocked(nil, env)
	for {
		next, ok := st.held[st.last+1]
		if !ok {
			break
		}
		delete(st.held, next.Seq)
		st.last = next.Seq
		d.deliverBroadcastLocked(nil, next)
	}
}

// streamLocked returns the stream of node's broadcasts; a stream seen for the first time, or
// in a new epoch, starts as if last had been delivered.
func (d *doc) streamLocked(node string, epoch, last uint64) *bcastStream {
	st := d.streams[node]
	if st == nil || st.epoch != epoch {
		if d.streams == nil {
			d.streams = map[string]*bcastStream{}
		}
		st = &bcastStream{epoch: epoch, last: last, asked: last}
		d.streams[node] = st
	}
	return st
}

// sawBroadcastSeqLocked learns from a snapshot that node had published seq broadcasts in
// this epoch: any not delivered here are asked for.
func (d *doc) sawBroadcastSeqLocked(node string, epoch, seq uint64) {
	st := d.streamLocked(node, epoch, seq)
	if seq > st.last {
		d.askLocked(node, st, seq)
	}
}

// askLocked asks node for its broadcasts after st.last, unless they were asked for already.
func (d *doc) askLocked(node string, st *bcastStream, upTo uint64) {
	if upTo <= st.asked {
		return
	}
	st.asked = upTo
	env := replayEnvelope{Node: d.hub.cfg.Node, To: node, Epoch: st.epoch, From: st.last + 1}
	if err := d.hub.publish(d.subject(kindReplay), env); err != nil {
		d.hub.publishFailed("replay request", d.id, err)
	}
}

// onReplay sends the broadcasts another instance asked for again, as they were published.
// It publishes after unlocking: up to replayKeep messages, which need no order with this
// document's other messages (the receiver orders broadcasts by sequence).
func (d *doc) onReplay(env replayEnvelope) {
	if env.To != d.hub.cfg.Node || env.Epoch != d.epoch {
		return
	}
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return
	}
	i, _ := slices.BinarySearchFunc(d.sent, env.From, func(b sentBcast, seq uint64) int {
		switch {
		case b.seq < seq:
			return -1
		case b.seq > seq:
			return 1
		}
		return 0
	})
	// The encodings are never modified; the slice of them is (publishBroadcastLocked).
	replay := make([][]byte, 0, len(d.sent)-i)
	for _, b := range d.sent[i:] {
		replay = append(replay, b.data)
	}
	d.mu.Unlock()
	for _, data := range replay {
		if err := d.hub.bus.Publish(d.subject(kindBcast), data); err != nil {
			d.hub.publishFailed("broadcast replay", d.id, err)
			return
		}
	}
}

// forgetStreams drops what is known of the broadcasts of instances long gone (their ids are
// random per start, so they never come back under the same one).
func (d *doc) forgetStreams(nodes []string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, n := range nodes {
		delete(d.streams, n)
	}
}

// releaseHeld delivers what waited too long behind a gap: the missing broadcasts are gone.
func (d *doc) releaseHeld(now time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for node, st := range d.streams {
		if len(st.held) > 0 && now.Sub(st.since) >= holdFor {
			d.hub.log.Warn("broadcasts lost in a NATS outage: the sender no longer had them", "doc", d.id, "from", node)
			d.releaseHeldLocked(st)
		}
	}
}

func (d *doc) releaseHeldLocked(st *bcastStream) {
	seqs := make([]uint64, 0, len(st.held))
	for seq := range st.held {
		seqs = append(seqs, seq)
	}
	slices.Sort(seqs)
	for _, seq := range seqs {
		d.deliverBroadcastLocked(nil, st.held[seq])
	}
	st.last = seqs[len(seqs)-1]
	st.asked = max(st.asked, st.last)
	clear(st.held)
}
