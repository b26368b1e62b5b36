package wire

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"
)

// readPhxGolden returns a frame from testdata/phoenix: a .txt file holds a text frame
// (one trailing newline is not part of it), a .hex file a binary frame as hex digits,
// with whitespace and '#' comment lines ignored.
func readPhxGolden(t testing.TB, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", "phoenix", name))
	if err != nil {
		t.Fatal(err)
	}
	if strings.HasSuffix(name, ".txt") {
		return bytes.TrimSuffix(data, []byte("\n"))
	}
	var digits strings.Builder
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, "#") {
			continue
		}
		digits.WriteString(strings.Join(strings.Fields(line), ""))
	}
	b, err := hex.DecodeString(digits.String())
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return b
}

var phxNull PhxRef

func TestDecodePhxText(t *testing.T) {
	tests := []struct {
		file      string
		vsn       string
		joinRef   PhxRef
		ref       PhxRef
		topic     string
		event     string
		payload   string // "" means the payload is checked by re-encoding only
		broadcast *PhxUserBroadcast
		canonical string // the file AppendPhx must produce; "" means file itself
	}{
		{file: "v2_join.txt", vsn: PhxVsn2, joinRef: PhxRefOf("6"), ref: PhxRefOf("6"), topic: "realtime:doc:42", event: "phx_join",
			payload: `{"config":{"broadcast":{"self":true,"ack":true},"presence":{"key":"user-1","enabled":true},"postgres_changes":[],"private":false}}`},
		{file: "v2_join_reply.txt", vsn: PhxVsn2, joinRef: PhxRefOf("6"), ref: PhxRefOf("6"), topic: "realtime:doc:42", event: "phx_reply",
			payload: `{"status":"ok","response":{"postgres_changes":[]}}`},
		{file: "v2_presence_state_empty.txt", vsn: PhxVsn2, joinRef: PhxRefOf("6"), ref: phxNull, topic: "realtime:doc:42", event: "presence_state", payload: `{}`},
		{file: "v2_broadcast_ack.txt", vsn: PhxVsn2, joinRef: PhxRefOf("6"), ref: PhxRefOf("7"), topic: "realtime:doc:42", event: "phx_reply"},
		{file: "v2_broadcast.txt", vsn: PhxVsn2, joinRef: phxNull, ref: phxNull, topic: "realtime:doc:42", event: "broadcast",
			broadcast: &PhxUserBroadcast{Event: "cursor", Payload: []byte(`{"x":9,"y":9,"from":"other"}`), JSON: true}},
		{file: "v2_presence_track.txt", vsn: PhxVsn2, joinRef: PhxRefOf("6"), ref: PhxRefOf("8"), topic: "realtime:doc:42", event: "presence",
			payload: `{"type":"presence","event":"track","payload":{"name":"Ann","color":"#e33"}}`},
		{file: "v2_presence_track_reply.txt", vsn: PhxVsn2, joinRef: PhxRefOf("6"), ref: PhxRefOf("8"), topic: "realtime:doc:42", event: "phx_reply"},
		{file: "v2_presence_diff_join.txt", vsn: PhxVsn2, joinRef: phxNull, ref: phxNull, topic: "realtime:doc:42", event: "presence_diff"},
		{file: "v2_presence_track_again.txt", vsn: PhxVsn2, joinRef: PhxRefOf("6"), ref: PhxRefOf("9"), topic: "realtime:doc:42", event: "presence"},
		{file: "v2_presence_diff_update.txt", vsn: PhxVsn2, joinRef: phxNull, ref: phxNull, topic: "realtime:doc:42", event: "presence_diff"},
		{file: "v2_presence_untrack.txt", vsn: PhxVsn2, joinRef: PhxRefOf("6"), ref: PhxRefOf("10"), topic: "realtime:doc:42", event: "presence",
			payload: `{"type":"presence","event":"untrack"}`},
		{file: "v2_presence_diff_leave.txt", vsn: PhxVsn2, joinRef: phxNull, ref: phxNull, topic: "realtime:doc:42", event: "presence_diff"},
		{file: "v2_heartbeat.txt", vsn: PhxVsn2, joinRef: phxNull, ref: PhxRefOf("11"), topic: "phoenix", event: "heartbeat", payload: `{}`},
		{file: "v2_heartbeat_reply.txt", vsn: PhxVsn2, joinRef: phxNull, ref: PhxRefOf("11"), topic: "phoenix", event: "phx_reply",
			payload: `{"status":"ok","response":{}}`},
		{file: "v2_access_token.txt", vsn: PhxVsn2, joinRef: PhxRefOf("6"), ref: PhxRefOf("12"), topic: "realtime:doc:42", event: "access_token",
			payload: `{"access_token":"jwt-token-1"}`},
		{file: "v2_leave.txt", vsn: PhxVsn2, joinRef: PhxRefOf("6"), ref: PhxRefOf("14"), topic: "realtime:doc:42", event: "phx_leave", payload: `{}`},
		{file: "v2_leave_reply.txt", vsn: PhxVsn2, joinRef: PhxRefOf("6"), ref: PhxRefOf("14"), topic: "realtime:doc:42", event: "phx_reply"},
		{file: "v2_close.txt", vsn: PhxVsn2, joinRef: PhxRefOf("6"), ref: PhxRefOf("6"), topic: "realtime:doc:42", event: "phx_close", payload: `{}`},
		{file: "v2_join_refused.txt", vsn: PhxVsn2, joinRef: PhxRefOf("17"), ref: PhxRefOf("17"), topic: "realtime:rejectme", event: "phx_join"},
		{file: "v2_join_refused_reply.txt", vsn: PhxVsn2, joinRef: PhxRefOf("17"), ref: PhxRefOf("17"), topic: "realtime:rejectme", event: "phx_reply"},
		{file: "v2_phx_error.txt", vsn: PhxVsn2, joinRef: PhxRefOf("23"), ref: PhxRefOf("23"), topic: "realtime:crashme", event: "phx_error",
			payload: `{"reason":"channel_crash"}`},
		{file: "v2_presence_state_alice.txt", vsn: PhxVsn2, joinRef: PhxRefOf("6"), ref: phxNull, topic: "realtime:doc:1", event: "presence_state"},
		{file: "v2_presence_diff_two_tabs.txt", vsn: PhxVsn2, joinRef: phxNull, ref: phxNull, topic: "realtime:doc:1", event: "presence_diff"},
		{file: "v2_broadcast_from_v1.txt", vsn: PhxVsn2, joinRef: phxNull, ref: phxNull, topic: "realtime:doc:1", event: "broadcast",
			broadcast: &PhxUserBroadcast{Event: "cursor", Payload: []byte(`{"x":1,"y":1}`), JSON: true}},
		{file: "v1_join.txt", vsn: PhxVsn1, joinRef: PhxRefOf("6"), ref: PhxRefOf("6"), topic: "realtime:doc:1", event: "phx_join",
			payload:   `{"config":{"broadcast":{"ack":false,"self":false},"presence":{"key":"bob","enabled":true},"postgres_changes":[],"private":false}}`,
			canonical: "v1_join_canonical.txt"},
		{file: "v1_join_reply.txt", vsn: PhxVsn1, joinRef: PhxRefOf("6"), ref: PhxRefOf("6"), topic: "realtime:doc:1", event: "phx_reply",
			payload: `{"status":"ok","response":{"postgres_changes":[]}}`},
		{file: "v1_presence_state.txt", vsn: PhxVsn1, joinRef: PhxRefOf("6"), ref: phxNull, topic: "realtime:doc:1", event: "presence_state"},
		{file: "v1_broadcast.txt", vsn: PhxVsn1, joinRef: phxNull, ref: phxNull, topic: "realtime:doc:1", event: "broadcast",
			broadcast: &PhxUserBroadcast{Event: "cursor", Payload: []byte(`{"x":0.25,"y":0.75}`), JSON: true}},
		{file: "v1_broadcast_send.txt", vsn: PhxVsn1, joinRef: PhxRefOf("6"), ref: PhxRefOf("7"), topic: "realtime:doc:1", event: "broadcast",
			broadcast: &PhxUserBroadcast{Event: "cursor", Payload: []byte(`{"x":1,"y":1}`), JSON: true},
			canonical: "v1_broadcast_send_canonical.txt"},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			frame := readPhxGolden(t, tt.file)
			m, err := DecodePhx(tt.vsn, frame, false)
			if err != nil {
				t.Fatalf("DecodePhx: %v", err)
			}
			if m.JoinRef != tt.joinRef || m.Ref != tt.ref || m.Topic != tt.topic || m.Event != tt.event {
				t.Errorf("got join_ref %+v ref %+v topic %q event %q, want %+v %+v %q %q",
					m.JoinRef, m.Ref, m.Topic, m.Event, tt.joinRef, tt.ref, tt.topic, tt.event)
			}
			if tt.payload != "" && string(m.Payload) != tt.payload {
				t.Errorf("got payload %s, want %s", m.Payload, tt.payload)
			}
			if !reflect.DeepEqual(m.Broadcast, tt.broadcast) {
				t.Errorf("got broadcast %+v, want %+v", m.Broadcast, tt.broadcast)
			}
			if m.Binary || m.Raw != nil {
				t.Errorf("got Binary %v Raw %q, want false, nil", m.Binary, m.Raw)
			}
			want := frame
			if tt.canonical != "" {
				want = readPhxGolden(t, tt.canonical)
			}
			if got := AppendPhx(nil, tt.vsn, m); !bytes.Equal(got, want) {
				t.Errorf("AppendPhx:\ngot  %s\nwant %s", got, want)
			}
		})
	}
}

