package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"collabd/collab"
	"collabd/presence"
)

var updateNative = flag.Bool("update", false, "rewrite the server frames in testdata/native from AppendNative")

// readNativeGolden returns a frame from testdata/native; one trailing newline is not part
// of it.
func readNativeGolden(t testing.TB, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", "native", name))
	if err != nil {
		t.Fatal(err)
	}
	return bytes.TrimSuffix(data, []byte("\n"))
}

// cmd is a comparable, printable form of collab.Command.
type cmd struct {
	Kind                   collab.CommandKind
	Ref, Name, Data, Token string
}

func cmdOf(c collab.Command) cmd {
	return cmd{Kind: c.Kind, Ref: c.Ref, Name: c.Name, Data: string(c.Data), Token: c.Token}
}

func (c cmd) String() string {
	return fmt.Sprintf("{Kind:%d Ref:%q Name:%q Data:%s Token:%q}", c.Kind, c.Ref, c.Name, c.Data, c.Token)
}

func TestDecodeNativeGolden(t *testing.T) {
	tests := []struct {
		file string
		want collab.Command
	}{
		{"client_cursor.json", collab.Command{Kind: collab.CmdCursor, Data: json.RawMessage(`{"x":0.42,"y":0.17}`)}},
		{"client_cursor_null.json", collab.Command{Kind: collab.CmdCursor, Data: json.RawMessage(`null`)}},
		// The state is relayed to many, so white space is taken out.
		{"client_presence_track.json", collab.Command{Kind: collab.CmdTrack, Ref: "2", Data: json.RawMessage(`{"name":"Ann","color":"#e33","selection":[1,4]}`)}},
		{"client_presence_untrack.json", collab.Command{Kind: collab.CmdUntrack, Ref: "3"}},
		{"client_broadcast.json", collab.Command{Kind: collab.CmdBroadcast, Ref: "4", Name: "reaction", Data: json.RawMessage(`{"emoji":"🎉","at":[0.5,0.25]}`)}},
		{"client_ping.json", collab.Command{Kind: collab.CmdPing, Ref: "5", Data: json.RawMessage(`{"t":1700000000123}`)}},
		{"client_auth.json", collab.Command{Kind: collab.CmdAuth, Ref: "6", Token: "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbm4ifQ.c2ln"}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			got, ref, err := DecodeNative(readNativeGolden(t, tt.file))
			if err != nil {
				t.Fatalf("got error %v, want none", err)
			}
			if g, w := cmdOf(got), cmdOf(tt.want); g != w {
				t.Errorf("got  %v\nwant %v", g, w)
			}
			if ref != tt.want.Ref {
				t.Errorf("got ref %q, want %q", ref, tt.want.Ref)
			}
		})
	}
}

func TestDecodeNative(t *testing.T) {
	tests := []struct {
		name  string
		frame string
		want  collab.Command
	}{
		{"cursor without payload hides it", `{"type":"cursor"}`, collab.Command{Kind: collab.CmdCursor, Data: json.RawMessage(`null`)}},
		{"cursor with white space", "{ \"type\" : \"cursor\" , \"payload\" : { \"x\" : 1 ,\n\t\"y\" : [ 2 , 3 ] } }",
			collab.Command{Kind: collab.CmdCursor, Data: json.RawMessage(`{"x":1,"y":[2,3]}`)}},
		{"white space in strings is kept", `{"type":"cursor","payload":{"label":"a b\tc"}}`,
			collab.Command{Kind: collab.CmdCursor, Data: json.RawMessage(`{"label":"a b\tc"}`)}},
		{"cursor with ref", `{"type":"cursor","ref":"c1","payload":{}}`, collab.Command{Kind: collab.CmdCursor, Ref: "c1", Data: json.RawMessage(`{}`)}},
		{"null ref is no ref", `{"type":"presence.untrack","ref":null}`, collab.Command{Kind: collab.CmdUntrack}},
		{"unknown fields are ignored", `{"type":"presence.untrack","ref":"u","extra":[1,{"a":2}],"payload":{"ignored":true}}`,
			collab.Command{Kind: collab.CmdUntrack, Ref: "u"}},
		{"key order does not matter", `{"payload":{"s":1},"ref":"t","type":"presence.track"}`,
			collab.Command{Kind: collab.CmdTrack, Ref: "t", Data: json.RawMessage(`{"s":1}`)}},
		{"empty presence state", `{"type":"presence.track","payload":{}}`, collab.Command{Kind: collab.CmdTrack, Data: json.RawMessage(`{}`)}},
		{"broadcast without data", `{"type":"broadcast","payload":{"event":"click"}}`,
			collab.Command{Kind: collab.CmdBroadcast, Name: "click", Data: json.RawMessage(`null`)}},
		{"broadcast with null data", `{"type":"broadcast","payload":{"event":"click","data":null}}`,
			collab.Command{Kind: collab.CmdBroadcast, Name: "click", Data: json.RawMessage(`null`)}},
		{"broadcast with scalar data", `{"type":"broadcast","payload":{"event":"n","data":42}}`,
			collab.Command{Kind: collab.CmdBroadcast, Name: "n", Data: json.RawMessage(`42`)}},
		{"broadcast with string data and white space", `{"type":"broadcast","payload":{ "data" : [ "a b" , 1 ] , "event" : "e" }}`,
			collab.Command{Kind: collab.CmdBroadcast, Name: "e", Data: json.RawMessage(`["a b",1]`)}},
		{"broadcast event with escapes", `{"type":"broadcast","payload":{"event":"a\"b\u00e9","data":{}}}`,
			collab.Command{Kind: collab.CmdBroadcast, Name: `a"bé`, Data: json.RawMessage(`{}`)}},
		{"ping without payload", `{"type":"ping","ref":"p"}`, collab.Command{Kind: collab.CmdPing, Ref: "p"}},
		{"ping with scalar payload", `{"type":"ping","payload":"hi"}`, collab.Command{Kind: collab.CmdPing, Data: json.RawMessage(`"hi"`)}},
		{"ping with null payload", `{"type":"ping","payload":null}`, collab.Command{Kind: collab.CmdPing, Data: json.RawMessage(`null`)}},
		{"auth without ref", `{"type":"auth","payload":{"token":"t.k.n"}}`, collab.Command{Kind: collab.CmdAuth, Token: "t.k.n"}},
		{"ref with escapes", `{"type":"ping","ref":"r\n\u00e9"}`, collab.Command{Kind: collab.CmdPing, Ref: "r\né"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ref, err := DecodeNative([]byte(tt.frame))
			if err != nil {
				t.Fatalf("got error %v, want none", err)
			}
			if g, w := cmdOf(got), cmdOf(tt.want); g != w {
				t.Errorf("got  %v\nwant %v", g, w)
			}
			if ref != tt.want.Ref {
				t.Errorf("got ref %q, want %q", ref, tt.want.Ref)
			}
		})
	}
}

