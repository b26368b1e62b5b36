package wire

import (
	"bytes"
	"encoding/json"
	"unicode/utf8"

	"collabd/collab"
	"collabd/presence"
)

// nativeFrame is the envelope of every native frame.
type nativeFrame struct {
	Type    json.RawMessage `json:"type"`
	Ref     json.RawMessage `json:"ref"`
	Payload json.RawMessage `json:"payload"`
}

// DecodeNative turns one client text frame into a command. A frame it cannot use gives an
// error for an error frame, with the frame's ref when it had a readable one.
func DecodeNative(frame []byte) (collab.Command, string, *collab.Error) {
	if cmd, ok := decodeCursorFast(frame); ok {
		return cmd, "", nil
	}
	return decodeNative(frame)
}

// decodeNative is DecodeNative without the fast path for cursors.
func decodeNative(frame []byte) (collab.Command, string, *collab.Error) {
	if !utf8.Valid(frame) {
		// Relayed as is, it would make every browser that receives it drop its connection.
		return collab.Command{}, "", collab.Errorf(collab.ErrCodeBadJSON, "frame is not valid UTF-8")
	}
	var f nativeFrame
	if err := json.Unmarshal(frame, &f); err != nil {
		return collab.Command{}, "", collab.Errorf(collab.ErrCodeBadJSON, "frame is not a JSON object: %v", err)
	}
	ref, ok := decodeRef(f.Ref)
	if !ok {
		return collab.Command{}, "", collab.Errorf(collab.ErrCodeBadJSON, `"ref" must be a string`)
	}
	var typ string
	if isNullJSON(f.Type) || json.Unmarshal(f.Type, &typ) != nil {
		return collab.Command{}, ref, collab.Errorf(collab.ErrCodeBadJSON, `frame has no string "type"`)
	}
	cmd := collab.Command{Ref: ref}
	p := bytes.TrimSpace(f.Payload)
	switch typ {
	case "cursor":
		cmd.Kind = collab.CmdCursor
		if len(p) > collab.MaxCursorBytes {
			return cmd, ref, collab.Errorf(collab.ErrCodeTooLarge, "cursor payload is %d bytes, the limit is %d", len(p), collab.MaxCursorBytes)
		}
		if !isObject(p) && !isNullJSON(p) {
			return cmd, ref, collab.Errorf(collab.ErrCodeBadPayload, "cursor payload must be a JSON object or null")
		}
		cmd.Data = compactOrNull(p)
	case "presence.track":
		cmd.Kind = collab.CmdTrack
		if len(p) > collab.MaxStateBytes {
			return cmd, ref, collab.Errorf(collab.ErrCodeTooLarge, "presence state is %d bytes, the limit is %d", len(p), collab.MaxStateBytes)
		}
		if !isObject(p) {
			return cmd, ref, collab.Errorf(collab.ErrCodeBadPayload, "presence.track payload must be a JSON object")
		}
		cmd.Data = compactOrNull(p)
	case "presence.untrack":
		cmd.Kind = collab.CmdUntrack
	case "broadcast":
		cmd.Kind = collab.CmdBroadcast
		if len(p) > collab.MaxBroadcastBytes {
			return cmd, ref, collab.Errorf(collab.ErrCodeTooLarge, "broadcast payload is %d bytes, the limit is %d", len(p), collab.MaxBroadcastBytes)
		}
		var b struct {
			Event *string         `json:"event"`
			Data  json.RawMessage `json:"data"`
		}
		if !isObject(p) || json.Unmarshal(p, &b) != nil || b.Event == nil || *b.Event == "" {
			return cmd, ref, collab.Errorf(collab.ErrCodeBadPayload, `broadcast payload must be {"event": non-empty string, "data": any}`)
		}
		cmd.Name = *b.Event
		cmd.Data = compactOrNull(b.Data)
	case "ping":
		cmd.Kind = collab.CmdPing
		cmd.Data = p
	case "auth":
		cmd.Kind = collab.CmdAuth
		var a struct {
			Token string `json:"token"`
		}
		if !isObject(p) || json.Unmarshal(p, &a) != nil || a.Token == "" {
			return cmd, ref, collab.Errorf(collab.ErrCodeBadPayload, `auth payload must be {"token": "<jwt>"}`)
		}
		cmd.Token = a.Token
	default:
		return cmd, ref, collab.Errorf(collab.ErrCodeUnknownType, "unknown type %q", truncate(typ, 64))
	}
	return cmd, ref, nil
}

// cursorPrefix starts the frame clients send most, 30-60 times a second each.
var cursorPrefix = []byte(`{"type":"cursor","payload":`)

// decodeCursorFast decodes {"type":"cursor","payload":<object or null>} without building
// the envelope; any other frame, or a cursor frame with more keys, reports false and
// takes the general path, which gives the same result.
func decodeCursorFast(frame []byte) (collab.Command, bool) {
	if len(frame) < len(cursorPrefix)+2 || !bytes.HasPrefix(frame, cursorPrefix) || frame[len(frame)-1] != '}' {
		return collab.Command{}, false
	}
	p := bytes.Trim(frame[len(cursorPrefix):len(frame)-1], " \t\r\n") // JSON's white space only
	if len(p) > collab.MaxCursorBytes || !(isObject(p) || string(p) == "null") || !utf8.Valid(p) || !json.Valid(p) {
		return collab.Command{}, false
	}
	return collab.Command{Kind: collab.CmdCursor, Data: compactOrNull(p)}, true
}

