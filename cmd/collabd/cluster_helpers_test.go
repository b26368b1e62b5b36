package main

import (
	"encoding/json"
	"net/http"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// This file holds the helpers of cluster_test.go and rolling_test.go: a nats-server cluster
// of processes on loopback, which NATS server a collabd process is connected to, the
// broadcasts an nclient received, and figures for the logs.

// natsNode is one nats-server process of a cluster, on fixed loopback ports (client, route
// and monitoring), so that it can be killed and started again as the same member.
type natsNode struct {
	name                  string
	bin                   string
	port, cport, httpPort int
	routes                []string // the route URLs of every member, itself included
	p                     *procX   // the current process
}

// startNatsCluster starts n clustered nats-servers and waits until each has a route to
// every other.
func startNatsCluster(t *testing.T, bin string, n int) []*natsNode {
	t.Helper()
	nodes := make([]*natsNode, n)
	var routes []string
	for i := range nodes {
		nodes[i] = &natsNode{name: "nats-" + strconv.Itoa(i+1), bin: bin,
			port: procFreePort(t), cport: procFreePort(t), httpPort: procFreePort(t)}
		routes = append(routes, "nats-route://127.0.0.1:"+strconv.Itoa(nodes[i].cport))
	}
	for _, nd := range nodes {
		nd.routes = routes
		nd.start(t)
	}
	waitRoutes(t, nodes)
	return nodes
}

func (nd *natsNode) url() string { return "nats://127.0.0.1:" + strconv.Itoa(nd.port) }

// start runs the node (again) and waits until it accepts clients; its routes to the others
// come up in the background (waitRoutes).
func (nd *natsNode) start(t *testing.T) {
	t.Helper()
	nd.p = startProcX(t, nd.name, nd.bin,
		"-a", "127.0.0.1", "-p", strconv.Itoa(nd.port), "-m", strconv.Itoa(nd.httpPort),
		"-n", nd.name, "--cluster_name", "collabd-test",
		"--cluster", "nats://127.0.0.1:"+strconv.Itoa(nd.cport),
		"--routes", strings.Join(nd.routes, ","))
	waitAccepting(t, nd.p, nd.name, nd.port)
}

// kill9 kills the node without a word and waits until it is gone.
func (nd *natsNode) kill9(t *testing.T) {
	t.Helper()
	nd.p.signal(t, syscall.SIGKILL)
	nd.p.waitExit(t, 5*time.Second)
}

// stop shuts the node down gracefully (SIGTERM) and waits until it is gone.
func (nd *natsNode) stop(t *testing.T) {
	t.Helper()
	nd.p.signal(t, syscall.SIGTERM)
	nd.p.waitExit(t, 10*time.Second)
}

// peers returns the names of the cluster members the node has a route to, or nil when its
// monitoring port does not answer.
func (nd *natsNode) peers() []string {
	code, body, err := procGet("http://127.0.0.1:" + strconv.Itoa(nd.httpPort) + "/routez")
	if err != nil || code != http.StatusOK {
		return nil
	}
	var rz struct {
		Routes []struct {
			RemoteName string `json:"remote_name"`
		} `json:"routes"`
	}
	if json.Unmarshal([]byte(body), &rz) != nil {
		return nil
	}
	var names []string
	for _, r := range rz.Routes { // one peer may have several routes (a route pool)
		if !slices.Contains(names, r.RemoteName) {
			names = append(names, r.RemoteName)
		}
	}
	sort.Strings(names)
	return names
}

// waitRoutes waits until every node in up has a route to every other node in up.
func waitRoutes(t *testing.T, up []*natsNode) {
	t.Helper()
	procPoll(t, 15*time.Second, "full mesh of routes", func() bool {
		for _, nd := range up {
			got := nd.peers()
			for _, other := range up {
				if other != nd && !slices.Contains(got, other.name) {
					return false
				}
			}
		}
		return true
	})
}

// clusterURLs is the -nats value that names every node.
func clusterURLs(nodes []*natsNode) string {
	urls := make([]string, len(nodes))
	for i, nd := range nodes {
		urls[i] = nd.url()
	}
	return strings.Join(urls, ",")
}

// procNATSConnRE finds the server of the "nats connected" and "nats reconnected" log lines.
var procNATSConnRE = regexp.MustCompile(`nats (?:re)?connected"?[ ,].*?server"?[=:]"?(nats://[^\s",]+)`)

// natsServer returns the URL of the NATS server the instance last logged a connection to,
// and how many (re)connections it logged.
func (p *collabdProc) natsServer() (string, int) {
	m := procNATSConnRE.FindAllStringSubmatch(p.out.String(), -1)
	if len(m) == 0 {
		return "", 0
	}
	return m[len(m)-1][1], len(m)
}

// nodeOf returns the node whose URL is u, or nil.
func nodeOf(nodes []*natsNode, u string) *natsNode {
	for _, nd := range nodes {
		if nd.url() == u {
			return nd
		}
	}
	return nil
}

// nbcast is a broadcast as a test client received it; the tests number them in data.
type nbcast struct {
	From  string `json:"from"`
	Event string `json:"event"`
	Data  struct {
		Sender string `json:"sender"`
		N      int    `json:"n"`
	} `json:"data"`
}

// broadcasts returns the numbered broadcasts received so far, in order.
func (c *nclient) broadcasts() []nbcast {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []nbcast
	for _, f := range c.frames {
		var b nbcast
		if f.Type == "broadcast" && json.Unmarshal(f.Payload, &b) == nil {
			out = append(out, b)
		}
	}
	return out
}

// acked returns the refs of the ok frames received so far.
func (c *nclient) acked() map[string]bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]bool{}
	for _, f := range c.frames {
		if f.Type == "ok" && f.Ref != "" {
			out[f.Ref] = true
		}
	}
	return out
}

// view returns a copy of the client's presence view.
func (c *nclient) view() map[string]nentry {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]nentry, len(c.members))
	for id, e := range c.members {
		out[id] = e
	}
	return out
}

// leaves returns how many leaves the client was told of.
func (c *nclient) leaves() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.leftAt)
}

// durStats summarises durations for the logs: n, min, median, p95 and max.
func durStats(ds []time.Duration) string {
	if len(ds) == 0 {
		return "n=0"
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	q := func(f float64) time.Duration { return s[int(f*float64(len(s)-1))] }
	return "n=" + strconv.Itoa(len(s)) + " min " + procMS(s[0]) + ", median " + procMS(q(0.5)) +
		", p95 " + procMS(q(0.95)) + ", max " + procMS(s[len(s)-1])
}
