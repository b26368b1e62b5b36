package web_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/fasthttp/websocket"

	"collabd/collab/web"
)

// phx is a raw Phoenix vsn 2.0.0 client: frames are [join_ref, ref, topic, event, payload].
type phx struct {
	t  *testing.T
	ws *websocket.Conn
}

func dialPhx(t *testing.T, in *instance, query string) *phx {
	t.Helper()
	ws, resp, err := websocket.DefaultDialer.Dial(in.wsURL("/realtime/v1/websocket?vsn=2.0.0&"+query), nil)
	if err != nil {
		t.Fatalf("dial: %v %v", err, resp)
	}
	t.Cleanup(func() { ws.Close() })
	return &phx{t: t, ws: ws}
}

func (p *phx) send(frame string) {
	p.t.Helper()
	if err := p.ws.WriteMessage(websocket.TextMessage, []byte(frame)); err != nil {
		p.t.Fatal(err)
	}
}

// expect reads text frames until one whose JSON array contains every part, in order.
func (p *phx) expect(parts ...string) string {
	p.t.Helper()
	p.ws.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		mt, data, err := p.ws.ReadMessage()
		if err != nil {
			p.t.Fatalf("waiting for %q: %v", parts, err)
		}
		if mt != websocket.TextMessage {
			continue
		}
		s, at := string(data), 0
		ok := true
		for _, part := range parts {
			i := strings.Index(s[at:], part)
			if i < 0 {
				ok = false
				break
			}
			at += i + len(part)
		}
		if ok {
			var arr []json.RawMessage
			if err := json.Unmarshal(data, &arr); err != nil || len(arr) != 5 {
				p.t.Fatalf("frame %s is not a 5-element array", data)
			}
			return s
		}
	}
}

func TestPhoenixProtocol(t *testing.T) {
	in := startCluster(t, 1, instanceOpts{web: web.Config{JWTSecret: testSecret}})
	p := dialPhx(t, in[0], "apikey=not-a-jwt")

	p.send(`[null,"1","phoenix","heartbeat",{}]`)
	p.expect(`[null,"1","phoenix","phx_reply",{"status":"ok","response":{}}]`)

	p.send(`["2","2","realtime:r1","phx_join",{"config":{"broadcast":{"self":true,"ack":true},"presence":{"key":"ann"}}}]`)
	p.expect(`["2","2","realtime:r1","phx_reply",{"status":"error"`, `Unauthorized`)

	p.send(`["3","3","realtime:r1","phx_join",{"config":{"postgres_changes":[{"event":"*","schema":"public"}]},"access_token":"` + token(t, "ann", time.Hour, nil) + `"}]`)
	p.expect(`["3","3","realtime:r1","phx_reply",{"status":"error"`, `postgres_changes is not supported`)

	p.send(`["4","4","realtime:r1","phx_join",{"config":{"broadcast":{"self":true,"ack":true},"presence":{"key":"ann"},"private":true},"access_token":"` + token(t, "ann", time.Hour, nil) + `"}]`)
	p.expect(`["4","4","realtime:r1","phx_reply",{"status":"ok","response":{"postgres_changes":[]}}]`)
	p.expect(`["4",null,"realtime:r1","presence_state",{}]`)

	p.send(`["4","5","realtime:r1","presence",{"type":"presence","event":"track","payload":{"name":"Ann"}}]`)
	p.expect(`["4","5","realtime:r1","phx_reply",{"status":"ok"`)
	p.expect(`"presence_diff",{"joins":{"ann":{"metas":[{"name":"Ann","phx_ref":`)

	p.send(`["4","6","realtime:r1","broadcast",{"type":"broadcast","event":"cursor","payload":{"x":1}}]`)
	p.expect(`["4","6","realtime:r1","phx_reply",{"status":"ok"`)

	p.send(`["4","7","realtime:r1","dance",{}]`)
	p.expect(`["4","7","realtime:r1","phx_reply",{"status":"error","response":{"reason":"unknown event dance"}}]`)
	p.send(`["9","8","realtime:elsewhere","broadcast",{"type":"broadcast","event":"x","payload":{}}]`)
	p.expect(`["9","8","realtime:elsewhere","phx_reply",{"status":"error","response":{"reason":"unmatched topic"}}]`)

	p.send(`["4","10","realtime:r1","phx_leave",{}]`)
	p.expect(`["4","10","realtime:r1","phx_reply",{"status":"ok","response":{}}]`)
	p.expect(`["4","4","realtime:r1","phx_close",{}]`)

	// A bad vsn is refused before the upgrade.
	if _, resp, err := websocket.DefaultDialer.Dial(in[0].wsURL("/realtime/v1/websocket?vsn=9.9.9"), nil); err == nil || resp.StatusCode != 400 {
		t.Fatalf("vsn 9.9.9: %v %v, want HTTP 400", resp, err)
	}
}
