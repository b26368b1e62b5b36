package main

import (
	"fmt"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// TestNATSCluster runs three collabd instances on a cluster of three nats-server processes,
// each instance given every node's URL, and breaks the cluster while cursors and numbered
// broadcasts flow: kill -9 of the node an instance is connected to, that node's restart, a
// second node's graceful stop, then a freeze (SIGSTOP) of the node an instance is on. After
// each, the instances' clients must still be connected and presence everywhere must come
// back to the truth (every member, no ghost) with cursors flowing between every pair of
// instances again. The time that took, and the members that left and came back meanwhile,
// are logged (-v). No broadcast that the server acknowledged may be missing at the end.
func TestNATSCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a three-node nats-server cluster and collabd processes")
	}
	bins := procBuild(t)
	nodes := startNatsCluster(t, bins.natsServer, 3)
	urls := clusterURLs(nodes)
	var insts []*collabdProc
	for i := range 3 {
		insts = append(insts, startCollabdProc(t, bins.collabd, "collabd-"+string(rune('A'+i)), urls))
	}
	cl := &clusterLoad{t: t}
	for i, inst := range insts {
		for _, doc := range []string{"cluster-1", "cluster-2"} {
			for k := range 2 {
				cl.add(ndial(t, inst.base, doc, fmt.Sprintf("%s-%c%d", doc, 'A'+i, k)), doc)
			}
		}
	}
	where := func() string {
		s := ""
		for _, inst := range insts {
			u, _ := inst.natsServer()
			if nd := nodeOf(nodes, u); nd != nil {
				s += " " + inst.name + "->" + nd.name
			} else {
				s += " " + inst.name + "->" + u
			}
		}
		return s
	}
	cl.converge("start", time.Now(), nil)
	t.Logf("instances on nodes:%s", where())

	// 1. kill -9 of the node that A is connected to.
	a := insts[0]
	u, _ := a.natsServer()
	victim := nodeOf(nodes, u)
	if victim == nil {
		t.Fatalf("A's NATS server %q is none of the cluster's nodes", u)
	}
	moved := cl.onNode(insts, u)
	killed := time.Now()
	victim.kill9(t)
	took := cl.converge("kill -9 of "+victim.name, killed, cl.reconnectedAway(moved, u))
	t.Logf("kill -9 %s (had%s): converged in %s; now on:%s", victim.name, names(moved), procMS(took), where())

	// 2. The killed node comes back and rejoins the cluster; nothing may break, and
	// newcomers on every instance get complete presence in their first state.
	restarted := time.Now()
	victim.start(t)
	waitRoutes(t, nodes)
	t.Logf("%s restarted, routes to every node in %s", victim.name, procMS(time.Since(restarted)))
	took = cl.converge("restart of "+victim.name, restarted, nil)
	t.Logf("after the restart of %s: converged in %s", victim.name, procMS(took))
	for i, inst := range insts {
		c := ndial(t, inst.base, "cluster-1", "newcomer-"+strconv.Itoa(i))
		procPoll(t, 5*time.Second, c.name+": presence.state", func() bool { return c.first() != nil })
		if missing := cl.missingFrom(c.first(), "cluster-1"); len(missing) > 0 {
			t.Errorf("%s on %s: first presence.state lacks %v", c.name, inst.name, missing)
		}
		cl.add(c, "cluster-1")
	}
	cl.converge("newcomers", time.Now(), nil)

	// 3. A second node stops (SIGTERM): core NATS needs no quorum, so the remaining nodes
	// carry on. Stop the busiest node other than the restarted one.
	var second *natsNode
	for _, nd := range nodes {
		if nd != victim && (second == nil || len(cl.onNode(insts, nd.url())) > len(cl.onNode(insts, second.url()))) {
			second = nd
		}
	}
	moved = cl.onNode(insts, second.url())
	stopped := time.Now()
	second.stop(t)
	took = cl.converge("stop of "+second.name, stopped, cl.reconnectedAway(moved, second.url()))
	t.Logf("stop of %s (had%s): converged in %s; now on:%s", second.name, names(moved), procMS(took), where())

	// 4. The node that A is on freezes (SIGSTOP: its connections stay open but nothing
	// answers, as when its host hangs or is cut off). Only the NATS client's pings notice
	// that (nats.Open: 5s interval, 2 outstanding), so meanwhile the other instances hear
	// nothing from A past down-after and drop its members; once A reconnects to the other
	// node, everything must come back.
	u, _ = a.natsServer()
	frozen := nodeOf(nodes, u)
	if frozen == nil {
		t.Fatalf("A's NATS server %q is none of the cluster's nodes", u)
	}
	moved = cl.onNode(insts, u)
	froze := time.Now()
	frozen.p.signal(t, syscall.SIGSTOP)
	took = cl.converge("freeze of "+frozen.name, froze, cl.reconnectedAway(moved, u))
	t.Logf("SIGSTOP of %s (had%s): converged in %s; now on:%s", frozen.name, names(moved), procMS(took), where())

	cl.reportBroadcasts()
}

