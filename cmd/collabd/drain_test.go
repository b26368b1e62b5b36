package main

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestRunDrainDelay: when the context ends, /readyz answers 503 for the drain delay while
// the instance still serves its clients and takes new ones; the close with 1012 comes when
// the delay is cut short (as a second signal does in main).
func TestRunDrainDelay(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	skip := make(chan struct{})
	logs := &procLogBuf{}
	done := make(chan error, 1)
	go func() { // ends when ctx does and the delay is skipped
		done <- run(withSkipDelay(ctx, skip), []string{"-addr", "127.0.0.1:0", "-nats-listen", "off", "-drain-delay", "1m"}, runEnv(nil), logs)
	}()
	skipped, returned := false, false
	t.Cleanup(func() {
		cancel()
		if !skipped {
			close(skip)
		}
		if !returned {
			select {
			case <-done:
			case <-time.After(15 * time.Second):
				t.Errorf("run did not return")
			}
		}
		if t.Failed() {
			t.Logf("run's log:\n%s", logs)
		}
	})
	procPoll(t, 10*time.Second, "collabd listening log line", func() bool { return logs.listenAddr() != "" })
	base := "http://" + logs.listenAddr()
	alice := ndial(t, base, "doc", "alice")
	procPoll(t, 5*time.Second, "alice's presence.state", func() bool { return alice.first() != nil })

	cancel()
	procPoll(t, 5*time.Second, "/readyz 503 during the drain delay", func() bool {
		return procStatus(base+"/readyz") == http.StatusServiceUnavailable
	})
	if code := procStatus(base + "/healthz"); code != http.StatusOK {
		t.Errorf("/healthz during the drain delay: got %d, want 200", code)
	}
	_, metrics, _ := procGet(base + "/metrics")
	if !strings.Contains(metrics, "collabd_ready 0") {
		t.Errorf("collabd_ready during the drain delay:\n%s", grepLines(metrics, "collabd_ready"))
	}
	bob := ndial(t, base, "doc", "bob") // a newcomer is still served
	procPoll(t, 5*time.Second, "alice and bob see each other during the drain delay", func() bool {
		return alice.sees(bob.ID()) && bob.sees(alice.ID())
	})
	alice.mustBeOpen()

	close(skip)
	skipped = true
	for _, c := range []*nclient{alice, bob} {
		procPoll(t, 5*time.Second, "client closed once the delay is skipped", c.closed)
		if code, _ := c.closeCode(); code != 1012 {
			t.Errorf("close after the drain delay: got %v, want close code 1012", c.err())
		}
	}
	select {
	case err := <-done:
		returned = true
		if err != nil {
			t.Errorf("run returned %v, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("run did not return after the drain")
	}
}