func decodeRef(raw json.RawMessage) (string, bool) {
	if len(raw) == 0 || isNullJSON(raw) {
		return "", true
	}
	var ref string
	if err := json.Unmarshal(raw, &ref); err != nil {
		return "", false
	}
	return ref, true
}

func isObject(p []byte) bool { return len(p) > 0 && p[0] == '{' }

func isNullJSON(p []byte) bool { return len(p) == 0 || string(p) == "null" }

// compactOrNull returns p without insignificant white space (it is relayed to many), or
// null when p is empty.
func compactOrNull(p []byte) json.RawMessage {
	if len(p) == 0 {
		return json.RawMessage("null")
	}
	if bytes.IndexAny(p, " \t\r\n") < 0 {
		return bytes.Clone(p)
	}
	var b bytes.Buffer
	if json.Compact(&b, p) != nil {
		return bytes.Clone(p)
	}
	return b.Bytes()
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// AppendNative appends the native frame of ev.
func AppendNative(dst []byte, ev *collab.Event) []byte {
	s := ev.Session
	switch ev.Kind {
	case collab.EventWelcome:
		dst = append(dst, `{"type":"welcome","payload":{"id":`...)
		dst = collab.AppendJSONString(dst, s.ID)
		dst = append(dst, `,"user":`...)
		dst = collab.AppendJSONString(dst, s.User)
		dst = append(dst, `,"doc":`...)
		dst = collab.AppendJSONString(dst, s.Doc)
		return append(dst, "}}"...)
	case collab.EventPresenceState:
		dst = append(dst, `{"type":"presence.state","payload":`...)
		dst = appendMembers(dst, ev.State)
		return append(dst, '}')
	case collab.EventPresenceDiff:
		dst = append(dst, `{"type":"presence.diff","payload":{"joins":`...)
		dst = appendMembers(dst, ev.Diff.Joins)
		dst = append(dst, `,"leaves":`...)
		dst = appendMembers(dst, ev.Diff.Leaves)
		return append(dst, "}}"...)
	case collab.EventBroadcast:
		dst = append(dst, `{"type":"broadcast","payload":{"from":`...)
		dst = collab.AppendJSONString(dst, ev.From)
		dst = append(dst, `,"event":`...)
		dst = collab.AppendJSONString(dst, ev.Name)
		dst = append(dst, `,"data":`...)
		dst = appendRaw(dst, ev.Data)
		if ev.Binary { // data is the base64 string of a binary payload
			dst = append(dst, `,"encoding":"base64"`...)
		}
		return append(dst, "}}"...)
	case collab.EventOK:
		dst = append(dst, `{"type":"ok","ref":`...)
		dst = collab.AppendJSONString(dst, ev.Ref)
		return append(dst, '}')
	case collab.EventError:
		dst = append(dst, `{"type":"error",`...)
		if ev.Ref != "" {
			dst = append(dst, `"ref":`...)
			dst = collab.AppendJSONString(dst, ev.Ref)
			dst = append(dst, ',')
		}
		dst = append(dst, `"payload":{"code":`...)
		dst = collab.AppendJSONString(dst, ev.Err.Code)
		dst = append(dst, `,"message":`...)
		dst = collab.AppendJSONString(dst, ev.Err.Message)
		return append(dst, "}}"...)
	case collab.EventFrame:
		return append(dst, ev.Data...)
	case collab.EventPong:
		dst = append(dst, `{"type":"pong"`...)
		if ev.Ref != "" {
			dst = append(dst, `,"ref":`...)
			dst = collab.AppendJSONString(dst, ev.Ref)
		}
		if len(ev.Data) > 0 {
			dst = append(dst, `,"payload":`...)
			dst = append(dst, ev.Data...)
		}
		return append(dst, '}')
	}
	return dst
}

// NativeCursors encodes native cursors frames: {"type":"cursors","payload":[entries]}.
var NativeCursors = &collab.CursorEncoder{
	Prefix: `{"type":"cursors","payload":[`,
	Suffix: "]}",
	Entry: func(dst []byte, e *collab.CursorEntry) []byte {
		dst = append(dst, `{"id":`...)
		dst = collab.AppendJSONString(dst, e.ID)
		dst = append(dst, `,"data":`...)
		dst = appendRaw(dst, e.Data)
		return append(dst, '}')
	},
}

// AppendNativeCursors appends one cursors frame holding every entry.
func AppendNativeCursors(dst []byte, entries []collab.CursorEntry) []byte {
	return NativeCursors.Append(dst, entries)
}

// appendMembers appends {"<id>":{"user":...,"state":...},...}.
func appendMembers(dst []byte, m presence.Members) []byte {
	dst = append(dst, '{')
	first := true
	for id, e := range m {
		if !first {
			dst = append(dst, ',')
		}
		first = false
		dst = collab.AppendJSONString(dst, id)
		dst = append(dst, `:{"user":`...)
		dst = collab.AppendJSONString(dst, e.User)
		dst = append(dst, `,"state":`...)
		dst = appendRaw(dst, e.State)
		dst = append(dst, '}')
	}
	return append(dst, '}')
}

func appendRaw(dst []byte, raw json.RawMessage) []byte {
	if len(raw) == 0 {
		return append(dst, "null"...)
	}
	return append(dst, raw...)
}