func TestDecodeNativeErrors(t *testing.T) {
	tests := []struct {
		name    string
		frame   string
		code    string
		wantRef string
	}{
		{"not JSON", `hello`, "bad_json", ""},
		{"empty frame", ``, "bad_json", ""},
		{"truncated", `{"type":"cursor","ref":"r","payload":{"x":1}`, "bad_json", ""},
		{"trailing data", `{"type":"cursor","ref":"r","payload":{"x":1}} {}`, "bad_json", ""},
		{"array", `["cursor",{"x":1}]`, "bad_json", ""},
		{"string", `"cursor"`, "bad_json", ""},
		{"null", `null`, "bad_json", ""},
		{"empty object", `{}`, "bad_json", ""},
		{"no type, ref kept", `{"ref":"r1","payload":{}}`, "bad_json", "r1"},
		{"null type, ref kept", `{"type":null,"ref":"r1"}`, "bad_json", "r1"},
		{"number ref", `{"type":"ping","ref":7}`, "bad_json", ""},
		{"object ref", `{"type":"ping","ref":{"id":"r"}}`, "bad_json", ""},
		{"unknown type", `{"type":"jump","ref":"r2"}`, "unknown_type", "r2"},
		{"type is case-sensitive", `{"type":"Cursor","ref":"r2","payload":{}}`, "unknown_type", "r2"},
		{"empty type", `{"type":"","ref":"r2"}`, "unknown_type", "r2"},
		{"server-only type", `{"type":"cursors","ref":"r2","payload":[]}`, "unknown_type", "r2"},
		{"welcome from a client", `{"type":"welcome"}`, "unknown_type", ""},
		{"cursor array", `{"type":"cursor","ref":"r3","payload":[0.1,0.2]}`, "bad_payload", "r3"},
		{"cursor string", `{"type":"cursor","ref":"r3","payload":"x"}`, "bad_payload", "r3"},
		{"cursor number", `{"type":"cursor","ref":"r3","payload":0}`, "bad_payload", "r3"},
		{"cursor bool", `{"type":"cursor","payload":true}`, "bad_payload", ""},
		{"track null", `{"type":"presence.track","ref":"r4","payload":null}`, "bad_payload", "r4"},
		{"track without payload", `{"type":"presence.track","ref":"r4"}`, "bad_payload", "r4"},
		{"track array", `{"type":"presence.track","ref":"r4","payload":[]}`, "bad_payload", "r4"},
		{"track string", `{"type":"presence.track","ref":"r4","payload":"ann"}`, "bad_payload", "r4"},
		{"broadcast without payload", `{"type":"broadcast","ref":"r5"}`, "bad_payload", "r5"},
		{"broadcast without event", `{"type":"broadcast","ref":"r5","payload":{"data":1}}`, "bad_payload", "r5"},
		{"broadcast empty event", `{"type":"broadcast","ref":"r5","payload":{"event":"","data":1}}`, "bad_payload", "r5"},
		{"broadcast null event", `{"type":"broadcast","ref":"r5","payload":{"event":null,"data":1}}`, "bad_payload", "r5"},
		{"broadcast number event", `{"type":"broadcast","ref":"r5","payload":{"event":5,"data":1}}`, "bad_payload", "r5"},
		{"broadcast array", `{"type":"broadcast","ref":"r5","payload":["click",1]}`, "bad_payload", "r5"},
		{"broadcast string", `{"type":"broadcast","ref":"r5","payload":"click"}`, "bad_payload", "r5"},
		{"auth without payload", `{"type":"auth","ref":"r6"}`, "bad_payload", "r6"},
		{"auth without token", `{"type":"auth","ref":"r6","payload":{}}`, "bad_payload", "r6"},
		{"auth empty token", `{"type":"auth","ref":"r6","payload":{"token":""}}`, "bad_payload", "r6"},
		{"auth number token", `{"type":"auth","ref":"r6","payload":{"token":5}}`, "bad_payload", "r6"},
		{"auth bare token", `{"type":"auth","ref":"r6","payload":"t.k.n"}`, "bad_payload", "r6"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, ref, err := DecodeNative([]byte(tt.frame))
			if err == nil {
				t.Fatalf("got no error, want %s", tt.code)
			}
			if err.Code != tt.code {
				t.Errorf("got code %q (%s), want %q", err.Code, err.Message, tt.code)
			}
			if err.Message == "" {
				t.Errorf("got an empty message, want a human text")
			}
			if ref != tt.wantRef {
				t.Errorf("got ref %q, want %q", ref, tt.wantRef)
			}
		})
	}
}