func TestDecodePhxBinary(t *testing.T) {
	tests := []struct {
		file string
		want PhxMessage
	}{
		{"v2_user_broadcast_push_json_doc42.hex", PhxMessage{
			JoinRef: PhxRefOf("6"), Ref: PhxRefOf("7"), Topic: "realtime:doc:42", Event: "broadcast",
			Payload:   json.RawMessage(`{"type":"broadcast","event":"cursor","payload":{"x":10,"y":20}}`),
			Broadcast: &PhxUserBroadcast{Event: "cursor", Payload: []byte(`{"x":10,"y":20}`), JSON: true},
			Binary:    true,
		}},
		{"v2_user_broadcast_push_json.hex", PhxMessage{
			JoinRef: PhxRefOf("6"), Ref: PhxRefOf("8"), Topic: "realtime:doc:1", Event: "broadcast",
			Payload:   json.RawMessage(`{"type":"broadcast","event":"cursor","payload":{"x":0.25,"y":0.75}}`),
			Broadcast: &PhxUserBroadcast{Event: "cursor", Payload: []byte(`{"x":0.25,"y":0.75}`), JSON: true},
			Binary:    true,
		}},
		{"v2_user_broadcast_push_binary.hex", PhxMessage{
			JoinRef: PhxRefOf("6"), Ref: PhxRefOf("9"), Topic: "realtime:doc:1", Event: "broadcast",
			Broadcast: &PhxUserBroadcast{Event: "cursor", Payload: []byte{1, 2, 3, 4}},
			Binary:    true,
		}},
		{"v2_user_broadcast_push_meta.hex", PhxMessage{
			JoinRef: PhxRefOf("6"), Ref: PhxRefOf("10"), Topic: "realtime:doc:1", Event: "broadcast",
			Payload:   json.RawMessage(`{"type":"broadcast","event":"chat","payload":{"text":"héllo"},"persist":true}`),
			Broadcast: &PhxUserBroadcast{Event: "chat", Payload: []byte(`{"text":"héllo"}`), JSON: true, Meta: json.RawMessage(`{"persist":true}`)},
			Binary:    true,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			got, err := DecodePhx(PhxVsn2, readPhxGolden(t, tt.file), true)
			if err != nil {
				t.Fatalf("DecodePhx: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got  %s\nwant %s", phxDump(got), phxDump(tt.want))
			}
		})
	}
}

