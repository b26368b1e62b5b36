package wire_test

import (
	"encoding/json"
	"fmt"
	"testing"

	"collabd/collab"
	"collabd/collab/wire"
)

// go test -run '^$' -bench . -benchmem ./collab/wire/

func BenchmarkDecodeNative(b *testing.B) {
	frames := map[string][]byte{
		"cursor":    []byte(`{"type":"cursor","payload":{"x":0.4213,"y":0.1734,"t":1718000000000123}}`),
		"hide":      []byte(`{"type":"cursor","payload":null}`),
		"broadcast": []byte(`{"type":"broadcast","ref":"12","payload":{"event":"reaction","data":{"emoji":"+1"}}}`),
	}
	for _, name := range []string{"cursor", "hide", "broadcast"} {
		frame := frames[name]
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(len(frame)))
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := wire.DecodeNative(frame); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// cursorEntries returns n cursor entries as the loader sends them.
func cursorEntries(n int) []collab.CursorEntry {
	entries := make([]collab.CursorEntry, n)
	for i := range entries {
		entries[i] = collab.CursorEntry{
			ID:   fmt.Sprintf("%016x", 0x5f2c9e01a7b34d68+i),
			Data: json.RawMessage(fmt.Sprintf(`{"x":0.%04d,"y":0.%04d,"t":17180000%08d}`, i*37%10000, i*91%10000, i)),
		}
	}
	return entries
}

// BenchmarkAppendNativeCursors encodes one cursors frame of n entries: once per tick and
// document, shared by every recipient that takes all of it.
func BenchmarkAppendNativeCursors(b *testing.B) {
	for _, n := range []int{1, 19, 64} {
		entries := cursorEntries(n)
		b.Run(fmt.Sprint("entries=", n), func(b *testing.B) {
			var buf []byte
			b.ReportAllocs()
			for b.Loop() {
				buf = wire.AppendNativeCursors(buf[:0], entries)
			}
			b.SetBytes(int64(len(buf)))
		})
	}
}
