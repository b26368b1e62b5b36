package web_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"testing"
	"time"

	"github.com/fasthttp/websocket"
)

// userBroadcastPush is the vsn 2.0.0 binary frame (kind 3) realtime-js sends for
// send({type: "broadcast", event, payload}) with an ArrayBuffer payload (encoding 0).
func userBroadcastPush(joinRef, ref, topic, event string, payload []byte) []byte {
	f := []byte{3, byte(len(joinRef)), byte(len(ref)), byte(len(topic)), byte(len(event)), 0, 0}
	f = append(f, joinRef+ref+topic+event...)
	return append(f, payload...)
}

// TestBinaryBroadcastRelayed sends an ArrayBuffer broadcast from a vsn 2.0.0 socket on one
// instance: vsn 2.0.0 members on the other instance get the bytes unchanged in a binary
// frame, vsn 1.0.0 and native members get their base64 with "encoding":"base64".
func TestBinaryBroadcastRelayed(t *testing.T) {
	in := startCluster(t, 2, instanceOpts{})
	payload := []byte{0x00, 0xff, 0xfe, 'h', 'i', 0x80, '"', '\\', 0x01}
	b64 := base64.StdEncoding.EncodeToString(payload)

	native := join(t, in[1], "bin", "nat")
	native.expect("presence.state")
	v2 := dialPhx(t, in[1], "")
	v2.send(phxJoin("1", "realtime:bin", `{}`, ""))
	v2.expect(`["1","1","realtime:bin","phx_reply",{"status":"ok"`)
	v1, _, err := websocket.DefaultDialer.Dial(in[1].wsURL("/realtime/v1/websocket?vsn=1.0.0"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { v1.Close() })
	v1.WriteMessage(websocket.TextMessage, []byte(`{"join_ref":"1","ref":"1","topic":"realtime:bin","event":"phx_join","payload":{}}`))
	readV1 := func(want string) []byte {
		t.Helper()
		v1.SetReadDeadline(time.Now().Add(5 * time.Second))
		for {
			_, data, err := v1.ReadMessage()
			if err != nil {
				t.Fatalf("vsn 1.0.0 waiting for %s: %v", want, err)
			}
			if bytes.Contains(data, []byte(want)) {
				return data
			}
		}
	}
	readV1(`"phx_reply"`)

	sender := dialPhx(t, in[0], "")
	sender.send(phxJoin("1", "realtime:bin", `{"broadcast":{"self":true,"ack":true}}`, ""))
	sender.expect(`["1","1","realtime:bin","phx_reply",{"status":"ok"`)
	if err := sender.ws.WriteMessage(websocket.BinaryMessage, userBroadcastPush("1", "2", "realtime:bin", "blob", payload)); err != nil {
		t.Fatal(err)
	}

	// kind 4, len(topic), len(event), len(meta) 0, encoding 0, topic, event, payload
	want := append([]byte{4, byte(len("realtime:bin")), byte(len("blob")), 0, 0}, "realtime:binblob"...)
	want = append(want, payload...)
	for name, p := range map[string]*phx{"other instance": v2, "sender (self)": sender} {
		p.ws.SetReadDeadline(time.Now().Add(5 * time.Second))
		for {
			mt, data, err := p.ws.ReadMessage()
			if err != nil {
				t.Fatalf("%s: waiting for the binary broadcast: %v", name, err)
			}
			if mt == websocket.BinaryMessage {
				if !bytes.Equal(data, want) {
					t.Fatalf("%s: got frame %v, want %v", name, data, want)
				}
				break
			}
		}
	}
	sender.expect(`["1","2","realtime:bin","phx_reply",{"status":"ok"`)

	var m struct {
		Payload struct {
			Type, Event, Encoding string
			Payload               string
		}
	}
	if err := json.Unmarshal(readV1(`"blob"`), &m); err != nil {
		t.Fatal(err)
	}
	if m.Payload.Event != "blob" || m.Payload.Payload != b64 || m.Payload.Encoding != "base64" {
		t.Fatalf("vsn 1.0.0 got %+v, want event blob, payload %q, encoding base64", m.Payload, b64)
	}
	f := native.until("broadcast", nil)
	var nb struct{ Event, Data, Encoding string }
	if err := json.Unmarshal(f.Payload, &nb); err != nil {
		t.Fatal(err)
	}
	if nb.Event != "blob" || nb.Data != b64 || nb.Encoding != "base64" {
		t.Fatalf("native got %s, want event blob, data %q, encoding base64", f.Payload, b64)
	}
}