// phxDump formats m readably for failure messages.
func phxDump(m PhxMessage) string {
	s := string(AppendPhx(nil, PhxVsn2, m))
	if m.Broadcast != nil {
		s += " broadcast=" + m.Broadcast.Event + " " + hex.EncodeToString(m.Broadcast.Payload) + " meta=" + string(m.Broadcast.Meta)
		if m.Broadcast.JSON {
			s += " json"
		}
	}
	if m.Payload == nil {
		s += " payload=nil"
	}
	if m.Binary {
		s += " binary raw=" + hex.EncodeToString(m.Raw)
	}
	return s
}

func TestDecodePhxBinaryPush(t *testing.T) {
	// Kind 0 as Phoenix's own tests build it: join_ref "12", ref "123", topic, event, raw payload.
	frame := append([]byte{0, 2, 3, 5, 5}, "12123topicevent\x65\x66\x67"...)
	got, err := DecodePhx(PhxVsn2, frame, true)
	if err != nil {
		t.Fatal(err)
	}
	want := PhxMessage{JoinRef: PhxRefOf("12"), Ref: PhxRefOf("123"), Topic: "topic", Event: "event", Raw: []byte("efg"), Binary: true}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v, want %+v", got, want)
	}
	frame[0] = 3 // the same bytes are no user broadcast push: the header is longer
	if _, err := DecodePhx(PhxVsn2, frame[:5], true); err == nil {
		t.Errorf("got no error for a 5-byte kind-3 frame")
	}
}

