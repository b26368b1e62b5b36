package web_test

import (
	"strings"
	"testing"
	"time"

	"collabd/collab/web"
	"collabd/nats/natstest"
)

// A client that stops reading while broadcasts flow is closed as a slow consumer, and the
// server ends its connection without waiting for it to read: not after the write timeout
// (here a minute), but within CloseTimeout of the overflow.
func TestSlowConsumerEndedWithoutReading(t *testing.T) {
	o := instanceOpts{web: web.Config{QueueBytes: 64 << 10, WriteTimeout: time.Minute}}
	o.hub.MessageRate, o.hub.MessageBurst = 1e6, 1e6 // the fast sender must not be limited
	in := startCluster(t, 1, o)[0]
	slow := join(t, in, "stuck", "slow")
	fast := join(t, in, "stuck", "fast")
	watcher := join(t, in, "stuck", "watcher")
	slow.pause()
	blob := strings.Repeat("y", 8000)
	natstest.WaitFor(t, 20*time.Second, func() bool {
		fast.send("broadcast", "", map[string]any{"event": "blob", "data": blob})
		time.Sleep(time.Millisecond)
		return leftDoc(watcher, slow.id)
	})
	start := time.Now()
	natstest.WaitFor(t, 10*time.Second, func() bool { return metric(t, in, "collabd_connections") == 2 })
	t.Logf("connection ended %s after the eviction was seen, the client still not reading", time.Since(start).Round(time.Millisecond))
	slow.unpause()
	ce := slow.waitClose(15 * time.Second)
	t.Logf("the client, reading again, sees %v", ce)
	fast.send("ping", "ok?", nil)
	fast.until("pong", nil)
}
