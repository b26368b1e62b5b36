package main

import (
	"errors"
	"net/http"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// TestProcess runs collabd the way it is deployed (DESIGN.md section 5): a nats-server
// process and collabd instances as processes on loopback, and breaks them. The binaries are
// built once, into the parent test's directory.
func TestProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("starts nats-server and collabd processes")
	}
	bins := procBuild(t)
	t.Run("KillNine", func(t *testing.T) { testProcessKillNine(t, bins) })
	t.Run("NATSRestart", func(t *testing.T) { testProcessNATSRestart(t, bins) })
	t.Run("SIGTERM", func(t *testing.T) { testProcessSIGTERM(t, bins) })
	t.Run("DrainDelay", func(t *testing.T) { testProcessDrainDelay(t, bins) })
	t.Run("DrainDelaySecondSignal", func(t *testing.T) { testProcessDrainDelaySecondSignal(t, bins) })
	t.Run("StartBeforeNATS", func(t *testing.T) { testProcessStartBeforeNATS(t, bins) })
}

// procPair starts a nats-server and two instances with extra flags, and a member of doc on
// each that sees the other.
func procPair(t *testing.T, bins procBins, doc string, extra ...string) (ns *natsProc, a, b *collabdProc, alice, bob *nclient) {
	t.Helper()
	ns = startNatsProc(t, bins.natsServer)
	a = startCollabdProc(t, bins.collabd, "collabd-A", ns.url(), extra...)
	b = startCollabdProc(t, bins.collabd, "collabd-B", ns.url(), extra...)
	alice = ndial(t, a.base, doc, "alice")
	bob = ndial(t, b.base, doc, "bob")
	procPoll(t, 5*time.Second, "alice (on A) and bob (on B) see each other", func() bool {
		return alice.sees(bob.ID()) && bob.sees(alice.ID())
	})
	return ns, a, b, alice, bob
}

// testProcessKillNine: an instance that dies without a word (kill -9) is declared dead by
// the others after down-after, and its members leave everywhere.
func testProcessKillNine(t *testing.T, bins procBins) {
	_, a, b, alice, bob := procPair(t, bins, "doc-kill9")

	killed := time.Now()
	a.signal(t, syscall.SIGKILL)
	procPoll(t, 5*time.Second, "bob is told that alice left", func() bool {
		_, ok := bob.leftTime(alice.ID())
		return ok
	})
	at, _ := bob.leftTime(alice.ID())
	took := at.Sub(killed)
	t.Logf("eviction after kill -9: %s", procMS(took))
	// down-after 500ms, heartbeat 100ms: expect about 400-600ms, the last heartbeat having
	// come at most one interval before the kill, and the check running every interval.
	if took >= 5*time.Second {
		t.Errorf("leave %s after kill -9, want well under 5s", took)
	}

	err := a.waitExit(t, 5*time.Second)
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Errorf("A exited with %v, want killed by SIGKILL", err)
	}
	bob.mustBeOpen()
	if bob.sees(alice.ID()) {
		t.Errorf("bob still sees alice")
	}
	if code := procStatus(b.base + "/readyz"); code != http.StatusOK {
		t.Errorf("B /readyz: got %d, want 200", code)
	}
	// A newcomer on B does not see the dead instance's member either.
	carol := ndial(t, b.base, "doc-kill9", "carol")
	procPoll(t, 5*time.Second, "carol's presence.state", func() bool { return carol.first() != nil })
	if _, ok := carol.first()[alice.ID()]; ok {
		t.Errorf("carol's presence.state %v holds alice of the dead instance", carol.first())
	}
}

