package web_test

import (
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"collabd/collab"
	"collabd/collab/web"
	"collabd/nats/natstest"
)

// scrape returns the /metrics page of in.
func scrape(t *testing.T, in *instance) string {
	t.Helper()
	resp, err := http.Get(in.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s", resp.Status)
	}
	return string(body)
}

// sample returns the value of the series named exactly series (name and labels, as the
// text format writes them), or -1 when the page does not list it.
func sample(page, series string) float64 {
	for _, line := range strings.Split(page, "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				return -1
			}
			return f
		}
	}
	return -1
}

// metricsInstance starts an instance whose hub reports snapshots and syncs to its metrics,
// as cmd/collabd wires them.
func metricsInstance(t *testing.T, natsURL string) *instance {
	m := web.NewMetrics()
	return startInstance(t, natsURL, instanceOpts{
		web: web.Config{Metrics: m},
		hub: collab.Config{OnSnapshot: m.Snapshot, OnSync: m.Sync},
	})
}

// A fresh instance lists every family, and every known label of each labelled counter, at
// zero: an operator can alert on them from the first scrape.
func TestMetricsAtFirstScrape(t *testing.T) {
	ns := natstest.NewServer(t)
	in := metricsInstance(t, ns.URL())
	page := scrape(t, in)
	var want []string
	for _, typ := range []string{"cursor", "presence.track", "presence.untrack", "broadcast", "ping", "auth", "invalid"} {
		want = append(want, `collabd_frames_received_total{protocol="native",type="`+typ+`"}`)
	}
	for _, typ := range []string{"heartbeat", "phx_join", "phx_leave", "access_token", "broadcast", "presence", "other", "invalid"} {
		want = append(want, `collabd_frames_received_total{protocol="phoenix",type="`+typ+`"}`)
	}
	// The close table of collab/errors.go and docs/protocol.md.
	for _, code := range []string{"1000", "1009", "1011", "1012", "4000", "4001", "4003", "4008", "4029"} {
		want = append(want, `collabd_closes_total{code="`+code+`"}`)
	}
	for _, r := range []string{
		`reason="bad_document",status="400"`, `reason="bad_vsn",status="400"`, `reason="bad_user",status="400"`,
		`reason="not_websocket",status="426"`, `reason="token",status="401"`,
		`reason="origin",status="403"`, `reason="document",status="403"`,
		`reason="conn_limit",status="429"`, `reason="unavailable",status="503"`,
	} {
		want = append(want, `collabd_upgrades_refused_total{`+r+`}`)
	}
	want = append(want,
		"collabd_presence_snapshot_bytes_count", "collabd_sync_seconds_count",
		"collabd_nats_reconnects_total", "collabd_connections", "collabd_sessions", "collabd_documents",
	)
	for _, series := range want {
		if got := sample(page, series); got != 0 {
			t.Errorf("%s = %v at the first scrape, want 0 (-1: missing)", series, got)
		}
	}
	if got := sample(page, "collabd_ready"); got != 1 {
		t.Errorf("collabd_ready = %v, want 1", got)
	}
}

// Traffic moves the counters and histograms: frames by type, a refusal by reason, a close by
// code, a sync on the joining instance and a snapshot from the instance that answers it.
func TestMetricsCountTraffic(t *testing.T) {
	ns := natstest.NewServer(t)
	a := metricsInstance(t, ns.URL())
	b := metricsInstance(t, ns.URL())
	natstest.WaitFor(t, 5*time.Second, func() bool { return len(a.hub.Peers()) == 1 && len(b.hub.Peers()) == 1 })

	alice := join(t, a, "doc", "alice")
	alice.expect("presence.state")
	alice.send("cursor", "", map[string]float64{"x": 1})
	alice.send("ping", "p1", nil)
	alice.expect("pong")
	bob := join(t, b, "doc", "bob")
	bob.expect("presence.state")
	pa := scrape(t, a)
	for series, want := range map[string]float64{
		`collabd_frames_received_total{protocol="native",type="cursor"}`: 1,
		`collabd_frames_received_total{protocol="native",type="ping"}`:   1,
		"collabd_connections": 1,
	} {
		if got := sample(pa, series); got != want {
			t.Errorf("a: %s = %v, want %v", series, got, want)
		}
	}
	// a answered b's sync with its snapshot (alice); b's join waited for a. Both are
	// recorded just after the fact, so wait for them.
	natstest.WaitFor(t, 5*time.Second, func() bool {
		return sample(scrape(t, a), "collabd_presence_snapshot_bytes_count") >= 1
	})
	if got := sample(scrape(t, a), "collabd_presence_snapshot_bytes_sum"); got <= 0 {
		t.Errorf("a: collabd_presence_snapshot_bytes_sum = %v, want the bytes of alice's snapshot", got)
	}
	natstest.WaitFor(t, 5*time.Second, func() bool {
		return sample(scrape(t, b), "collabd_sync_seconds_count") >= 1
	})

	resp, err := http.Get(a.url + "/ws/doc")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	alice.sendUntilClosed([]byte("not json"), 25) // more bad frames in a row than allowed
	if ce := alice.waitClose(5 * time.Second); ce == nil || ce.Code != collab.CodeProtocol {
		t.Fatalf("close after bad frames: %v, want %d", ce, collab.CodeProtocol)
	}
	natstest.WaitFor(t, 5*time.Second, func() bool {
		return sample(scrape(t, a), `collabd_closes_total{code="4000"}`) == 1
	})
	pa = scrape(t, a)
	for series, want := range map[string]float64{
		`collabd_upgrades_refused_total{reason="not_websocket",status="426"}`: 1,
		`collabd_frames_received_total{protocol="native",type="invalid"}`:     21,
	} {
		if got := sample(pa, series); got != want {
			t.Errorf("a: %s = %v, want %v", series, got, want)
		}
	}
}

// A NATS server that goes away and comes back counts as one reconnection.
func TestMetricsNATSReconnects(t *testing.T) {
	ns := natstest.NewServer(t)
	in := metricsInstance(t, ns.URL())
	ns.Stop()
	natstest.WaitFor(t, 10*time.Second, func() bool { return !in.bus.Connected() })
	if got := sample(scrape(t, in), "collabd_ready"); got != 0 {
		t.Errorf("collabd_ready = %v without NATS, want 0", got)
	}
	ns.Start()
	natstest.WaitFor(t, 10*time.Second, func() bool {
		return sample(scrape(t, in), "collabd_nats_reconnects_total") == 1
	})
}
