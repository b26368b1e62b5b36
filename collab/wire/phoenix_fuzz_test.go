package wire

import (
	"bytes"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// FuzzDecodePhx checks that DecodePhx never panics and that a decoded message survives
// re-encoding: a text message reads back identical in both vsns (and re-encodes to the
// same bytes), a binary one with a JSON form reads back from that form, and a user
// broadcast reads back from its kind-4 frame.
func FuzzDecodePhx(f *testing.F) {
	files, err := filepath.Glob(filepath.Join("testdata", "phoenix", "*"))
	if err != nil || len(files) == 0 {
		f.Fatalf("got %d seed files, %v; want some", len(files), err)
	}
	for _, file := range files {
		name := filepath.Base(file)
		f.Add(!strings.HasPrefix(name, "v1_"), strings.HasSuffix(name, ".hex"), readPhxGolden(f, name))
	}
	f.Add(true, true, []byte("\x00\x01\x00\x01\x011te\x01\x02"))
	f.Add(true, true, []byte("\x03\x00\x00\x01\x01\x10\x01te{\"persist\":true}null"))

	f.Fuzz(func(t *testing.T, v2, binary bool, data []byte) {
		vsn, other := PhxVsn1, PhxVsn2
		if v2 {
			vsn, other = PhxVsn2, PhxVsn1
		}
		m, err := DecodePhx(vsn, data, binary)
		if err != nil {
			return
		}
		if !binary {
			enc := AppendPhx(nil, vsn, m)
			m2, err := DecodePhx(vsn, enc, false)
			if err != nil {
				t.Fatalf("re-decoding %s: %v", enc, err)
			}
			if !reflect.DeepEqual(m, m2) {
				t.Fatalf("decode(encode(m)) changed m:\ngot  %s\nwant %s", phxDump(m2), phxDump(m))
			}
			if enc2 := AppendPhx(nil, vsn, m2); !bytes.Equal(enc, enc2) {
				t.Fatalf("re-encoding is unstable:\n%s\n%s", enc, enc2)
			}
			enc = AppendPhx(nil, other, m)
			if m3, err := DecodePhx(other, enc, false); err != nil || !reflect.DeepEqual(m, m3) {
				t.Fatalf("vsn %s form %s: got %s, %v; want %s", other, enc, phxDump(m3), err, phxDump(m))
			}
			return
		}
		if m.Payload != nil {
			want := m
			want.Binary = false
			if m.Broadcast != nil {
				b := *m.Broadcast
				b.Meta = nil // in the JSON form metadata keys are plain payload keys
				want.Broadcast = &b
			}
			for _, v := range []string{PhxVsn1, PhxVsn2} {
				enc := AppendPhx(nil, v, m)
				if m2, err := DecodePhx(v, enc, false); err != nil || !reflect.DeepEqual(m2, want) {
					t.Fatalf("vsn %s form %s: got %s, %v; want %s", v, enc, phxDump(m2), err, phxDump(want))
				}
			}
		}
		if b := m.Broadcast; b != nil {
			var enc []byte
			var err error
			if b.JSON {
				enc, err = AppendPhxUserBroadcast(nil, m.Topic, b.Event, b.Payload)
			} else {
				enc, err = AppendPhxUserBroadcastBinary(nil, m.Topic, b.Event, b.Payload)
			}
			if err != nil {
				t.Fatalf("AppendPhxUserBroadcast of a decoded broadcast: %v", err)
			}
			topic, event, encJSON, payload, ok := decodePhxKind4(enc)
			if !ok || topic != m.Topic || event != b.Event || encJSON != b.JSON || !bytes.Equal(payload, b.Payload) {
				t.Fatalf("kind 4 %x: got %q %q json=%v %q, want %q %q json=%v %q",
					enc, topic, event, encJSON, payload, m.Topic, b.Event, b.JSON, b.Payload)
			}
		}
	})
}

// decodePhxKind4 decodes a metadata-less kind-4 frame the way realtime-js does.
func decodePhxKind4(b []byte) (topic, event string, json bool, payload []byte, ok bool) {
	if len(b) < 5 || b[0] != 4 || b[3] != 0 || b[4] > 1 || len(b) < 5+int(b[1])+int(b[2]) {
		return "", "", false, nil, false
	}
	rest := b[5:]
	topic, rest = string(rest[:b[1]]), rest[b[1]:]
	event, rest = string(rest[:b[2]]), rest[b[2]:]
	return topic, event, b[4] == 1, rest, true
}
