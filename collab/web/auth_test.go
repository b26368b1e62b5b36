package web_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"collabd/collab/web"
)

const testSecret = "test-secret"

func token(t *testing.T, sub string, ttl time.Duration, extra jwt.MapClaims) string {
	t.Helper()
	c := jwt.MapClaims{"sub": sub, "exp": time.Now().Add(ttl).Unix()}
	for k, v := range extra {
		c[k] = v
	}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString([]byte(testSecret))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func authInstance(t *testing.T) *instance {
	return startCluster(t, 1, instanceOpts{web: web.Config{
		JWTSecret:   testSecret,
		AuthTimeout: 300 * time.Millisecond,
		Origins:     []string{"https://app.example"},
	}})[0]
}

func TestAuthUpgradeRefusals(t *testing.T) {
	in := authInstance(t)
	wrongKey, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": "x", "exp": time.Now().Add(time.Hour).Unix()}).SignedString([]byte("other"))
	cases := []struct {
		name   string
		path   string
		header http.Header
		want   int
	}{
		{"bad signature", "/ws/d?token=" + wrongKey, nil, http.StatusUnauthorized},
		{"expired", "/ws/d?token=" + token(t, "ann", -time.Minute, nil), nil, http.StatusUnauthorized},
		{"no subject", "/ws/d?token=" + token(t, "", time.Hour, nil), nil, http.StatusUnauthorized},
		{"document not allowed", "/ws/secret?token=" + token(t, "ann", time.Hour, jwt.MapClaims{"docs": []string{"team-1:*"}}), nil, http.StatusForbidden},
		{"bearer header, bad", "/ws/d", http.Header{"Authorization": {"Bearer nonsense"}}, http.StatusUnauthorized},
		{"origin not allowed", "/ws/d?token=" + token(t, "ann", time.Hour, nil), http.Header{"Origin": {"https://evil.example"}}, http.StatusForbidden},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, resp, err := dial(t, in, tc.path, tc.header)
			if err == nil || resp == nil || resp.StatusCode != tc.want {
				t.Fatalf("got %v %v, want HTTP %d", resp, err, tc.want)
			}
		})
	}
	for _, path := range []string{
		"/ws/team-1:doc?token=" + token(t, "ann", time.Hour, jwt.MapClaims{"docs": []string{"team-1:*"}}),
	} {
		c, resp, err := dial(t, in, path, http.Header{"Origin": {"https://app.example"}})
		if err != nil {
			t.Fatalf("%s: %v %v", path, err, resp)
		}
		if w := c.expect("welcome"); !strings.Contains(string(w.Payload), `"user":"ann"`) {
			t.Fatalf("welcome %s, want the token's subject as user", w.Payload)
		}
	}
	// With a Bearer header instead of the query.
	c, _, err := dial(t, in, "/ws/d?user=ignored", http.Header{"Authorization": {"Bearer " + token(t, "bob", time.Hour, nil)}})
	if err != nil {
		t.Fatal(err)
	}
	if w := c.expect("welcome"); !strings.Contains(string(w.Payload), `"user":"bob"`) {
		t.Fatalf("welcome %s, want user bob from the token, not the query", w.Payload)
	}
}

func TestAuthFirstMessage(t *testing.T) {
	in := authInstance(t)
	c, _, err := dial(t, in, "/ws/d", nil)
	if err != nil {
		t.Fatal(err)
	}
	c.send("auth", "a1", map[string]string{"token": token(t, "ann", time.Hour, nil)})
	if f := c.expect("ok"); f.Ref != "a1" {
		t.Fatalf("ok ref %q, want a1", f.Ref)
	}
	c.expect("welcome")
	c.expect("presence.state")

	silent, _, err := dial(t, in, "/ws/d", nil)
	if err != nil {
		t.Fatal(err)
	}
	if ce := silent.waitClose(5 * time.Second); ce == nil || ce.Code != 4001 {
		t.Fatalf("no auth message: close %v, want 4001", ce)
	}
	bad, _, _ := dial(t, in, "/ws/d", nil)
	bad.send("auth", "", map[string]string{"token": "nonsense"})
	if ce := bad.waitClose(5 * time.Second); ce == nil || ce.Code != 4001 {
		t.Fatalf("bad token: close %v, want 4001", ce)
	}
}

func TestAuthExpiryRefreshAndReadOnly(t *testing.T) {
	in := authInstance(t)
	c, _, err := dial(t, in, "/ws/d?token="+token(t, "ann", 2*time.Second, nil), nil)
	if err != nil {
		t.Fatal(err)
	}
	c.expect("welcome")
	c.send("auth", "r1", map[string]string{"token": token(t, "ann", time.Hour, nil)})
	c.until("ok", func(f frame) bool { return f.Ref == "r1" })
	// The refreshed token outlives the first one: still connected after it expired.
	time.Sleep(2500 * time.Millisecond) // the point is that time passes
	c.send("ping", "p", nil)
	c.until("pong", nil)
	c.send("auth", "", map[string]string{"token": token(t, "mallory", time.Hour, nil)})
	if ce := c.waitClose(5 * time.Second); ce == nil || ce.Code != 4003 {
		t.Fatalf("refresh for another user: close %v, want 4003", ce)
	}

	short, _, err := dial(t, in, "/ws/d?token="+token(t, "bob", time.Second, nil), nil)
	if err != nil {
		t.Fatal(err)
	}
	short.expect("welcome")
	if ce := short.waitClose(5 * time.Second); ce == nil || ce.Code != 4001 || ce.Text != "token expired" {
		t.Fatalf("expired mid-connection: close %v, want 4001 token expired", ce)
	}

	ro, _, err := dial(t, in, "/ws/d?token="+token(t, "viewer", time.Hour, jwt.MapClaims{"write": false}), nil)
	if err != nil {
		t.Fatal(err)
	}
	ro.expect("welcome")
	ro.send("broadcast", "b1", map[string]any{"event": "x"})
	if f := ro.until("error", nil); f.Ref != "b1" || !strings.Contains(string(f.Payload), `"forbidden"`) {
		t.Fatalf("read-only broadcast: %s %s, want forbidden", f.Ref, f.Payload)
	}
	ro.send("presence.track", "t1", map[string]any{"name": "Viewer"})
	ro.until("ok", func(f frame) bool { return f.Ref == "t1" })
}
