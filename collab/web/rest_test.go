package web_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"collabd/collab/web"
)

func post(t *testing.T, url, body string, header http.Header) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header = header.Clone()
	if req.Header == nil {
		req.Header = http.Header{}
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestRESTBroadcast(t *testing.T) {
	ins := startCluster(t, 2, instanceOpts{web: web.Config{JWTSecret: testSecret}})
	c, _, err := dial(t, ins[1], "/ws/room-1?token="+token(t, "ann", time.Hour, nil), nil)
	if err != nil {
		t.Fatal(err)
	}
	c.expect("welcome")
	writer := http.Header{"Apikey": {token(t, "backend", time.Hour, nil)}}
	reader := http.Header{"Authorization": {"Bearer " + token(t, "ro", time.Hour, jwt.MapClaims{"write": false})}}
	cases := []struct {
		name, path, body string
		header           http.Header
		want             int
	}{
		{"no token", "/realtime/v1/api/broadcast", `{"messages":[{"topic":"room-1","event":"e","payload":{}}]}`, nil, 401},
		{"read-only token", "/realtime/v1/api/broadcast", `{"messages":[{"topic":"room-1","event":"e","payload":{}}]}`, reader, 403},
		{"not JSON", "/api/broadcast", `{`, writer, 400},
		{"bad topic", "/api/broadcast", `{"messages":[{"topic":"a b","event":"e","payload":{}}]}`, writer, 400},
		{"no event", "/api/broadcast", `{"messages":[{"topic":"room-1","payload":{}}]}`, writer, 400},
		{"no messages", "/api/broadcast", `{"messages":[]}`, writer, 400},
		{"invalid UTF-8 in the payload", "/api/broadcast", "{\"messages\":[{\"topic\":\"room-1\",\"event\":\"e\",\"payload\":{\"s\":\"\xff\"}}]}", writer, 400},
		{"invalid UTF-8 in the httpSend payload", "/api/broadcast/room-1/events/e", "{\"s\":\"\xfe\"}", writer, 400},
		{"invalid UTF-8 in the event", "/api/broadcast/room-1/events/%FF", `{}`, writer, 400},
		{"too large", "/api/broadcast/room-1/events/e", `{"s":"` + strings.Repeat("x", 17<<10) + `"}`, writer, 413},
		{"sent", "/realtime/v1/api/broadcast", `{"messages":[{"topic":"room-1","event":"note","payload":{"n":1}},{"topic":"realtime:room-1","event":"note","payload":{"n":2}}]}`, writer, 202},
		{"httpSend form", "/realtime/v1/api/broadcast/room-1/events/note", `{"n":3}`, writer, 202},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := post(t, ins[0].url+tc.path, tc.body, tc.header); got != tc.want {
				t.Fatalf("got HTTP %d, want %d", got, tc.want)
			}
		})
	}
	// Sent through instance A, received on instance B, in order; nothing of the refused.
	for _, want := range []string{`"data":{"n":1}`, `"data":{"n":2}`, `"data":{"n":3}`} {
		if f := c.until("broadcast", nil); !strings.Contains(string(f.Payload), want) || !strings.Contains(string(f.Payload), `"event":"note"`) {
			t.Fatalf("broadcast %s, want note with %s", f.Payload, want)
		}
	}
	c.quiet("broadcast", 100*time.Millisecond)
}

// With an origin list, a web page of another origin cannot post through a visitor's
// browser; requests without an Origin header (backends) still can.
func TestRESTOrigins(t *testing.T) {
	in := startCluster(t, 1, instanceOpts{web: web.Config{Origins: []string{"https://app.example"}}})[0]
	body := `{"messages":[{"topic":"room-1","event":"e","payload":{}}]}`
	for _, tc := range []struct {
		origin string
		want   int
	}{{"https://evil.example", 403}, {"https://app.example", 202}, {"", 202}} {
		h := http.Header{}
		if tc.origin != "" {
			h.Set("Origin", tc.origin)
		}
		if got := post(t, in.url+"/api/broadcast", body, h); got != tc.want {
			t.Errorf("origin %q: got HTTP %d, want %d", tc.origin, got, tc.want)
		}
	}
}