// TestPhxUserBroadcastGolden forwards each captured kind-3 push as the server does and
// checks the kind-4 frame against the one captured from the real server.
func TestPhxUserBroadcastGolden(t *testing.T) {
	tests := []struct{ push, want string }{
		{"v2_user_broadcast_push_json_doc42.hex", "v2_user_broadcast_json_doc42.hex"},
		{"v2_user_broadcast_push_json.hex", "v2_user_broadcast_json.hex"},
		{"v2_user_broadcast_push_binary.hex", "v2_user_broadcast_binary.hex"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			m, err := DecodePhx(PhxVsn2, readPhxGolden(t, tt.push), true)
			if err != nil {
				t.Fatal(err)
			}
			b := m.Broadcast
			prefix := []byte("keep")
			var got []byte
			if b.JSON {
				got, err = AppendPhxUserBroadcast(prefix, m.Topic, b.Event, b.Payload)
			} else {
				got, err = AppendPhxUserBroadcastBinary(prefix, m.Topic, b.Event, b.Payload)
			}
			if err != nil {
				t.Fatal(err)
			}
			want := append([]byte("keep"), readPhxGolden(t, tt.want)...)
			if !bytes.Equal(got, want) {
				t.Errorf("got  %x\nwant %x", got, want)
			}
		})
	}
}

func TestAppendPhxUserBroadcastLimits(t *testing.T) {
	long := strings.Repeat("e", 256)
	for _, tc := range []struct{ topic, event string }{{long, "e"}, {"t", long}} {
		dst := []byte("x")
		got, err := AppendPhxUserBroadcast(dst, tc.topic, tc.event, json.RawMessage(`{}`))
		if !errors.Is(err, ErrPhxTooLong) || string(got) != "x" {
			t.Errorf("got %q, %v, want \"x\", ErrPhxTooLong", got, err)
		}
	}
	got, err := AppendPhxUserBroadcast(nil, strings.Repeat("t", 255), "", nil)
	if err != nil || len(got) != 5+255+2 || string(got[len(got)-2:]) != "{}" || got[1] != 255 {
		t.Errorf("got %d bytes ending %q, %v; want 262 bytes ending {}, nil", len(got), got[len(got)-2:], err)
	}
}