// clusterLoad drives cursors and numbered broadcasts from every client from the test's
// goroutine, and checks presence against the truth: every client of a document sees every
// other client of it, and nobody else.
type clusterLoad struct {
	t       *testing.T
	clients []*nclient
	doc     map[*nclient]string
	tick    int
	phase   string
	sent    []sentBcast // every broadcast sent, with the phase it was sent in
}

type sentBcast struct {
	from  *nclient
	to    []*nclient // the other clients of the document when it was sent
	n     int
	phase string
}

func (cl *clusterLoad) add(c *nclient, doc string) {
	if cl.doc == nil {
		cl.doc = map[*nclient]string{}
	}
	cl.clients = append(cl.clients, c)
	cl.doc[c] = doc
}

// onNode returns the instances connected to the node at url.
func (cl *clusterLoad) onNode(insts []*collabdProc, url string) []*collabdProc {
	var out []*collabdProc
	for _, inst := range insts {
		if u, _ := inst.natsServer(); u == url {
			out = append(out, inst)
		}
	}
	return out
}

// reconnectedAway is a condition: every instance in moved logged a connection to another
// node than url.
func (cl *clusterLoad) reconnectedAway(moved []*collabdProc, url string) func() bool {
	return func() bool {
		for _, inst := range moved {
			if u, _ := inst.natsServer(); u == url || u == "" {
				return false
			}
		}
		return true
	}
}

func names(insts []*collabdProc) string {
	s := ""
	for _, inst := range insts {
		s += " " + inst.name
	}
	return s
}

// step sends one cursor from every client and, every fifth step, one numbered broadcast.
func (cl *clusterLoad) step() {
	cl.tick++
	for i, c := range cl.clients {
		c.mustBeOpen()
		c.send("cursor", map[string]int{"x": cl.tick, "y": i})
		if cl.tick%5 == 0 {
			n := len(cl.sent)
			sb := sentBcast{from: c, n: n, phase: cl.phase}
			for _, o := range cl.clients {
				if o != c && cl.doc[o] == cl.doc[c] {
					sb.to = append(sb.to, o)
				}
			}
			cl.sent = append(cl.sent, sb)
			c.sendRef("broadcast", "b"+strconv.Itoa(n), map[string]any{"event": "n", "data": map[string]any{"sender": c.name, "n": n}})
		}
	}
}

// missingFrom lists the clients of doc absent from state.
func (cl *clusterLoad) missingFrom(state map[string]nentry, doc string) []string {
	var out []string
	for _, c := range cl.clients {
		if cl.doc[c] == doc {
			if e, ok := state[c.ID()]; !ok || e.User != c.name {
				out = append(out, c.name)
			}
		}
	}
	return out
}

// converged reports whether every client's presence view is the truth and every client
// has received, from every other client of its document, a cursor sent at or after step
// from.
func (cl *clusterLoad) converged(from int) (bool, string) {
	for _, c := range cl.clients {
		view := c.view()
		want := 0
		for _, o := range cl.clients {
			if cl.doc[o] != cl.doc[c] {
				continue
			}
			want++
			if e, ok := view[o.ID()]; !ok || e.User != o.name {
				return false, c.name + " does not see " + o.name
			}
			if o != c && c.cursorX(o.ID()) < from {
				return false, c.name + " has no fresh cursor of " + o.name
			}
		}
		if len(view) != want {
			return false, fmt.Sprintf("%s sees %d members, want %d", c.name, len(view), want)
		}
	}
	return true, ""
}

