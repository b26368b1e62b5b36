package web_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"collabd/collab/web"
)

func apiGet(t *testing.T, u string, header http.Header) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// GET /api/docs/{doc}/presence answers the members across instances, even from an
// instance where the document has no member.
func TestAPIPresence(t *testing.T) {
	ins := startCluster(t, 2, instanceOpts{web: web.Config{JWTSecret: testSecret, Origins: []string{"https://app.example"}}})
	ann, _, err := dial(t, ins[0], "/ws/room-1?token="+token(t, "ann", time.Hour, nil), nil)
	if err != nil {
		t.Fatal(err)
	}
	ann.expect("welcome")
	ann.send("presence.track", "t", map[string]string{"name": "Ann"})
	ann.until("ok", nil)

	reader := http.Header{"Authorization": {"Bearer " + token(t, "backend", time.Hour, jwt.MapClaims{"write": false})}}
	status, body := apiGet(t, ins[1].url+"/api/docs/room-1/presence", reader)
	if status != http.StatusOK {
		t.Fatalf("presence: %d %s", status, body)
	}
	m := decodeMembers(t, json.RawMessage(body))
	if len(m) != 1 {
		t.Fatalf("presence %s, want ann alone", body)
	}
	for _, e := range m {
		if e.User != "ann" || string(e.State) != `{"name":"Ann"}` {
			t.Fatalf("presence %s, want ann with her state", body)
		}
	}
	if ins[1].hub.Docs() != 0 {
		t.Fatalf("instance B keeps %d documents open after the lookup, want 0", ins[1].hub.Docs())
	}
	status, body = apiGet(t, ins[1].url+"/api/docs/empty/presence?token="+token(t, "backend", time.Hour, nil), nil)
	if status != http.StatusOK || body != "{}" {
		t.Fatalf("presence of an empty document: %d %s, want 200 {}", status, body)
	}

	for _, tc := range []struct {
		name, path string
		header     http.Header
		want       int
	}{
		{"no token", "/api/docs/room-1/presence", nil, 401},
		{"bad token", "/api/docs/room-1/presence?token=x", nil, 401},
		{"other document", "/api/docs/room-1/presence?token=" + token(t, "b", time.Hour, jwt.MapClaims{"docs": []string{"team-*"}}), nil, 403},
		{"bad document id", "/api/docs/a%20b/presence?token=" + token(t, "b", time.Hour, nil), nil, 400},
		{"foreign origin", "/api/docs/room-1/presence", http.Header{"Origin": {"https://evil.example"}, "Authorization": reader["Authorization"]}, 403},
		{"allowed origin", "/api/docs/room-1/presence", http.Header{"Origin": {"https://app.example"}, "Authorization": reader["Authorization"]}, 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got, body := apiGet(t, ins[1].url+tc.path, tc.header); got != tc.want {
				t.Fatalf("got %d %s, want %d", got, body, tc.want)
			}
		})
	}
}

// POST /api/docs/{doc}/broadcast reaches every member, with the checks of the REST
// broadcast.
func TestAPIBroadcast(t *testing.T) {
	ins := startCluster(t, 2, instanceOpts{web: web.Config{JWTSecret: testSecret, Origins: []string{"https://app.example"}}})
	ann, _, err := dial(t, ins[0], "/ws/room-1?token="+token(t, "ann", time.Hour, nil), nil)
	if err != nil {
		t.Fatal(err)
	}
	ann.expect("welcome")
	writer := http.Header{"Authorization": {"Bearer " + token(t, "backend", time.Hour, nil)}}
	reader := http.Header{"Authorization": {"Bearer " + token(t, "ro", time.Hour, jwt.MapClaims{"write": false})}}
	u := ins[1].url + "/api/docs/room-1/broadcast"
	for _, tc := range []struct {
		name, body string
		header     http.Header
		want       int
	}{
		{"no token", `{"event":"e","data":1}`, nil, 401},
		{"read-only token", `{"event":"e","data":1}`, reader, 403},
		{"foreign origin", `{"event":"e","data":1}`, http.Header{"Origin": {"https://evil.example"}, "Authorization": writer["Authorization"]}, 403},
		{"not JSON", `{`, writer, 400},
		{"no event", `{"data":1}`, writer, 400},
		{"empty event", `{"event":"","data":1}`, writer, 400},
		{"invalid UTF-8", "{\"event\":\"e\",\"data\":\"\xff\"}", writer, 400},
		{"too large", `{"event":"e","data":"` + strings.Repeat("x", 17<<10) + `"}`, writer, 413},
		{"sent", `{"event":"note","data":{"n": 1}}`, writer, 202},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := post(t, u, tc.body, tc.header); got != tc.want {
				t.Fatalf("got HTTP %d, want %d", got, tc.want)
			}
		})
	}
	f := ann.until("broadcast", nil)
	if !strings.Contains(string(f.Payload), `"event":"note"`) || !strings.Contains(string(f.Payload), `"data":{"n":1}`) {
		t.Fatalf("broadcast %s, want note with {\"n\":1}", f.Payload)
	}
	ann.quiet("broadcast", 100*time.Millisecond)
}
