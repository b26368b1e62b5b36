package web_test

import (
	"net/http"
	"testing"

	"collabd/collab/web"
)

// TestTrustedProxies: the per-address limit counts a trusted proxy's requests under the
// client address of X-Forwarded-For, and ignores the header from anyone else.
func TestTrustedProxies(t *testing.T) {
	xff := func(ip string) http.Header { return http.Header{"X-Forwarded-For": {ip + ", 10.9.9.9"}} }
	dialStatus := func(in *instance, h http.Header) int {
		t.Helper()
		c, resp, err := dial(t, in, "/ws/d?user=u", h)
		if err != nil {
			if resp == nil {
				t.Fatal(err)
			}
			return resp.StatusCode
		}
		c.expect("welcome")
		return http.StatusSwitchingProtocols
	}

	trusted := startCluster(t, 1, instanceOpts{web: web.Config{MaxConnsPerIP: 1, TrustedProxies: []string{"127.0.0.0/8"}}})[0]
	for _, step := range []struct {
		client string
		want   int
	}{
		{"203.0.113.1", http.StatusSwitchingProtocols},
		{"203.0.113.2", http.StatusSwitchingProtocols}, // another client behind the same proxy
		{"203.0.113.1", http.StatusTooManyRequests},    // the first one again: its own limit
	} {
		if got := dialStatus(trusted, xff(step.client)); got != step.want {
			t.Fatalf("via a trusted proxy, client %s: got %d, want %d", step.client, got, step.want)
		}
	}

	untrusted := startCluster(t, 1, instanceOpts{web: web.Config{MaxConnsPerIP: 1, TrustedProxies: []string{"192.0.2.0/24"}}})[0]
	if got := dialStatus(untrusted, xff("203.0.113.1")); got != http.StatusSwitchingProtocols {
		t.Fatalf("first connection: got %d, want 101", got)
	}
	// The sender is not a trusted proxy: its header is ignored, and it is one address.
	if got := dialStatus(untrusted, xff("203.0.113.2")); got != http.StatusTooManyRequests {
		t.Fatalf("untrusted sender claiming another client: got %d, want 429", got)
	}
}
