package web_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"collabd/collab/web"
)

// Tests of who a member is and how long its token holds: identities from tokens, per-channel
// expiry and permissions, the edges of exp, and the bounds on identity strings.

func authOn(t *testing.T) *instance {
	return startCluster(t, 1, instanceOpts{web: web.Config{JWTSecret: testSecret}})[0]
}

// anonKey is a token without sub, as Supabase's anon key is.
func anonKey(t *testing.T) string {
	t.Helper()
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"role": "anon", "exp": time.Now().Add(time.Hour).Unix()}).SignedString([]byte(testSecret))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// phxJoin is a vsn 2.0.0 phx_join frame.
func phxJoin(ref, topic, config, accessToken string) string {
	payload := `{"config":` + config
	if accessToken != "" {
		payload += `,"access_token":"` + accessToken + `"`
	}
	return fmt.Sprintf(`[%q,%q,%q,"phx_join",%s}]`, ref, ref, topic, payload)
}

// expectUntil reads frames, text or binary, until one contains want, and fails when one
// contains never first.
func (p *phx) expectUntil(want, never string) string {
	p.t.Helper()
	p.ws.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		_, data, err := p.ws.ReadMessage()
		if err != nil {
			p.t.Fatalf("waiting for %q: %v", want, err)
		}
		s := string(data)
		if never != "" && strings.Contains(s, never) {
			p.t.Fatalf("got %q before %q", s, want)
		}
		if strings.Contains(s, want) {
			return s
		}
	}
}

func TestPhoenixMemberIsTheTokenSubject(t *testing.T) {
	in := authOn(t)
	watcher, _, err := dial(t, in, "/ws/room?token="+token(t, "watcher", time.Hour, nil), nil)
	if err != nil {
		t.Fatal(err)
	}
	watcher.expect("welcome")
	watcher.expect("presence.state")

	p := dialPhx(t, in, "apikey="+anonKey(t))
	mallory := token(t, "mallory", time.Hour, nil)
	p.send(phxJoin("1", "realtime:room", `{"presence":{"key":"alice"}}`, mallory))
	p.expect(`["1","1","realtime:room","phx_reply",{"status":"error"`, `presence key \"alice\" is not this token's subject`)
	p.send(phxJoin("2", "realtime:room", `{"presence":{"key":""}}`, mallory))
	p.expect(`["2","2","realtime:room","phx_reply",{"status":"ok"`)
	p.send(`["2","3","realtime:room","presence",{"type":"presence","event":"track","payload":{"name":"Alice"}}]`)
	p.expect(`"presence_diff",{"joins":{"mallory":`)
	d := decodeDiff(t, watcher.until("presence.diff", nil).Payload)
	for _, m := range d.Joins {
		if m.User != "mallory" {
			t.Fatalf("native member sees user %q, want mallory (the token's sub)", m.User)
		}
	}

	// The anon key (no sub) may not choose a key; without one it shows as a random key.
	anon := dialPhx(t, in, "apikey="+anonKey(t))
	anon.send(phxJoin("1", "realtime:room", `{"presence":{"key":"alice"}}`, ""))
	anon.expect(`["1","1","realtime:room","phx_reply",{"status":"error"`, `this token has no sub`)
	anon.send(phxJoin("2", "realtime:room", `{}`, ""))
	anon.expect(`["2","2","realtime:room","phx_reply",{"status":"ok"`)
	anon.send(`["2","3","realtime:room","presence",{"type":"presence","event":"track","payload":{"name":"Alice"}}]`)
	d = decodeDiff(t, watcher.until("presence.diff", nil).Payload)
	for _, m := range d.Joins {
		if m.User == "alice" || len(m.User) != 32 {
			t.Fatalf("anon member shows as %q, want a random key", m.User)
		}
	}
}

func TestIdentityStringsBounded(t *testing.T) {
	long := strings.Repeat("u", 129)
	off := startCluster(t, 1, instanceOpts{})[0]
	for _, user := range []string{long, "a%00b", "%FF"} {
		_, resp, err := dial(t, off, "/ws/d?user="+user, nil)
		if err == nil || resp == nil || resp.StatusCode != http.StatusBadRequest {
			t.Errorf("user %q: got %v %v, want HTTP 400", user, resp, err)
		}
	}
	join(t, off, "d", strings.Repeat("u", 128)).expect("presence.state")
	p := dialPhx(t, off, "")
	p.send(phxJoin("1", "realtime:d", `{"presence":{"key":"`+long+`"}}`, ""))
	p.expect(`["1","1","realtime:d","phx_reply",{"status":"error"`, `bad presence key: user id is longer than 128 bytes`)

	on := authOn(t)
	_, resp, err := dial(t, on, "/ws/d?token="+token(t, long, time.Hour, nil), nil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("sub of 129 bytes: got %v %v, want HTTP 401", resp, err)
	}
	// With auth on the user query is ignored, whatever it holds.
	c, _, err := dial(t, on, "/ws/d?user="+long+"&token="+token(t, "ann", time.Hour, nil), nil)
	if err != nil {
		t.Fatal(err)
	}
	c.expect("welcome")
}