// TestDecodeNativeKeepsRefWhenTypeIsNotString: a frame whose "type" is not a string is a
// JSON object with a readable string "ref"; its error frame must carry that ref (DESIGN.md
// section 3: "with the request's ref when it had one") so that the client can match it to
// the request.
func TestDecodeNativeKeepsRefWhenTypeIsNotString(t *testing.T) {
	for _, frame := range []string{
		`{"type":5,"ref":"r1"}`,
		`{"type":["cursor"],"ref":"r1","payload":{}}`,
		`{"ref":"r1","type":{"name":"cursor"}}`,
	} {
		t.Run(frame, func(t *testing.T) {
			_, ref, err := DecodeNative([]byte(frame))
			if err == nil || err.Code != "bad_json" {
				t.Fatalf("got error %v, want bad_json", err)
			}
			if ref != "r1" {
				t.Errorf("got ref %q, want %q", ref, "r1")
			}
		})
	}
}

// TestDecodeNativeRejectsInvalidUTF8: every frame is a UTF-8 text message and payloads are
// relayed verbatim in other clients' text frames. encoding/json accepts invalid UTF-8
// inside strings and json.RawMessage keeps the bytes, so an accepted payload with invalid
// UTF-8 ends up in text frames sent to everyone else in the document, and browsers close a
// WebSocket on a text frame that is not UTF-8. DecodePhx refuses such frames; DecodeNative
// must too.
func TestDecodeNativeRejectsInvalidUTF8(t *testing.T) {
	for _, frame := range []string{
		"{\"type\":\"cursor\",\"payload\":{\"x\":\"\xff\"}}",
		"{\"type\":\"presence.track\",\"ref\":\"r\",\"payload\":{\"name\":\"\xc3\"}}",
		"{\"type\":\"broadcast\",\"ref\":\"r\",\"payload\":{\"event\":\"e\",\"data\":\"\xed\xa0\x80\"}}",
		"{\"type\":\"ping\",\"ref\":\"r\",\"payload\":\"\xfe\"}",
	} {
		t.Run(fmt.Sprintf("%q", frame), func(t *testing.T) {
			c, _, err := DecodeNative([]byte(frame))
			if err == nil {
				t.Fatalf("got command with data %q (not UTF-8), want error bad_json", c.Data)
			}
			if err.Code != "bad_json" {
				t.Errorf("got code %q, want bad_json", err.Code)
			}
		})
	}
}

// objectOfSize returns a JSON object of exactly n bytes (n >= 8).
func objectOfSize(n int) string {
	return `{"k":"` + strings.Repeat("a", n-8) + `"}`
}

// broadcastOfSize returns a broadcast payload of exactly n bytes (n >= 23).
func broadcastOfSize(n int) string {
	return `{"event":"e","data":"` + strings.Repeat("b", n-23) + `"}`
}