// TestPhxServerFrames builds each server frame of the capture from the client frame it
// answers and checks it byte for byte.
func TestPhxServerFrames(t *testing.T) {
	decode := func(vsn, file string, binary bool) PhxMessage {
		t.Helper()
		m, err := DecodePhx(vsn, readPhxGolden(t, file), binary)
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		return m
	}
	join := decode(PhxVsn2, "v2_join.txt", false)
	kind3 := decode(PhxVsn2, "v2_user_broadcast_push_json.hex", true)
	v1Send := decode(PhxVsn1, "v1_broadcast_send.txt", false)
	tests := []struct {
		name, vsn, want string
		m               PhxMessage
	}{
		{"join reply", PhxVsn2, "v2_join_reply.txt", PhxReply(join, PhxStatusOK, json.RawMessage(`{"postgres_changes":[]}`))},
		{"presence_state", PhxVsn2, "v2_presence_state_empty.txt",
			PhxMessage{JoinRef: join.JoinRef, Topic: join.Topic, Event: PhxEventPresenceState}},
		{"broadcast ack", PhxVsn2, "v2_broadcast_ack.txt", PhxReply(decode(PhxVsn2, "v2_user_broadcast_push_json_doc42.hex", true), PhxStatusOK, nil)},
		{"track reply", PhxVsn2, "v2_presence_track_reply.txt", PhxReply(decode(PhxVsn2, "v2_presence_track.txt", false), PhxStatusOK, nil)},
		{"heartbeat reply", PhxVsn2, "v2_heartbeat_reply.txt", PhxReply(decode(PhxVsn2, "v2_heartbeat.txt", false), PhxStatusOK, nil)},
		{"leave reply", PhxVsn2, "v2_leave_reply.txt", PhxReply(decode(PhxVsn2, "v2_leave.txt", false), PhxStatusOK, json.RawMessage(`{}`))},
		{"close", PhxVsn2, "v2_close.txt", PhxClose(join.JoinRef, join.Topic)},
		{"join refused", PhxVsn2, "v2_join_refused_reply.txt", PhxReplyError(decode(PhxVsn2, "v2_join_refused.txt", false),
			"Unauthorized: You do not have permissions to read from this Channel topic: rejectme")},
		{"v1 join reply", PhxVsn1, "v1_join_reply.txt", PhxReply(decode(PhxVsn1, "v1_join.txt", false), PhxStatusOK, json.RawMessage(`{"postgres_changes":[]}`))},
		{"binary broadcast to v1", PhxVsn1, "v1_broadcast.txt", PhxBroadcast(kind3.Topic, kind3.Broadcast.Event, kind3.Broadcast.Payload)},
		{"binary broadcast as its text form", PhxVsn1, "v1_broadcast.txt", PhxMessage{Topic: kind3.Topic, Event: kind3.Event, Payload: kind3.Payload}},
		{"v1 broadcast to v2", PhxVsn2, "v2_broadcast_from_v1.txt", PhxBroadcast(v1Send.Topic, v1Send.Broadcast.Event, v1Send.Broadcast.Payload)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := readPhxGolden(t, tt.want)
			if got := AppendPhx([]byte{}, tt.vsn, tt.m); !bytes.Equal(got, want) {
				t.Errorf("got  %s\nwant %s", got, want)
			}
		})
	}
}

func TestAppendPhxString(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", `""`},
		{"realtime:doc:42", `"realtime:doc:42"`},
		{`a"b\c`, `"a\"b\\c"`},
		{"\b\f\n\r\t\x00\x1f\x7f", `"\b\f\n\r\t\u0000\u001f` + "\x7f" + `"`},
		{"<a&b>", `"<a&b>"`},
		{"héllo \u2028 😀", "\"héllo \u2028 😀\""},
		{"bad\xffutf8\xe2\x82", `"bad\ufffdutf8\ufffd\ufffd"`},
	}
	for _, tt := range tests {
		got := appendPhxString(nil, tt.in)
		if string(got) != tt.want {
			t.Errorf("appendPhxString(%q): got %s, want %s", tt.in, got, tt.want)
		}
		var back string
		if err := json.Unmarshal(got, &back); err != nil {
			t.Errorf("appendPhxString(%q) = %s: not JSON: %v", tt.in, got, err)
		} else if utf8.ValidString(tt.in) && back != tt.in {
			t.Errorf("appendPhxString(%q) reads back as %q, want the input", tt.in, back)
		}
	}
}