// converge keeps the load flowing until extra (if any) holds and the clients converged,
// and stayed so for a second (longer than down-after, so that a late eviction would show);
// it returns the time from since to the moment they converged for good. It fails the test
// after 30s, or when a client's connection ends.
func (cl *clusterLoad) converge(phase string, since time.Time, extra func() bool) time.Duration {
	cl.t.Helper()
	const hold, limit = time.Second, 30 * time.Second
	cl.phase = phase
	leaves0 := 0
	for _, c := range cl.clients {
		leaves0 += c.leaves()
	}
	from := cl.tick + 1
	var at time.Time // when the clients last became converged; zero while they are not
	why := ""
	for {
		cl.step()
		ok, reason := cl.converged(from)
		ok = ok && (extra == nil || extra())
		switch {
		case !ok:
			at, why = time.Time{}, reason
		case at.IsZero():
			at = time.Now()
		case time.Since(at) >= hold:
			leaves := -leaves0
			for _, c := range cl.clients {
				leaves += c.leaves()
			}
			cl.t.Logf("%s: %d transient leaves seen by clients (members that left and came back)", phase, leaves)
			return at.Sub(since)
		}
		if time.Since(since) > limit {
			cl.t.Fatalf("%s: no convergence within %s: %s", phase, limit, why)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// reportBroadcasts waits until every broadcast sent was acknowledged or lost for good, then
// logs, per phase, how many deliveries to the other clients of the sender's document were
// missing. There must be none, and none out of order: what a node's failure lost in flight, the receiving instance
// notices as a gap in the sender's numbering and has replayed (collab/replay.go).
func (cl *clusterLoad) reportBroadcasts() {
	cl.t.Helper()
	expected := func() (map[string]int, map[string]int) {
		want, missed := map[string]int{}, map[string]int{}
		got := map[*nclient]map[string]bool{}
		for _, c := range cl.clients {
			got[c] = map[string]bool{}
			for _, b := range c.broadcasts() {
				got[c][b.Data.Sender+"/"+strconv.Itoa(b.Data.N)] = true
			}
		}
		acked := map[*nclient]map[string]bool{}
		for _, c := range cl.clients {
			acked[c] = c.acked()
		}
		for _, s := range cl.sent {
			if !acked[s.from]["b"+strconv.Itoa(s.n)] {
				continue // not accepted by the server: not the server's to deliver
			}
			for _, c := range s.to {
				want[s.phase]++
				if !got[c][s.from.name+"/"+strconv.Itoa(s.n)] {
					missed[s.phase]++
				}
			}
		}
		return want, missed
	}
	// Delivery is asynchronous, and a replay may wait for the next broadcast or snapshot:
	// wait until nothing is missing or nothing changed for 3s.
	var want, missed map[string]int
	last, lastChange := -1, time.Now()
	for time.Since(lastChange) < 3*time.Second {
		want, missed = expected()
		total := 0
		for _, m := range missed {
			total += m
		}
		if total == 0 {
			break
		}
		if total != last {
			last, lastChange = total, time.Now()
		}
		time.Sleep(20 * time.Millisecond)
	}
	for phase, m := range missed {
		if m > 0 {
			cl.t.Errorf("%s: %d of %d broadcast deliveries missing", phase, m, want[phase])
		}
	}
	for _, c := range cl.clients { // one sender's broadcasts arrive in the order it sent them
		last := map[string]int{}
		for _, b := range c.broadcasts() {
			if n, ok := last[b.Data.Sender]; ok && b.Data.N <= n {
				cl.t.Errorf("%s got broadcast %d of %s after %d", c.name, b.Data.N, b.Data.Sender, n)
			}
			last[b.Data.Sender] = b.Data.N
		}
	}
	for phase, w := range want {
		cl.t.Logf("broadcasts during %q: %d deliveries expected, %d missing", phase, w, missed[phase])
	}
}