func TestDecodeNativeLimits(t *testing.T) {
	if len(objectOfSize(100)) != 100 || len(broadcastOfSize(100)) != 100 {
		t.Fatal("payload builders are off")
	}
	tests := []struct {
		typ     string
		limit   int
		payload func(n int) string
	}{
		{"cursor", 512, objectOfSize},
		{"presence.track", 4096, objectOfSize},
		{"broadcast", 16384, broadcastOfSize},
	}
	for _, tt := range tests {
		for _, n := range []int{tt.limit - 1, tt.limit, tt.limit + 1} {
			for _, pad := range []string{"", " \n\t"} {
				name := fmt.Sprintf("%s/%d bytes", tt.typ, n)
				if pad != "" {
					name += " with white space around"
				}
				t.Run(name, func(t *testing.T) {
					p := tt.payload(n)
					frame := `{"type":"` + tt.typ + `","ref":"big","payload":` + pad + p + pad + `}`
					c, ref, err := DecodeNative([]byte(frame))
					if ref != "big" {
						t.Errorf("got ref %q, want %q", ref, "big")
					}
					if n > tt.limit {
						if err == nil || err.Code != "payload_too_large" {
							t.Fatalf("got error %v, want payload_too_large", err)
						}
						return
					}
					if err != nil {
						t.Fatalf("got error %v, want none", err)
					}
					want := p
					if tt.typ == "broadcast" {
						want = `"` + strings.Repeat("b", n-23) + `"`
					}
					if string(c.Data) != want {
						t.Errorf("got %d bytes of data, want %d", len(c.Data), len(want))
					}
				})
			}
		}
	}
}

func TestDecodeNativeDoesNotAlias(t *testing.T) {
	for _, frame := range []string{
		`{"type":"cursor","ref":"a","payload":{"x":1}}`,
		`{"type":"cursor","payload":{ "x" : 1 }}`,
		`{"type":"presence.track","ref":"a","payload":{"n":"ann"}}`,
		`{"type":"broadcast","ref":"a","payload":{"event":"e","data":{"v":[1,2]}}}`,
		`{"type":"ping","ref":"a","payload":{"t":1}}`,
		`{"type":"auth","ref":"a","payload":{"token":"tok"}}`,
	} {
		t.Run(frame, func(t *testing.T) {
			buf := []byte(frame)
			c, _, err := DecodeNative(buf)
			if err != nil {
				t.Fatal(err)
			}
			before := cmdOf(c)
			for i := range buf {
				buf[i] = 'X'
			}
			if after := cmdOf(c); after != before {
				t.Errorf("after overwriting the frame: got %v, want %v", after, before)
			}
		})
	}
}

// nativeShape checks a server frame against the shapes of DESIGN.md section 3.
func nativeShape(frame []byte) error {
	if !utf8.Valid(frame) {
		return errors.New("frame is not UTF-8")
	}
	var f map[string]json.RawMessage
	if err := json.Unmarshal(frame, &f); err != nil {
		return fmt.Errorf("frame is not a JSON object: %v", err)
	}
	for k := range f {
		if k != "type" && k != "ref" && k != "payload" {
			return fmt.Errorf("unexpected key %q", k)
		}
	}
	var typ string
	if err := json.Unmarshal(f["type"], &typ); err != nil {
		return fmt.Errorf("type: %v", err)
	}
	if r, ok := f["ref"]; ok {
		if err := shapeString(r); err != nil {
			return fmt.Errorf("ref: %v", err)
		}
	}
	p, hasPayload := f["payload"]
	switch typ {
	case "welcome":
		return shapeObjectOf(p, map[string]func(json.RawMessage) error{"id": shapeString, "user": shapeString, "doc": shapeString})
	case "presence.state":
		return shapeMembers(p)
	case "presence.diff":
		return shapeObjectOf(p, map[string]func(json.RawMessage) error{"joins": shapeMembers, "leaves": shapeMembers})
	case "cursors":
		var list []json.RawMessage
		if err := json.Unmarshal(p, &list); err != nil || list == nil {
			return fmt.Errorf("cursors payload %s is not an array", p)
		}
		for _, c := range list {
			if err := shapeObjectOf(c, map[string]func(json.RawMessage) error{"id": shapeString, "data": shapeObjectOrNull}); err != nil {
				return fmt.Errorf("cursor %s: %v", c, err)
			}
		}
		return nil
	case "broadcast":
		return shapeObjectOf(p, map[string]func(json.RawMessage) error{"from": shapeString, "event": shapeString, "data": shapeAny})
	case "ok":
		if _, ok := f["ref"]; !ok || hasPayload {
			return errors.New("ok must have a ref and no payload")
		}
		return nil
	case "error":
		return shapeObjectOf(p, map[string]func(json.RawMessage) error{"code": shapeString, "message": shapeString})
	case "pong":
		return nil
	}
	return fmt.Errorf("unknown type %q", typ)
}

// object checks that raw is an object with exactly the keys of fields, each valid.
func shapeObjectOf(raw json.RawMessage, fields map[string]func(json.RawMessage) error) error {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil || m == nil {
		return fmt.Errorf("%s is not an object", raw)
	}
	if len(m) != len(fields) {
		return fmt.Errorf("got keys %v, want %v", slices.Sorted(maps.Keys(m)), slices.Sorted(maps.Keys(fields)))
	}
	for k, check := range fields {
		v, ok := m[k]
		if !ok {
			return fmt.Errorf("no %q in %s", k, raw)
		}
		if err := check(v); err != nil {
			return fmt.Errorf("%s: %v", k, err)
		}
	}
	return nil
}