func TestNormalizePhxVsn(t *testing.T) {
	tests := []struct {
		in, want string
		ok       bool
	}{
		{"", PhxVsn1, true},
		{"1.0.0", PhxVsn1, true},
		{"2.0.0", PhxVsn2, true},
		{"2.0.7", PhxVsn2, true},
		{"1.0.12", PhxVsn1, true},
		{"2.0.0+build.5", PhxVsn2, true},
		{"2.1.0", "", false},
		{"3.0.0", "", false},
		{"2.0", "", false},
		{"2", "", false},
		{"2.0.0-rc.1", "", false},
		{"2.0.01", "", false},
		{"02.0.0", "", false},
		{"v2.0.0", "", false},
		{" 2.0.0", "", false},
		{"2.0.x", "", false},
	}
	for _, tt := range tests {
		got, err := NormalizePhxVsn(tt.in)
		if got != tt.want || (err == nil) != tt.ok {
			t.Errorf("NormalizePhxVsn(%q): got %q, %v, want %q, ok %v", tt.in, got, err, tt.want, tt.ok)
		}
		if err != nil && !errors.Is(err, ErrPhxVsn) {
			t.Errorf("NormalizePhxVsn(%q): got error %v, want one wrapping ErrPhxVsn", tt.in, err)
		}
	}
}

func TestDecodePhxErrors(t *testing.T) {
	tests := []struct {
		name   string
		vsn    string
		binary bool
		data   string
		want   string // a substring of the error
	}{
		{"unknown vsn", "3.0.0", false, `[null,"1","phoenix","heartbeat",{}]`, "unsupported phoenix vsn"},
		{"raw vsn", "", false, `[null,"1","phoenix","heartbeat",{}]`, "unsupported phoenix vsn"},
		{"binary on v1", PhxVsn1, true, "\x03", "binary frame on a vsn 1.0.0 socket"},
		{"v2 object", PhxVsn2, false, `{"topic":"t","event":"e","payload":{},"ref":null}`, "is not a JSON array"},
		{"v2 empty", PhxVsn2, false, ``, "is not a JSON array"},
		{"v2 bad json", PhxVsn2, false, `[null,"1","t","e",{]`, "not valid JSON"},
		{"v2 trailing garbage", PhxVsn2, false, `[null,"1","t","e",{}]x`, "not valid JSON"},
		{"v2 four elements", PhxVsn2, false, `[null,"1","t","e"]`, "not a 5-element array"},
		{"v2 six elements", PhxVsn2, false, `[null,"1","t","e",{},1]`, "not a 5-element array"},
		{"v2 numeric ref", PhxVsn2, false, `[null,1,"t","e",{}]`, "ref is neither a string nor null"},
		{"v2 numeric join_ref", PhxVsn2, false, `[1,"1","t","e",{}]`, "join_ref is neither a string nor null"},
		{"v2 null topic", PhxVsn2, false, `[null,"1",null,"e",{}]`, "topic is not a string"},
		{"v2 array event", PhxVsn2, false, `[null,"1","t",[],{}]`, "event is not a string"},
		{"v2 array payload", PhxVsn2, false, `[null,"1","t","e",[]]`, "payload is not a JSON object"},
		{"v2 null payload", PhxVsn2, false, `[null,"1","t","e",null]`, "payload is not a JSON object"},
		{"v2 invalid utf8", PhxVsn2, false, "[null,\"1\",\"t\xff\",\"e\",{}]", "not valid UTF-8"},
		{"v1 array", PhxVsn1, false, `[null,"1","t","e",{}]`, "is not a JSON object"},
		{"v1 no ref", PhxVsn1, false, `{"topic":"t","event":"e","payload":{}}`, `has no "ref" key`},
		{"v1 no payload", PhxVsn1, false, `{"topic":"t","event":"e","ref":"1"}`, `has no "payload" key`},
		{"v1 wrong case", PhxVsn1, false, `{"Topic":"t","event":"e","payload":{},"ref":"1"}`, `has no "topic" key`},
		{"v1 string payload", PhxVsn1, false, `{"topic":"t","event":"e","payload":"x","ref":"1"}`, "payload is not a JSON object"},
		{"binary empty", PhxVsn2, true, "", "empty phoenix binary frame"},
		{"binary reply kind", PhxVsn2, true, "\x01\x00\x00\x00\x00", "server-to-client only: 1"},
		{"binary broadcast kind", PhxVsn2, true, "\x02\x00\x00", "server-to-client only: 2"},
		{"binary user broadcast kind", PhxVsn2, true, "\x04\x00\x00\x00\x01{}", "server-to-client only: 4"},
		{"binary unknown kind", PhxVsn2, true, "\x09", "unknown phoenix binary frame kind 9"},
		{"push short header", PhxVsn2, true, "\x00\x01\x01\x01", "shorter than its header"},
		{"push short strings", PhxVsn2, true, "\x00\x01\x01\x01\x01abc", "shorter than its header's lengths"},
		{"user push short header", PhxVsn2, true, "\x03\x00\x00\x01\x01\x00", "shorter than its header"},
		{"user push short strings", PhxVsn2, true, "\x03\x00\x00\xff\x01\x00\x01t", "shorter than its header's lengths"},
		{"user push bad encoding", PhxVsn2, true, "\x03\x00\x00\x01\x01\x00\x02te{}", "neither 0 (binary) nor 1 (JSON)"},
		{"user push bad json", PhxVsn2, true, "\x03\x00\x00\x01\x01\x00\x01te{", "payload is not valid UTF-8 JSON"},
		{"user push empty json", PhxVsn2, true, "\x03\x00\x00\x01\x01\x00\x01te", "payload is not valid UTF-8 JSON"},
		{"user push json injection", PhxVsn2, true, "\x03\x00\x00\x01\x01\x00\x01te1},\"x\":{", "payload is not valid UTF-8 JSON"},
		{"user push latin-1 json", PhxVsn2, true, "\x03\x00\x00\x01\x01\x00\x01te\"caf\xe9\"", "payload is not valid UTF-8 JSON"},
		{"user push bad metadata", PhxVsn2, true, "\x03\x00\x00\x01\x01\x02\x01te[]{}", "metadata is not a JSON object"},
		{"user push latin-1 topic", PhxVsn2, true, "\x03\x00\x00\x04\x01\x00\x01caf\xe9e{}", "not valid UTF-8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := DecodePhx(tt.vsn, []byte(tt.data), tt.binary)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got error %v, want one containing %q", err, tt.want)
			}
			if err != nil && !strings.HasPrefix(err.Error(), "wire: ") {
				t.Errorf("got error %q, want it prefixed \"wire: \"", err)
			}
		})
	}
}