// testProcessNATSRestart: the NATS server dies and comes back on the same port; the
// instances report not ready meanwhile, keep their clients, and converge again: presence
// in both directions, a newcomer's state, and cursors.
func testProcessNATSRestart(t *testing.T, bins procBins) {
	const doc = "doc-nats-restart"
	ns, a, b, alice, bob := procPair(t, bins, doc)

	down := time.Now()
	ns.kill9(t)
	procPoll(t, 5*time.Second, "/readyz 503 on A and B", func() bool {
		return procStatus(a.base+"/readyz") == http.StatusServiceUnavailable &&
			procStatus(b.base+"/readyz") == http.StatusServiceUnavailable
	})
	t.Logf("not ready %s after NATS died", procMS(time.Since(down)))
	// Keep NATS down past down-after (500ms), so that the instances may have declared each
	// other dead, while checking that the clients stay connected all along.
	for time.Since(down) < time.Second {
		alice.mustBeOpen()
		bob.mustBeOpen()
		time.Sleep(20 * time.Millisecond)
	}
	if code := procStatus(a.base + "/readyz"); code != http.StatusServiceUnavailable {
		t.Errorf("A /readyz with NATS down: got %d, want 503", code)
	}
	t.Logf("during the outage bob sees alice: %v (the instances count each other dead after down-after)", bob.sees(alice.ID()))

	restarted := time.Now()
	ns.start(t)
	// Alice moves her cursor all along; converged means: presence in both directions and a
	// cursor sent after the restart arrived on B.
	x0, x := 1000, 1000
	deadline := restarted.Add(10 * time.Second)
	for {
		alice.send("cursor", map[string]int{"x": x, "y": 1})
		x++
		if alice.sees(bob.ID()) && bob.sees(alice.ID()) && bob.cursorX(alice.ID()) >= x0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no convergence within 10s of the NATS restart: bob sees alice %v, alice sees bob %v, bob's cursor of alice %d (want >= %d)",
				bob.sees(alice.ID()), alice.sees(bob.ID()), bob.cursorX(alice.ID()), x0)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("re-sync after NATS restart: %s", procMS(time.Since(restarted)))

	procPoll(t, 5*time.Second, "/readyz 200 on A and B", func() bool {
		return procStatus(a.base+"/readyz") == http.StatusOK && procStatus(b.base+"/readyz") == http.StatusOK
	})
	alice.mustBeOpen()
	bob.mustBeOpen()

	// A newcomer on B gets both in its first presence.state.
	carol := ndial(t, b.base, doc, "carol")
	procPoll(t, 5*time.Second, "carol's presence.state", func() bool { return carol.first() != nil })
	state := carol.first()
	for _, m := range []*nclient{alice, bob, carol} {
		if e, ok := state[m.ID()]; !ok || e.User != m.name {
			t.Errorf("carol's presence.state %v lacks %s (%s)", state, m.name, m.ID())
		}
	}
	// And alice, on the other instance, hears of carol.
	procPoll(t, 5*time.Second, "alice sees carol", func() bool { return alice.sees(carol.ID()) })
	// Cursors still flow from A to B, to the newcomer too.
	procPoll(t, 5*time.Second, "carol gets alice's cursor", func() bool {
		alice.send("cursor", map[string]int{"x": x, "y": 2})
		return carol.cursorX(alice.ID()) == x
	})
}

// testProcessSIGTERM: a graceful shutdown closes the instance's clients with 1012 and tells
// the other instances at once (a goodbye), then the process exits 0. Down-after is 10s
// here, so eviction cannot explain a prompt leave.
func testProcessSIGTERM(t *testing.T, bins procBins) {
	const shutdownTimeout = 5 * time.Second
	_, a, b, alice, bob := procPair(t, bins, "doc-sigterm",
		"-heartbeat", "1s", "-down-after", "10s", "-shutdown-timeout", shutdownTimeout.String())

	sent := time.Now()
	a.signal(t, syscall.SIGTERM)
	procPoll(t, 3*time.Second, "alice closed by A", alice.closed)
	code, closedAt := alice.closeCode()
	if code != 1012 {
		t.Errorf("alice's close: got %v, want close code 1012", alice.err())
	}
	t.Logf("close 1012 after SIGTERM: %s", procMS(closedAt.Sub(sent)))

	procPoll(t, 3*time.Second, "bob is told that alice left", func() bool {
		_, ok := bob.leftTime(alice.ID())
		return ok
	})
	at, _ := bob.leftTime(alice.ID())
	took := at.Sub(sent)
	t.Logf("leave after SIGTERM: %s", procMS(took))
	if took > 2*time.Second {
		t.Errorf("leave %s after SIGTERM, want well under 2s (the goodbye, not the 10s eviction)", took)
	}

	if err := a.waitExit(t, shutdownTimeout); err != nil {
		t.Errorf("A exited with %v, want status 0", err)
	}
	t.Logf("exit after SIGTERM: %s", procMS(time.Since(sent)))
	bob.mustBeOpen()
	if code := procStatus(b.base + "/readyz"); code != http.StatusOK {
		t.Errorf("B /readyz: got %d, want 200", code)
	}
}