func shapeMembers(raw json.RawMessage) error {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil || m == nil {
		return fmt.Errorf("members %s are not an object", raw)
	}
	for id, e := range m {
		if err := shapeObjectOf(e, map[string]func(json.RawMessage) error{"user": shapeString, "state": shapeObject}); err != nil {
			return fmt.Errorf("member %q: %v", id, err)
		}
	}
	return nil
}

func shapeString(raw json.RawMessage) error {
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return fmt.Errorf("%s is not a string", raw)
	}
	return nil
}

func shapeObject(raw json.RawMessage) error {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil || m == nil {
		return fmt.Errorf("%s is not an object", raw)
	}
	return nil
}

func shapeObjectOrNull(raw json.RawMessage) error {
	if string(raw) == "null" {
		return nil
	}
	return shapeObject(raw)
}

func shapeAny(raw json.RawMessage) error {
	if !json.Valid(raw) {
		return fmt.Errorf("%s is not JSON", raw)
	}
	return nil
}

func TestAppendNativeGolden(t *testing.T) {
	sess := &collab.Session{ID: "s-1f3a", User: "ann", Doc: "realtime:room-1"}
	ann := presence.Entry{User: "ann", State: json.RawMessage(`{"name":"Ann","color":"#e33"}`), Rev: 3}
	annOld := presence.Entry{User: "ann", State: json.RawMessage(`{"name":"Ann","color":"#00f"}`), Rev: 2}
	bob := presence.Entry{User: "bob", State: json.RawMessage(`{}`), Rev: 1}
	_, unknownRef, unknown := DecodeNative([]byte(`{"type":"jump","ref":"9"}`))
	tests := []struct {
		file string
		ev   collab.Event
	}{
		{"server_welcome.json", collab.Event{Session: sess, Kind: collab.EventWelcome}},
		{"server_welcome_escaped.json", collab.Event{Kind: collab.EventWelcome,
			Session: &collab.Session{ID: "s-2", User: "Zoë \"Z\" <z@x>\\\n", Doc: "doc:1"}}},
		{"server_presence_state.json", collab.Event{Session: sess, Kind: collab.EventPresenceState, State: presence.Members{"s-1f3a": ann}}},
		{"server_presence_state_empty.json", collab.Event{Session: sess, Kind: collab.EventPresenceState}},
		{"server_presence_diff_join.json", collab.Event{Session: sess, Kind: collab.EventPresenceDiff,
			Diff: presence.Diff{Joins: presence.Members{"s-2b": bob}}}},
		{"server_presence_diff_update.json", collab.Event{Session: sess, Kind: collab.EventPresenceDiff,
			Diff: presence.Diff{Joins: presence.Members{"s-1f3a": ann}, Prev: presence.Members{"s-1f3a": annOld}}}},
		{"server_presence_diff_leave.json", collab.Event{Session: sess, Kind: collab.EventPresenceDiff,
			Diff: presence.Diff{Leaves: presence.Members{"s-2b": bob}}}},
		{"server_broadcast.json", collab.Event{Session: sess, Kind: collab.EventBroadcast, From: "s-2b", Name: "reaction",
			Data: json.RawMessage(`{"emoji":"🎉","at":[0.5,0.25]}`)}},
		{"server_broadcast_null.json", collab.Event{Session: sess, Kind: collab.EventBroadcast, From: "s-2b", Name: "click"}},
		{"server_ok.json", collab.Event{Session: sess, Kind: collab.EventOK, Ref: "2"}},
		{"server_error_ref.json", collab.Event{Session: sess, Kind: collab.EventError, Ref: "4",
			Err: collab.Errorf(collab.ErrCodeBadPayload, `broadcast payload must be {"event": non-empty string, "data": any}`)}},
		{"server_error.json", collab.Event{Session: sess, Kind: collab.EventError,
			Err: collab.Errorf(collab.ErrCodeRateLimited, "too many messages; this one was dropped")}},
		{"server_error_unknown_type.json", collab.Event{Session: sess, Kind: collab.EventError, Ref: unknownRef, Err: unknown}},
		{"server_pong.json", collab.Event{Session: sess, Kind: collab.EventPong, Ref: "5", Data: json.RawMessage(`{"t":1700000000123}`)}},
		{"server_pong_empty.json", collab.Event{Session: sess, Kind: collab.EventPong}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			prefix := []byte("previous frame;")
			out := AppendNative(bytes.Clone(prefix), &tt.ev)
			if !bytes.HasPrefix(out, prefix) {
				t.Fatalf("AppendNative changed what dst held: %q", out)
			}
			got := out[len(prefix):]
			if err := nativeShape(got); err != nil {
				t.Errorf("%s: %v", got, err)
			}
			checkGolden(t, tt.file, got)
		})
	}
}