func TestPhoenixTokenExpiresPerChannel(t *testing.T) {
	in := authOn(t)
	secretWriter, _, err := dial(t, in, "/ws/secret?token="+token(t, "bob", time.Hour, nil), nil)
	if err != nil {
		t.Fatal(err)
	}
	openWriter, _, err := dial(t, in, "/ws/open?token="+token(t, "bob", time.Hour, nil), nil)
	if err != nil {
		t.Fatal(err)
	}
	secretWriter.expect("welcome")
	openWriter.expect("welcome")

	p := dialPhx(t, in, "")
	short := token(t, "ann", 2*time.Second, jwt.MapClaims{"docs": []string{"secret"}})
	p.send(phxJoin("1", "realtime:secret", `{}`, short))
	p.expect(`["1","1","realtime:secret","phx_reply",{"status":"ok"`)
	p.send(phxJoin("2", "realtime:open", `{}`, token(t, "ann", time.Hour, nil)))
	p.expect(`["2","2","realtime:open","phx_reply",{"status":"ok"`)

	p.expect(`["1",null,"realtime:secret","system",{"extension":"system","status":"error","message":"Token has expired"`)
	p.expect(`["1","1","realtime:secret","phx_close",{}]`)
	secretWriter.send("broadcast", "s", map[string]any{"event": "leaked", "data": 1})
	secretWriter.until("ok", func(f frame) bool { return f.Ref == "s" })
	openWriter.send("broadcast", "o", map[string]any{"event": "still-here", "data": 2})
	p.expectUntil("still-here", "leaked")
}

func TestPhoenixRefreshChangesTheChannel(t *testing.T) {
	in := authOn(t)
	p := dialPhx(t, in, "")
	p.send(phxJoin("1", "realtime:w", `{"broadcast":{"ack":true}}`, token(t, "ann", time.Hour, nil)))
	p.expect(`["1","1","realtime:w","phx_reply",{"status":"ok"`)
	p.send(`["1","2","realtime:w","broadcast",{"type":"broadcast","event":"e","payload":{}}]`)
	p.expect(`["1","2","realtime:w","phx_reply",{"status":"ok"`)

	p.send(`["1","3","realtime:w","access_token",{"access_token":"` + token(t, "ann", time.Hour, jwt.MapClaims{"write": false}) + `"}]`)
	p.send(`["1","4","realtime:w","broadcast",{"type":"broadcast","event":"e","payload":{}}]`)
	p.expect(`["1","4","realtime:w","phx_reply",{"status":"error"`, `may not write`)
	p.send(`["1","5","realtime:w","access_token",{"access_token":"` + token(t, "ann", time.Hour, nil) + `"}]`)
	p.send(`["1","6","realtime:w","broadcast",{"type":"broadcast","event":"e","payload":{}}]`)
	p.expect(`["1","6","realtime:w","phx_reply",{"status":"ok"`)

	p.send(`["1","7","realtime:w","access_token",{"access_token":"` + token(t, "mallory", time.Hour, nil) + `"}]`)
	p.expect(`"system",{"extension":"system","status":"error","message":"Unauthorized: access_token is for another user`)
	p.expect(`["1","1","realtime:w","phx_close",{}]`)
}

func TestNativeRefreshTakesAwayWrite(t *testing.T) {
	in := authOn(t)
	c, _, err := dial(t, in, "/ws/d?token="+token(t, "ann", time.Hour, nil), nil)
	if err != nil {
		t.Fatal(err)
	}
	c.expect("welcome")
	c.send("auth", "r1", map[string]string{"token": token(t, "ann", time.Hour, jwt.MapClaims{"write": false})})
	c.until("ok", func(f frame) bool { return f.Ref == "r1" })
	c.send("broadcast", "b1", map[string]any{"event": "x"})
	if f := c.until("error", nil); f.Ref != "b1" || !strings.Contains(string(f.Payload), `"forbidden"`) {
		t.Fatalf("broadcast after a read-only refresh: %s %s, want forbidden", f.Ref, f.Payload)
	}
	c.send("auth", "r2", map[string]string{"token": token(t, "ann", time.Hour, nil)})
	c.until("ok", func(f frame) bool { return f.Ref == "r2" })
	c.send("broadcast", "b2", map[string]any{"event": "x"})
	c.until("ok", func(f frame) bool { return f.Ref == "b2" })
}

