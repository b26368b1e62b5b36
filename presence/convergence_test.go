package presence

import (
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// This file simulates several instances that hold presence of one document and talk over
// a bus, the way collab.Hub drives Doc (DESIGN.md section 5):
//   - every local change is published as a diff with its version;
//   - a Gap makes the receiver send that instance a sync request, which it answers by
//     publishing its snapshot to everyone;
//   - an instance that opens the document sends a sync request to everyone, and every
//     instance answers with its snapshot; one that has the document closed answers with an
//     empty snapshot at Version{} (collab/node.go, onSync) and ignores diffs and snapshots;
//   - an instance reopens a document under a new epoch;
//   - a dead instance is dropped by all the others, and may restart under a new id.
//
// The bus keeps each publisher's messages in order for each receiver but interleaves
// publishers arbitrarily, and may lose messages (diffs, snapshots and sync requests).

// chooser makes the simulation's decisions.
type chooser interface {
	intn(n int) int // in [0, n)
	done() bool     // no more decisions to take
}

type randChooser struct{ r *rand.Rand }

func (c randChooser) intn(n int) int { return c.r.IntN(n) }
func (c randChooser) done() bool     { return false }

// byteChooser takes its decisions from fuzz input; once the input is used up every
// decision is 0, which the simulation reads as the most conservative choice.
type byteChooser struct {
	data []byte
	i    int
}

func (c *byteChooser) intn(n int) int {
	if c.i >= len(c.data) {
		return 0
	}
	b := c.data[c.i]
	c.i++
	return int(b) % n
}

func (c *byteChooser) done() bool { return c.i >= len(c.data) }

type simConfig struct {
	nodes  int  // instances, 2-4
	loss   bool // the bus may lose messages
	deaths bool // instances may die and restart
}

func (c simConfig) String() string {
	return fmt.Sprintf("nodes=%d loss=%v deaths=%v", c.nodes, c.loss, c.deaths)
}

type msgKind int

const (
	msgDiff    msgKind = iota // v, diff
	msgSnap                   // v, members
	msgSyncReq                // please publish your snapshot
)

type simMsg struct {
	kind    msgKind
	v       Version
	diff    Diff
	members Members
}

func (m simMsg) String() string {
	switch m.kind {
	case msgDiff:
		return fmt.Sprintf("diff@%d.%d %s", m.v.Epoch, m.v.Seq, dumpDiff(m.diff))
	case msgSnap:
		return fmt.Sprintf("snap@%d.%d %s", m.v.Epoch, m.v.Seq, dumpMembers(m.members))
	}
	return "syncreq"
}

// diffString prints a diff only when a trace is written.
type diffString Diff

func (d diffString) String() string { return dumpDiff(Diff(d)) }

type simNode struct {
	id    string
	alive bool
	epoch uint64 // of the last opening of the document
	doc   *Doc   // nil while the instance has the document closed
	sess  int    // sessions created, for unique ids
	// view is what a client connected to this instance sees: the diffs the doc returned,
	// applied in order. It must always equal doc.State().
	view Members
}

func (n *simNode) show(d Diff) { n.view = applyTo(n.view, d) }

type edge struct{ from, to string }

type sim struct {
	cfg    simConfig
	ch     chooser
	nodes  []*simNode // slots: a restarted instance takes its slot under a new id
	queues map[edge][]simMsg
	edges  []edge // every edge ever used, in order of first use, for determinism
	nextID int
	stats  map[string]int // events seen, to check that the cases of interest happen
	trace  []string       // only when tracing: every action, for a failure report
	traced bool
}

// maxLocal bounds the members of one instance, so that states stay small.
const maxLocal = 6

var simStates = []string{`{}`, `{"c":"red"}`, `{"c":"blue"}`, `{"c":"red","sel":[1,2]}`}

func newSim(cfg simConfig, ch chooser) *sim {
	s := &sim{cfg: cfg, ch: ch, queues: map[edge][]simMsg{}, stats: map[string]int{}}
	for range cfg.nodes {
		s.nodes = append(s.nodes, s.newNode())
	}
	return s
}

func (s *sim) newNode() *simNode {
	s.nextID++
	id := fmt.Sprintf("n%d", s.nextID)
	return &simNode{id: id, alive: true, epoch: 1, doc: NewDoc(id, 1), view: Members{}}
}

func (s *sim) logf(format string, args ...any) {
	if !s.traced {
		return
	}
	s.trace = append(s.trace, fmt.Sprintf(format, args...))
}

// live returns the instances alive; open those of them with the document open.
func (s *sim) live() []*simNode { return s.filter(func(n *simNode) bool { return n.alive }) }
func (s *sim) open() []*simNode {
	return s.filter(func(n *simNode) bool { return n.alive && n.doc != nil })
}

func (s *sim) filter(keep func(*simNode) bool) []*simNode {
	var l []*simNode
	for _, n := range s.nodes {
		if keep(n) {
			l = append(l, n)
		}
	}
	return l
}

func (s *sim) node(id string) *simNode {
	for _, n := range s.nodes {
		if n.id == id && n.alive {
			return n
		}
	}
	return nil
}

func (s *sim) send(from, to *simNode, m simMsg) {
	e := edge{from.id, to.id}
	if _, ok := s.queues[e]; !ok {
		s.edges = append(s.edges, e)
	}
	s.queues[e] = append(s.queues[e], m)
}

func (s *sim) publish(from *simNode, m simMsg) {
	for _, to := range s.live() {
		if to != from {
			s.send(from, to, m)
		}
	}
}

// publishSnapshot answers a sync request: the members of the document, or an empty
// snapshot at Version{} when the document is closed here.
func (s *sim) publishSnapshot(n *simNode) {
	if n.doc == nil {
		s.publish(n, simMsg{kind: msgSnap, members: Members{}})
		return
	}
	members, v := n.doc.Local()
	s.publish(n, simMsg{kind: msgSnap, v: v, members: members})
}

func (s *sim) pick(nodes []*simNode) *simNode { return nodes[s.ch.intn(len(nodes))] }

// step takes one random action.
func (s *sim) step() {
	switch a := s.ch.intn(12); {
	case a < 5:
		s.deliverOne(s.cfg.loss)
	case a < 7:
		s.track()
	case a < 9:
		s.untrack()
	case a < 10:
		if open := s.open(); len(open) > 0 {
			s.syncRequest(s.pick(open))
		}
	default:
		s.lifecycle()
	}
}

func (s *sim) track() {
	n := s.pick(s.live())
	if n.doc == nil {
		s.reopen(n) // a client joins: the document opens here again
	}
	ids := slices.Sorted(maps.Keys(n.doc.local))
	var id string
	if k := s.ch.intn(len(ids) + 1); k < len(ids) || len(ids) >= maxLocal {
		id = ids[min(k, len(ids)-1)]
	} else {
		id = s.newSession(n)
	}
	s.trackAs(n, id, Entry{User: fmt.Sprintf("u%d", s.ch.intn(3)), State: json.RawMessage(simStates[s.ch.intn(len(simStates))])})
}

func (s *sim) newSession(n *simNode) string {
	n.sess++
	return fmt.Sprintf("%s.s%d", n.id, n.sess)
}

func (s *sim) trackAs(n *simNode, id string, e Entry) {
	diff, v := n.doc.Track(id, e)
	n.show(diff)
	s.logf("%s track %s %s %s -> v%d.%d %s", n.id, id, e.User, e.State, v.Epoch, v.Seq, diffString(diff))
	if !diff.Empty() {
		s.publish(n, simMsg{kind: msgDiff, v: v, diff: diff})
	}
}

func (s *sim) untrack() {
	withMembers := s.filter(func(n *simNode) bool { return n.alive && n.doc != nil && n.doc.LocalLen() > 0 })
	if len(withMembers) == 0 {
		return
	}
	n := s.pick(withMembers)
	ids := slices.Sorted(maps.Keys(n.doc.local))
	id := ids[s.ch.intn(len(ids))]
	diff, v, ok := n.doc.Untrack(id)
	n.show(diff)
	s.logf("%s untrack %s -> v%d.%d ok=%v", n.id, id, v.Epoch, v.Seq, ok)
	if ok {
		s.publish(n, simMsg{kind: msgDiff, v: v, diff: diff})
	}
}

func (s *sim) syncRequest(n *simNode) {
	s.logf("%s sync request", n.id)
	s.publish(n, simMsg{kind: msgSyncReq})
}

func (s *sim) reopen(n *simNode) {
	n.epoch++
	n.doc = NewDoc(n.id, n.epoch)
	n.view = Members{}
	s.stats["reopen"]++
	s.logf("%s reopens the document at epoch %d", n.id, n.epoch)
	s.syncRequest(n)
}

// lifecycle closes the document on an instance without members there, reopens it, kills
// an instance or restarts a dead one under a new id.
func (s *sim) lifecycle() {
	n := s.nodes[s.ch.intn(len(s.nodes))]
	switch {
	case !n.alive:
		i := slices.Index(s.nodes, n)
		s.nodes[i] = s.newNode()
		s.stats["restart"]++
		s.logf("%s restarts as %s", n.id, s.nodes[i].id)
		s.syncRequest(s.nodes[i])
	case n.doc == nil:
		s.reopen(n)
	case n.doc.LocalLen() == 0 && (!s.cfg.deaths || s.ch.intn(2) == 0):
		n.doc, n.view = nil, nil
		s.stats["close"]++
		s.logf("%s closes the document", n.id)
	case s.cfg.deaths && len(s.live()) > 1:
		n.alive = false
		for e := range s.queues {
			if e.from == n.id || e.to == n.id {
				delete(s.queues, e)
			}
		}
		s.stats["death"]++
		s.logf("%s dies", n.id)
		for _, o := range s.open() {
			o.show(o.doc.DropNode(n.id))
		}
	}
}

func (s *sim) pending() []edge {
	var p []edge
	for _, e := range s.edges {
		if len(s.queues[e]) > 0 {
			p = append(p, e)
		}
	}
	return p
}

// deliverOne delivers (or, when lossy, may lose) the oldest message on one edge.
func (s *sim) deliverOne(lossy bool) bool {
	p := s.pending()
	if len(p) == 0 {
		return false
	}
	e := p[s.ch.intn(len(p))]
	m := s.queues[e][0]
	s.queues[e] = s.queues[e][1:]
	if lossy && s.ch.intn(4) == 3 {
		s.stats["lost"]++
		s.logf("%s -> %s LOST %s", e.from, e.to, m)
		return true
	}
	from, to := s.node(e.from), s.node(e.to)
	switch {
	case m.kind == msgSyncReq:
		s.logf("%s -> %s syncreq", e.from, e.to)
		s.publishSnapshot(to)
	case to.doc == nil:
		s.logf("%s -> %s %s: document closed, not subscribed", e.from, e.to, m)
	case m.kind == msgDiff:
		change, outcome := to.doc.ApplyDiff(e.from, m.v, m.diff)
		s.stats[[...]string{"applied", "stale", "gap"}[outcome]]++
		s.logf("%s -> %s %s: %v %s", e.from, e.to, m, outcome, diffString(change))
		switch outcome {
		case Applied:
			to.show(change)
		case Gap:
			s.send(to, from, simMsg{kind: msgSyncReq})
		}
	case m.kind == msgSnap:
		change, ok := to.doc.ApplySnapshot(e.from, m.v, m.members)
		s.logf("%s -> %s %s: applied=%v %s", e.from, e.to, m, ok, diffString(change))
		if ok && !change.Empty() {
			s.stats["snapshot changed something"]++
		}
		if ok {
			to.show(change)
		}
	}
	return true
}

// drain delivers every pending message and those they cause.
func (s *sim) drain(lossy bool) {
	for s.deliverOne(lossy) {
	}
}

// checkViews reports an instance whose clients' view differs from its state, or that
// remembers an instance that is dead.
func (s *sim) checkViews() error {
	live := map[string]bool{}
	for _, n := range s.live() {
		live[n.id] = true
	}
	for _, n := range s.open() {
		if st := n.doc.State(); !sameMembers(n.view, st) {
			return fmt.Errorf("%s: the diffs it returned add up to %s, but its state is %s", n.id, dumpMembers(n.view), dumpMembers(st))
		}
		if got, want := n.doc.Len(), len(n.doc.State()); got != want {
			return fmt.Errorf("%s: got Len %d, want %d", n.id, got, want)
		}
		if got, want := n.doc.Bytes(), sizeOf(n.doc.State()); got != want {
			return fmt.Errorf("%s: got Bytes %d, want %d", n.id, got, want)
		}
		for _, p := range n.doc.Peers() {
			if !live[p] {
				return fmt.Errorf("%s: still has dead instance %s as a peer", n.id, p)
			}
		}
	}
	return nil
}

// checkConverged reports an instance with the document open whose state is not exactly
// the union of every live instance's own members.
func (s *sim) checkConverged() error {
	want := Members{}
	for _, n := range s.open() {
		local, _ := n.doc.Local()
		for id, e := range local {
			want[id] = e
		}
	}
	for _, n := range s.open() {
		if got := n.doc.State(); !sameMembers(got, want) {
			return fmt.Errorf("%s: got state %s, want %s", n.id, dumpMembers(got), dumpMembers(want))
		}
	}
	return s.checkViews()
}

func (s *sim) fail(stage string, err error) error {
	return fmt.Errorf("%s (%s): %v\ntrace:\n  %s", stage, s.cfg, err, strings.Join(s.trace, "\n  "))
}

// run takes steps, then settles: delivers everything pending, still with loss when the
// bus is lossy (and checks convergence at once when it is not). In half of the lossy
// runs every live instance then makes one more change, delivered without loss: whatever
// was lost must now be repaired by gap-triggered snapshots alone. Finally every live
// instance publishes its snapshot, as on reconnect; once that is delivered, every
// instance must hold the same state.
func (s *sim) run(steps int) error {
	for i := 0; i < steps && !s.ch.done(); i++ {
		s.step()
		if err := s.checkViews(); err != nil {
			return s.fail(fmt.Sprintf("after step %d", i), err)
		}
	}
	s.logf("-- drain")
	s.drain(s.cfg.loss)
	if !s.cfg.loss {
		if err := s.checkConverged(); err != nil {
			return s.fail("lossless, before any final snapshot", err)
		}
	} else if s.ch.intn(2) == 0 {
		s.logf("-- every live instance makes one more change, delivered without loss")
		s.stats["healed by one more change"]++
		for _, n := range s.live() {
			if n.doc == nil {
				s.reopen(n)
			}
			s.trackAs(n, s.newSession(n), Entry{User: "last", State: json.RawMessage(`{}`)})
		}
		s.drain(false)
		if err := s.checkConverged(); err != nil {
			return s.fail("lossy, after one more change from every instance", err)
		}
	}
	s.logf("-- every live instance publishes its snapshot")
	before := s.stats["snapshot changed something"]
	for _, n := range s.live() {
		s.publishSnapshot(n)
	}
	s.drain(false)
	if s.stats["snapshot changed something"] > before {
		s.stats["final snapshots repaired a state"]++
	}
	if err := s.checkConverged(); err != nil {
		return s.fail("after the final snapshots", err)
	}
	return nil
}

// simulate runs the simulation that newChooser drives for at most steps steps. On failure
// it runs it again with a trace of every action for the report.
func simulate(cfg simConfig, newChooser func() chooser, steps int) (map[string]int, error) {
	s := newSim(cfg, newChooser())
	err := s.run(steps)
	if err != nil {
		s = newSim(cfg, newChooser())
		s.traced = true
		err = s.run(steps)
	}
	return s.stats, err
}

func TestConvergence(t *testing.T) {
	seeds := uint64(150)
	if testing.Short() {
		seeds = 40
	}
	for _, mode := range []struct{ loss, deaths bool }{{false, false}, {false, true}, {true, false}, {true, true}} {
		t.Run(fmt.Sprintf("loss=%v,deaths=%v", mode.loss, mode.deaths), func(t *testing.T) {
			t.Parallel()
			total := map[string]int{}
			for seed := range seeds {
				cfg := simConfig{nodes: 2 + int(seed%3), loss: mode.loss, deaths: mode.deaths}
				// Short runs end with messages lost for good; long ones with queues
				// full of gap-triggered snapshots.
				steps := 10 + int(seed*37%290)
				stats, err := simulate(cfg, func() chooser { return randChooser{rand.New(rand.NewPCG(seed, 0xc011abd))} }, steps)
				if err != nil {
					t.Fatalf("seed %d: %v", seed, err)
				}
				for k, v := range stats {
					total[k] += v
				}
			}
			t.Logf("events over %d runs: %v", seeds, total)
			// The simulation must reach the cases it exists for.
			want := []string{"applied", "gap", "close", "reopen", "snapshot changed something"}
			if mode.loss {
				want = append(want, "lost", "healed by one more change", "final snapshots repaired a state")
			}
			if mode.deaths {
				want = append(want, "death", "restart")
			}
			for _, k := range want {
				if total[k] == 0 {
					t.Errorf("no %q in %d runs: the simulation misses a case", k, seeds)
				}
			}
		})
	}
}

// FuzzConvergence drives the same simulation from fuzz input: the first byte chooses the
// number of instances, loss and deaths; every following byte is one decision.
func FuzzConvergence(f *testing.F) {
	f.Add([]byte{0x00, 5, 5, 5, 0, 0, 0, 0})
	f.Add([]byte{0x01, 5, 0, 1, 2, 5, 1, 0, 1, 7, 0, 0, 10, 0, 5, 0, 0, 0})
	f.Add([]byte{0x06, 5, 0, 1, 2, 5, 1, 0, 1, 0, 3, 0, 3, 4, 0, 0, 0, 3, 7, 0, 0, 0})
	f.Add([]byte{0x0e, 5, 0, 0, 0, 11, 0, 11, 1, 5, 1, 0, 0, 4, 2, 3, 11, 2, 0, 8, 1, 0, 0})
	f.Add([]byte("the quick brown fox jumps over the lazy dog, several times over"))
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) == 0 || len(data) > 1024 {
			return
		}
		cfg := simConfig{nodes: 2 + int(data[0]%3), loss: data[0]&4 != 0, deaths: data[0]&8 != 0}
		if _, err := simulate(cfg, func() chooser { return &byteChooser{data: data[1:]} }, len(data)); err != nil {
			t.Fatal(err)
		}
	})
}