func checkGolden(t *testing.T, file string, got []byte) {
	t.Helper()
	if *updateNative {
		if err := os.WriteFile(filepath.Join("testdata", "native", file), append(bytes.Clone(got), '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	if want := readNativeGolden(t, file); !bytes.Equal(got, want) {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}

// TestAppendNativeFrameContent parses the golden server frames and checks what they say,
// so that a golden file rewritten with -update cannot quietly change the protocol.
func TestAppendNativeFrameContent(t *testing.T) {
	tests := []struct {
		file string
		want string // the frame as JSON, compared after parsing
	}{
		{"server_welcome.json", `{"type":"welcome","payload":{"id":"s-1f3a","user":"ann","doc":"realtime:room-1"}}`},
		{"server_welcome_escaped.json", `{"type":"welcome","payload":{"id":"s-2","user":"Zoë \"Z\" <z@x>\\\n","doc":"doc:1"}}`},
		{"server_presence_state.json", `{"type":"presence.state","payload":{"s-1f3a":{"user":"ann","state":{"name":"Ann","color":"#e33"}}}}`},
		{"server_presence_state_empty.json", `{"type":"presence.state","payload":{}}`},
		{"server_presence_diff_join.json", `{"type":"presence.diff","payload":{"joins":{"s-2b":{"user":"bob","state":{}}},"leaves":{}}}`},
		{"server_presence_diff_update.json", `{"type":"presence.diff","payload":{"joins":{"s-1f3a":{"user":"ann","state":{"name":"Ann","color":"#e33"}}},"leaves":{}}}`},
		{"server_presence_diff_leave.json", `{"type":"presence.diff","payload":{"joins":{},"leaves":{"s-2b":{"user":"bob","state":{}}}}}`},
		{"server_broadcast.json", `{"type":"broadcast","payload":{"from":"s-2b","event":"reaction","data":{"emoji":"🎉","at":[0.5,0.25]}}}`},
		{"server_broadcast_null.json", `{"type":"broadcast","payload":{"from":"s-2b","event":"click","data":null}}`},
		{"server_ok.json", `{"type":"ok","ref":"2"}`},
		{"server_error_ref.json", `{"type":"error","ref":"4","payload":{"code":"bad_payload","message":"broadcast payload must be {\"event\": non-empty string, \"data\": any}"}}`},
		{"server_error.json", `{"type":"error","payload":{"code":"rate_limited","message":"too many messages; this one was dropped"}}`},
		{"server_error_unknown_type.json", `{"type":"error","ref":"9","payload":{"code":"unknown_type","message":"unknown type \"jump\""}}`},
		{"server_pong.json", `{"type":"pong","ref":"5","payload":{"t":1700000000123}}`},
		{"server_pong_empty.json", `{"type":"pong"}`},
		{"server_cursors.json", `{"type":"cursors","payload":[{"id":"s-2b","data":{"x":0.42,"y":0.17}},{"id":"s-3c","data":null},{"id":"s-4d","data":null}]}`},
		{"server_cursors_one.json", `{"type":"cursors","payload":[{"id":"s-2b","data":{"x":1,"y":0}}]}`},
		{"server_cursors_empty.json", `{"type":"cursors","payload":[]}`},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			assertJSONEqual(t, readNativeGolden(t, tt.file), []byte(tt.want))
		})
	}
}

func assertJSONEqual(t *testing.T, got, want []byte) {
	t.Helper()
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatalf("%s: %v", got, err)
	}
	if err := json.Unmarshal(want, &w); err != nil {
		t.Fatalf("want %s: %v", want, err)
	}
	if !reflect.DeepEqual(g, w) {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}

// TestAppendNativeManyMembers checks frames whose member maps have several entries: they
// are written in map order, so they are compared as JSON.
func TestAppendNativeManyMembers(t *testing.T) {
	m := presence.Members{
		"s-1": {User: "ann", State: json.RawMessage(`{"c":"red"}`), Rev: 1},
		"s-2": {User: "bob", State: json.RawMessage(`{}`), Rev: 4},
		"s-3": {User: "ann", State: json.RawMessage(`{"sel":[1,2],"name":"Ann \"2\""}`), Rev: 2},
	}
	tests := []struct {
		name string
		ev   collab.Event
		want string
	}{
		{"presence.state", collab.Event{Kind: collab.EventPresenceState, State: m},
			`{"type":"presence.state","payload":{"s-1":{"user":"ann","state":{"c":"red"}},"s-2":{"user":"bob","state":{}},"s-3":{"user":"ann","state":{"sel":[1,2],"name":"Ann \"2\""}}}}`},
		{"presence.diff", collab.Event{Kind: collab.EventPresenceDiff, Diff: presence.Diff{
			Joins:  presence.Members{"s-1": m["s-1"], "s-3": m["s-3"]},
			Leaves: presence.Members{"s-2": m["s-2"], "s-9": {User: "zed", State: json.RawMessage(`{"z":null}`)}},
			Prev:   presence.Members{"s-1": m["s-2"]},
		}}, `{"type":"presence.diff","payload":{"joins":{"s-1":{"user":"ann","state":{"c":"red"}},"s-3":{"user":"ann","state":{"sel":[1,2],"name":"Ann \"2\""}}},"leaves":{"s-2":{"user":"bob","state":{}},"s-9":{"user":"zed","state":{"z":null}}}}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := AppendNative(nil, &tt.ev)
			if err := nativeShape(got); err != nil {
				t.Errorf("%s: %v", got, err)
			}
			assertJSONEqual(t, got, []byte(tt.want))
		})
	}
}

func TestAppendNativeCursors(t *testing.T) {
	tests := []struct {
		file  string
		slots []collab.CursorEntry
	}{
		{"server_cursors.json", []collab.CursorEntry{
			{ID: "s-2b", Data: json.RawMessage(`{"x":0.42,"y":0.17}`)},
			{ID: "s-3c", Data: json.RawMessage(`null`)},
			{ID: "s-4d"}, // no data: hidden
		}},
		{"server_cursors_one.json", []collab.CursorEntry{{ID: "s-2b", Data: json.RawMessage(`{"x":1,"y":0}`)}}},
		{"server_cursors_empty.json", nil},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			prefix := []byte("x")
			out := AppendNativeCursors(bytes.Clone(prefix), tt.slots)
			if !bytes.HasPrefix(out, prefix) {
				t.Fatalf("AppendNativeCursors changed what dst held: %q", out)
			}
			got := out[len(prefix):]
			if err := nativeShape(got); err != nil {
				t.Errorf("%s: %v", got, err)
			}
			checkGolden(t, tt.file, got)
		})
	}
}

// TestAppendNativeStrings checks that ids, users, event names, refs and messages of any
// content come out as JSON strings that read back as what went in.
func TestAppendNativeStrings(t *testing.T) {
	for _, s := range []string{
		"", "plain", `quo"te`, `back\slash`, "new\nline\ttab\r", "\x00\x01\x1f\x7f", "é ü 漢字 🎉",
		"<script>&amp;</script>", "\u2028\u2029", "ends with \\", strings.Repeat("long ", 100),
	} {
		t.Run(fmt.Sprintf("%q", s), func(t *testing.T) {
			frames := [][]byte{
				AppendNative(nil, &collab.Event{Kind: collab.EventWelcome, Session: &collab.Session{ID: s, User: s, Doc: s}}),
				AppendNative(nil, &collab.Event{Kind: collab.EventBroadcast, From: s, Name: s, Data: json.RawMessage(`1`)}),
				AppendNative(nil, &collab.Event{Kind: collab.EventOK, Ref: s}),
				AppendNative(nil, &collab.Event{Kind: collab.EventError, Ref: s, Err: &collab.Error{Code: "bad_json", Message: s}}),
				AppendNative(nil, &collab.Event{Kind: collab.EventPresenceState, State: presence.Members{s: {User: s, State: json.RawMessage(`{}`)}}}),
				AppendNativeCursors(nil, []collab.CursorEntry{{ID: s, Data: json.RawMessage(`null`)}}),
			}
			for _, f := range frames {
				if err := nativeShape(f); err != nil {
					t.Errorf("%s: %v", f, err)
				}
				var v any
				if err := json.Unmarshal(f, &v); err != nil {
					t.Fatalf("%s: %v", f, err)
				}
				if !containsString(v, s) {
					t.Errorf("%s: %q does not read back", f, s)
				}
			}
		})
	}
}

// containsString reports whether s is a string or key anywhere in the JSON value v.
func containsString(v any, s string) bool {
	switch v := v.(type) {
	case string:
		return v == s
	case map[string]any:
		for k, e := range v {
			if k == s || containsString(e, s) {
				return true
			}
		}
	case []any:
		for _, e := range v {
			if containsString(e, s) {
				return true
			}
		}
	}
	return false
}

// encodeClientFrame writes c back as a client frame.
func encodeClientFrame(c collab.Command) []byte {
	typ := map[collab.CommandKind]string{
		collab.CmdCursor: "cursor", collab.CmdTrack: "presence.track", collab.CmdUntrack: "presence.untrack",
		collab.CmdBroadcast: "broadcast", collab.CmdPing: "ping", collab.CmdAuth: "auth",
	}[c.Kind]
	b := []byte(`{"type":`)
	b = collab.AppendJSONString(b, typ)
	if c.Ref != "" {
		b = append(b, `,"ref":`...)
		b = collab.AppendJSONString(b, c.Ref)
	}
	switch c.Kind {
	case collab.CmdCursor, collab.CmdTrack, collab.CmdPing:
		if len(c.Data) > 0 {
			b = append(b, `,"payload":`...)
			b = append(b, c.Data...)
		}
	case collab.CmdBroadcast:
		b = append(b, `,"payload":{"event":`...)
		b = collab.AppendJSONString(b, c.Name)
		b = append(b, `,"data":`...)
		b = append(b, c.Data...)
		b = append(b, '}')
	case collab.CmdAuth:
		b = append(b, `,"payload":{"token":`...)
		b = collab.AppendJSONString(b, c.Token)
		b = append(b, '}')
	}
	return append(b, '}')
}

var nativeErrorCodes = []string{"bad_json", "unknown_type", "bad_payload", "payload_too_large"}

// FuzzDecodeNative checks that DecodeNative never panics, that an error has one of the
// decoder's machine codes and makes a well-formed error frame, and that an accepted
// command is within its limits, makes well-formed server frames, and reads back the same
// when written again as a client frame.
func FuzzDecodeNative(f *testing.F) {
	files, err := filepath.Glob(filepath.Join("testdata", "native", "client_*.json"))
	if err != nil || len(files) == 0 {
		f.Fatalf("got %d seed files, %v; want some", len(files), err)
	}
	for _, file := range files {
		f.Add(readNativeGolden(f, filepath.Base(file)))
	}
	for _, s := range []string{
		`{"type":"cursor"}`, `{"type":"ping","payload":null}`, `{"type":"broadcast","payload":{"event":"e"}}`,
		`{"type":5,"ref":"r"}`, `{"type":"x","ref":"r"}`, `{"ref":"r"}`, `null`, `[]`, ``,
		`{"type":"cursor","ref":"r","payload":{ "a" : [ 1 , "b c" ] }}`,
		`{"type":"presence.track","payload":{"n":"\u00e9\ud83c\udf89<>&"}}`,
		`{"type":"cursor","payload":` + objectOfSize(513) + `}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, frame []byte) {
		c, ref, perr := DecodeNative(frame)
		if perr != nil {
			if !slices.Contains(nativeErrorCodes, perr.Code) {
				t.Fatalf("got code %q, want one of %v", perr.Code, nativeErrorCodes)
			}
			out := AppendNative(nil, &collab.Event{Kind: collab.EventError, Ref: ref, Err: perr})
			if err := nativeShape(out); err != nil {
				t.Fatalf("error frame %s: %v", out, err)
			}
			return
		}
		if ref != c.Ref {
			t.Fatalf("got ref %q and command ref %q, want the same", ref, c.Ref)
		}
		var out []byte
		switch c.Kind {
		case collab.CmdCursor:
			if shapeObjectOrNull(c.Data) != nil || len(c.Data) > collab.MaxCursorBytes {
				t.Fatalf("accepted cursor %q", c.Data)
			}
			out = AppendNativeCursors(nil, []collab.CursorEntry{{ID: "s", Data: c.Data}})
		case collab.CmdTrack:
			if shapeObject(c.Data) != nil || len(c.Data) > collab.MaxStateBytes {
				t.Fatalf("accepted presence state %q", c.Data)
			}
			out = AppendNative(nil, &collab.Event{Kind: collab.EventPresenceDiff,
				Diff: presence.Diff{Joins: presence.Members{"s": {User: "u", State: c.Data}}}})
		case collab.CmdBroadcast:
			if c.Name == "" || !json.Valid(c.Data) || len(c.Data) > collab.MaxBroadcastBytes {
				t.Fatalf("accepted broadcast %q %q", c.Name, c.Data)
			}
			out = AppendNative(nil, &collab.Event{Kind: collab.EventBroadcast, From: "s", Name: c.Name, Data: c.Data})
		case collab.CmdPing:
			if len(c.Data) > 0 && !json.Valid(c.Data) {
				t.Fatalf("accepted ping payload %q", c.Data)
			}
			out = AppendNative(nil, &collab.Event{Kind: collab.EventPong, Ref: c.Ref, Data: c.Data})
		case collab.CmdAuth:
			if c.Token == "" {
				t.Fatalf("accepted an empty token")
			}
		case collab.CmdUntrack:
		default:
			t.Fatalf("got kind %d", c.Kind)
		}
		if out != nil {
			// Invalid UTF-8 in a payload is relayed as is (see
			// TestDecodeNativeRejectsInvalidUTF8); the frame must still be JSON.
			if utf8.Valid(frame) {
				if err := nativeShape(out); err != nil {
					t.Fatalf("server frame %s: %v", out, err)
				}
			} else if !json.Valid(out) {
				t.Fatalf("server frame %q is not JSON", out)
			}
		}
		again := encodeClientFrame(c)
		c2, _, err := DecodeNative(again)
		if err != nil {
			t.Fatalf("re-decoding %s: %v", again, err)
		}
		if g, w := cmdOf(c2), cmdOf(c); g != w {
			t.Fatalf("decode(encode(c)) changed c:\ngot  %v\nwant %v", g, w)
		}
	})
}