// signed returns a token with exactly these claims.
func signed(t *testing.T, claims jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(testSecret))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestTokenExpiryEdges(t *testing.T) {
	in := authOn(t)
	never := signed(t, jwt.MapClaims{"sub": "ann", "exp": 9999999999})
	c, _, err := dial(t, in, "/ws/d?token="+never, nil)
	if err != nil {
		t.Fatal(err)
	}
	c.expect("welcome")
	for i := range 3 {
		ref := fmt.Sprint("p", i)
		c.send("ping", ref, nil)
		c.until("pong", func(f frame) bool { return f.Ref == ref })
		c.quiet("none", 100*time.Millisecond) // an expiry that overflowed closes here
	}
	p := dialPhx(t, in, "")
	p.send(phxJoin("1", "realtime:d", `{}`, never))
	p.expect(`["1","1","realtime:d","phx_reply",{"status":"ok"`)
	p.send(`[null,"2","phoenix","heartbeat",{}]`)
	p.expectUntil(`[null,"2","phoenix","phx_reply"`, "phx_close")

	// Expired two seconds ago: inside the parser's leeway, and still refused at the door.
	justExpired := signed(t, jwt.MapClaims{"sub": "ann", "exp": time.Now().Add(-2 * time.Second).Unix()})
	_, resp, err := dial(t, in, "/ws/d?token="+justExpired, nil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("token expired 2s ago: got %v %v, want HTTP 401", resp, err)
	}
	p.send(phxJoin("3", "realtime:e", `{}`, justExpired))
	p.expect(`["3","3","realtime:e","phx_reply",{"status":"error"`, `token is expired`)
}

func TestAuthMessagesRateLimited(t *testing.T) {
	in := authOn(t)
	tok := token(t, "ann", time.Hour, nil)
	c, _, err := dial(t, in, "/ws/d?token="+tok, nil)
	if err != nil {
		t.Fatal(err)
	}
	c.expect("welcome")
	msg, _ := json.Marshal(map[string]any{"type": "auth", "payload": map[string]string{"token": tok}})
	for range 300 {
		c.sendRaw(msg)
	}
	if f := c.until("error", nil); !strings.Contains(string(f.Payload), `"rate_limited"`) {
		t.Fatalf("300 auth messages: got %s, want rate_limited", f.Payload)
	}

	p := dialPhx(t, in, "")
	p.send(phxJoin("1", "realtime:d", `{}`, tok))
	p.expect(`["1","1","realtime:d","phx_reply",{"status":"ok"`)
	for i := range 300 {
		p.send(fmt.Sprintf(`["1","%d","realtime:d","access_token",{"access_token":"%s"}]`, i+10, tok))
	}
	p.expect(`"phx_reply",{"status":"error"`, `too many messages`)
}

func TestPrivateChannelNeedsUserToken(t *testing.T) {
	in := authOn(t)
	p := dialPhx(t, in, "apikey="+anonKey(t))
	p.send(phxJoin("1", "realtime:p", `{"private":true}`, ""))
	p.expect(`["1","1","realtime:p","phx_reply",{"status":"error"`, `a private channel needs a user token`)
	p.send(phxJoin("2", "realtime:p", `{"private":true}`, token(t, "ann", time.Hour, nil)))
	p.expect(`["2","2","realtime:p","phx_reply",{"status":"ok"`)
	// A public channel takes the anon key.
	p.send(phxJoin("3", "realtime:q", `{"private":false}`, ""))
	p.expect(`["3","3","realtime:q","phx_reply",{"status":"ok"`)

	// With auth off there are no users: private is accepted and means nothing.
	off := startCluster(t, 1, instanceOpts{})[0]
	q := dialPhx(t, off, "apikey=anything")
	q.send(phxJoin("1", "realtime:p", `{"private":true}`, ""))
	q.expect(`["1","1","realtime:p","phx_reply",{"status":"ok"`)
}

func TestDotDocumentIDsRefused(t *testing.T) {
	in := startCluster(t, 1, instanceOpts{})[0]
	// Sent raw: an HTTP client would resolve the dot segments itself.
	for _, path := range []string{"/ws/.", "/ws/..", "/ws/%2E", "/ws/%2e%2E"} {
		c, err := net.Dial("tcp", strings.TrimPrefix(in.url, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"+
			"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n", path)
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<10))
		c.Close()
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), `may not be "." or ".."`) {
			t.Errorf("%s: got %d %q, want 400 naming the dot segments", path, resp.StatusCode, body)
		}
	}
	p := dialPhx(t, in, "")
	for i, topic := range []string{"realtime:.", "realtime:.."} {
		ref := fmt.Sprint(i + 1)
		p.send(phxJoin(ref, topic, `{}`, ""))
		p.expect(`[`+fmt.Sprintf("%q,%q,%q", ref, ref, topic)+`,"phx_reply",{"status":"error"`, `bad topic: document id may not be`)
	}
	if code := post(t, in.url+"/api/broadcast", `{"messages":[{"topic":"..","event":"e","payload":{}}]}`, nil); code != http.StatusBadRequest {
		t.Errorf("REST broadcast to ..: got %d, want 400", code)
	}
}
