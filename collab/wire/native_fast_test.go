package wire

import (
	"bytes"
	"testing"
)

// FuzzCursorFastPath checks that the cursor fast path decodes exactly what the general
// path does, for every frame it accepts.
func FuzzCursorFastPath(f *testing.F) {
	for _, s := range []string{
		`{"type":"cursor","payload":{"x":0.5,"y":0.25}}`,
		`{"type":"cursor","payload":null}`,
		`{"type":"cursor","payload": { "x" : 1 } }`,
		`{"type":"cursor","payload":{"x":1},"ref":"r"}`,
		`{"type":"cursor","payload":{"x":1},"type":"broadcast"}`,
		`{"type":"cursor","payload":[1]}`,
		`{"type":"cursor","payload":{"s":"\xff"}}`,
		`{"type":"cursor","payload":{"a":{"b":[1,2,{"c":null}]}}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, frame []byte) {
		fast, ok := decodeCursorFast(frame)
		if !ok {
			return
		}
		slow, ref, err := decodeNative(frame)
		if err != nil || ref != "" || slow.Kind != fast.Kind || slow.Ref != fast.Ref || !bytes.Equal(slow.Data, fast.Data) {
			t.Fatalf("fast path %+v, general path %+v ref %q err %v", fast, slow, ref, err)
		}
	})
}