// TestDecodePhxTruncated decodes every prefix of every captured binary frame: each
// must fail cleanly (or, for a raw payload, decode to a shorter payload).
func TestDecodePhxTruncated(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "phoenix", "v2_user_broadcast_push*.hex"))
	if err != nil || len(files) == 0 {
		t.Fatalf("got %d files, %v; want some", len(files), err)
	}
	for _, f := range files {
		frame := readPhxGolden(t, filepath.Base(f))
		for n := 0; n < len(frame); n++ {
			m, err := DecodePhx(PhxVsn2, frame[:n], true)
			if err == nil && (m.Broadcast == nil || m.Broadcast.JSON) {
				t.Errorf("%s[:%d]: got %s, want an error", filepath.Base(f), n, phxDump(m))
			}
		}
	}
}

func TestPhxBroadcastPayloadMeta(t *testing.T) {
	// Metadata keys that would clash with the JSON form's own are dropped; order is kept.
	got := phxBroadcastPayload(nil, "e", []byte(`1`), json.RawMessage(`{"z":1,"type":"x","a":{"b":[1]},"payload":2}`))
	want := `{"type":"broadcast","event":"e","payload":1,"z":1,"a":{"b":[1]}}`
	if string(got) != want {
		t.Errorf("got %s, want %s", got, want)
	}
}

func TestDecodePhxDoesNotAlias(t *testing.T) {
	for _, tc := range []struct {
		vsn    string
		file   string
		binary bool
	}{
		{PhxVsn2, "v2_broadcast.txt", false},
		{PhxVsn1, "v1_broadcast.txt", false},
		{PhxVsn2, "v2_user_broadcast_push_json.hex", true},
		{PhxVsn2, "v2_user_broadcast_push_binary.hex", true},
	} {
		frame := readPhxGolden(t, tc.file)
		m, err := DecodePhx(tc.vsn, frame, tc.binary)
		if err != nil {
			t.Fatal(err)
		}
		before := phxDump(m)
		for i := range frame {
			frame[i] = 'X'
		}
		if after := phxDump(m); after != before {
			t.Errorf("%s: message changed with the frame: got %s, want %s", tc.file, after, before)
		}
	}
}