// testProcessDrainDelay: with -drain-delay, SIGTERM first makes /readyz answer 503 while
// the instance goes on serving its clients and takes new ones, so that a load balancer can
// notice; once the delay passed the drain proceeds as without it (1012, leaves, exit 0).
func testProcessDrainDelay(t *testing.T, bins procBins) {
	const delay = 4 * time.Second
	_, a, _, alice, bob := procPair(t, bins, "doc-drain-delay",
		"-heartbeat", "1s", "-down-after", "10s", "-drain-delay", delay.String())

	sent := time.Now()
	a.signal(t, syscall.SIGTERM)
	procPoll(t, delay, "A /readyz 503", func() bool { return procStatus(a.base+"/readyz") == http.StatusServiceUnavailable })
	t.Logf("/readyz 503 after SIGTERM: %s", procMS(time.Since(sent)))
	if code := procStatus(a.base + "/healthz"); code != http.StatusOK {
		t.Errorf("A /healthz during the drain delay: got %d, want 200", code)
	}
	carol := ndial(t, a.base, "doc-drain-delay", "carol")
	procPoll(t, delay, "bob sees carol, who joined A during its drain delay", func() bool { return bob.sees(carol.ID()) })
	if alice.closed() || carol.closed() {
		t.Fatalf("a client of A closed during the drain delay: alice %v, carol %v", alice.err(), carol.err())
	}

	for _, c := range []*nclient{alice, carol} {
		procPoll(t, delay+5*time.Second, "A's client closed after the delay", c.closed)
		code, closedAt := c.closeCode()
		if code != 1012 {
			t.Errorf("close after the drain delay: got %v, want close code 1012", c.err())
		}
		t.Logf("close 1012 after SIGTERM with -drain-delay %s: %s", delay, procMS(closedAt.Sub(sent)))
	}
	procPoll(t, 3*time.Second, "bob is told that alice and carol left", func() bool {
		return !bob.sees(alice.ID()) && !bob.sees(carol.ID())
	})
	if err := a.waitExit(t, 10*time.Second); err != nil {
		t.Errorf("A exited with %v, want status 0", err)
	}
	bob.mustBeOpen()
}

// testProcessDrainDelaySecondSignal: a second signal cuts the drain delay short, as a
// second Ctrl-C does; the drain itself still happens.
func testProcessDrainDelaySecondSignal(t *testing.T, bins procBins) {
	_, a, _, alice, _ := procPair(t, bins, "doc-drain-twice", "-drain-delay", "10m")
	a.signal(t, syscall.SIGTERM)
	procPoll(t, 5*time.Second, "A /readyz 503", func() bool { return procStatus(a.base+"/readyz") == http.StatusServiceUnavailable })
	alice.mustBeOpen()
	sent := time.Now()
	a.signal(t, syscall.SIGINT)
	procPoll(t, 10*time.Second, "alice closed after the second signal", alice.closed)
	if code, _ := alice.closeCode(); code != 1012 {
		t.Errorf("alice's close: got %v, want close code 1012", alice.err())
	}
	if err := a.waitExit(t, 10*time.Second); err != nil {
		t.Errorf("A exited with %v, want status 0", err)
	}
	t.Logf("exit after the second signal: %s", procMS(time.Since(sent)))
}

// procMS formats d in milliseconds, for the figures the tests log.
func procMS(d time.Duration) string {
	return strconv.FormatFloat(float64(d)/float64(time.Millisecond), 'f', 1, 64) + " ms"
}

// testProcessStartBeforeNATS: an instance started while its NATS server is not up yet (a
// Procfile starts nats-server and the instances together; a NATS restart can coincide with
// a deploy) serves /healthz, reports /readyz 503 and keeps retrying in the background, as
// nats.Open promises, and joins the system once NATS is there.
func testProcessStartBeforeNATS(t *testing.T, bins procBins) {
	ns := &natsProc{bin: bins.natsServer, port: procFreePort(t)}
	a := startProcX(t, "collabd-A", bins.collabd, append([]string{"-nats", ns.url()}, procCollabdFlags...)...)
	// Longer than the 5s for which the hub waits for NATS to confirm its subscriptions.
	deadline := time.Now().Add(7 * time.Second)
	procPoll(t, 8*time.Second, "A listening for 7s with NATS down", func() bool {
		if a.exited() {
			t.Fatalf("A exited while NATS was down (%v), want it to keep retrying and answer /readyz 503", a.err)
		}
		return time.Now().After(deadline)
	})
	base := "http://" + a.out.listenAddr()
	if a.out.listenAddr() == "" {
		t.Fatalf("A did not log its listening address with NATS down")
	}
	if code := procStatus(base + "/healthz"); code != http.StatusOK {
		t.Errorf("A /healthz with NATS down: got %d, want 200", code)
	}
	if code := procStatus(base + "/readyz"); code != http.StatusServiceUnavailable {
		t.Errorf("A /readyz with NATS down: got %d, want 503", code)
	}

	ns.start(t)
	procPoll(t, 5*time.Second, "A /readyz 200 once NATS is up", func() bool { return procStatus(base+"/readyz") == http.StatusOK })
	b := startCollabdProc(t, bins.collabd, "collabd-B", ns.url())
	alice := ndial(t, base, "doc-late-nats", "alice")
	bob := ndial(t, b.base, "doc-late-nats", "bob")
	procPoll(t, 5*time.Second, "alice (on A) and bob (on B) see each other", func() bool {
		return alice.sees(bob.ID()) && bob.sees(alice.ID())
	})
}
