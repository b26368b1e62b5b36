package collab

import (
	"encoding/json"
	"reflect"
	"testing"
)

// The bus message of cursors decodes to what encoding/json reads, by the scan for the
// form appendCursorEnvelope writes and by encoding/json for any other; invalid JSON is
// refused.
func TestDecodeCursorEnvelope(t *testing.T) {
	entries := []CursorEntry{
		{ID: "a1", Data: json.RawMessage(`{"x":0.5,"s":"} ] , \" {","n":[1,{"y":[]}]}`)},
		{ID: "b2", Data: json.RawMessage(`null`)},
		{ID: "c3", Data: json.RawMessage(`{}`)},
		{ID: "d\"4", Data: json.RawMessage(`{"é":"\u00e9"}`)},
	}
	ours, rest := appendCursorEnvelope(nil, "node-1", entries, maxCursorMessage)
	if len(rest) != 0 {
		t.Fatalf("%d entries left over", len(rest))
	}
	for _, c := range []struct {
		name, msg string
		scanned   bool
	}{
		{"ours", string(ours), false}, // an escaped id: encoding/json
		{"ours plain", `{"n":"node-1","c":[{"id":"a1","data":{"x":0.5,"s":"} ] , \" {","n":[1,{"y":[]}]}},{"id":"b2","data":null},{"id":"c3","data":{}}]}`, true},
		{"empty", `{"n":"node-1","c":[]}`, true},
		{"literal data", `{"n":"x","c":[{"id":"a","data":12.5},{"id":"b","data":true}]}`, true},
		{"other key order", `{"c":[{"data":{"x":1},"id":"a"}],"n":"x"}`, false},
		{"white space", `{ "n": "x", "c": [ { "id": "a", "data": { "x": 1 } } ] }`, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			var want cursorEnvelope
			if err := json.Unmarshal([]byte(c.msg), &want); err != nil {
				t.Fatal(err)
			}
			got, err := decodeCursorEnvelope([]byte(c.msg))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(normal(got), normal(want)) {
				t.Fatalf("got %+v, want %+v", got, want)
			}
			if _, ok := scanCursorEnvelope([]byte(c.msg)); ok != c.scanned {
				t.Fatalf("scanned %v, want %v", ok, c.scanned)
			}
		})
	}
	for _, bad := range []string{
		`{"n":"x","c":[{"id":"a","data":{"x":1}]}`,
		`{"n":"x","c":[{"id":"a","data":{"x":1}}]`,
		`{"n":"x","c":[{"id":"a","data":` + "\xff" + `}]}`,
		``,
	} {
		if env, err := decodeCursorEnvelope([]byte(bad)); err == nil {
			t.Errorf("%q decoded to %+v, want an error", bad, env)
		}
	}
}

// normal compacts the data, which encoding/json keeps as written.
func normal(env cursorEnvelope) cursorEnvelope {
	for i, c := range env.Cursors {
		b, _ := json.Marshal(c.Data)
		env.Cursors[i].Data = b
	}
	if env.Cursors == nil {
		env.Cursors = []cursorEntry{}
	}
	return env
}
