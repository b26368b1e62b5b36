package wire

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"unicode/utf8"
)

// Binary frame kinds of the vsn 2.0.0 serializer. Clients send push and
// userBroadcastPush; of the server kinds realtime-js decodes only userBroadcast
// (it drops reply and broadcast frames and then throws), so the server sends
// everything else as JSON text.
const (
	phxKindPush              = 0
	phxKindReply             = 1
	phxKindBroadcast         = 2
	phxKindUserBroadcastPush = 3
	phxKindUserBroadcast     = 4
)

// User payload encodings of the user broadcast kinds.
const (
	phxEncodingBinary = 0
	phxEncodingJSON   = 1
)

var (
	errPhxBinaryEmpty      = errors.New("wire: empty phoenix binary frame")
	errPhxBinaryHeader     = errors.New("wire: phoenix binary frame shorter than its header")
	errPhxBinaryLengths    = errors.New("wire: phoenix binary frame shorter than its header's lengths say")
	errPhxBinaryUTF8       = errors.New("wire: phoenix binary frame ref, topic, event or metadata is not valid UTF-8")
	errPhxBinaryEncoding   = errors.New("wire: phoenix user broadcast payload encoding is neither 0 (binary) nor 1 (JSON)")
	errPhxBinaryJSON       = errors.New("wire: phoenix user broadcast payload is not valid UTF-8 JSON")
	errPhxBinaryMetadata   = errors.New("wire: phoenix user broadcast metadata is not a JSON object")
	errPhxBinaryServerKind = errors.New("wire: phoenix binary frame kind is server-to-client only")
	errPhxBase64           = errors.New("wire: binary broadcast payload is not a JSON string of standard base64")
)

// decodePhxBinary decodes a vsn 2.0.0 binary frame: a push (kind 0) or a user
// broadcast push (kind 3). Every length is one byte and every string is UTF-8.
func decodePhxBinary(data []byte) (PhxMessage, error) {
	if len(data) == 0 {
		return PhxMessage{}, errPhxBinaryEmpty
	}
	switch kind := data[0]; kind {
	case phxKindPush:
		return decodePhxPush(data)
	case phxKindUserBroadcastPush:
		return decodePhxUserBroadcastPush(data)
	case phxKindReply, phxKindBroadcast, phxKindUserBroadcast:
		return PhxMessage{}, fmt.Errorf("%w: %d", errPhxBinaryServerKind, kind)
	default:
		return PhxMessage{}, fmt.Errorf("wire: unknown phoenix binary frame kind %d", kind)
	}
}

// decodePhxPush decodes kind 0:
//
//	0, len(join_ref), len(ref), len(topic), len(event), join_ref, ref, topic, event, payload
func decodePhxPush(data []byte) (PhxMessage, error) {
	const header = 5
	if len(data) < header {
		return PhxMessage{}, errPhxBinaryHeader
	}
	fields, rest, err := phxBinaryStrings(data[header:], data[1:header])
	if err != nil {
		return PhxMessage{}, err
	}
	return PhxMessage{
		JoinRef: phxRefFromBinary(fields[0]),
		Ref:     phxRefFromBinary(fields[1]),
		Topic:   fields[2],
		Event:   fields[3],
		Raw:     bytes.Clone(rest),
		Binary:  true,
	}, nil
}

// decodePhxUserBroadcastPush decodes kind 3:
//
//	3, len(join_ref), len(ref), len(topic), len(user_event), len(metadata), encoding,
//	join_ref, ref, topic, user_event, metadata, user_payload
//
// into a "broadcast" message whose Payload, for JSON encoding, is the JSON form
// {"type":"broadcast","event":user_event,"payload":user_payload, metadata keys...}:
// what realtime-js sends as text when it cannot send binary.
func decodePhxUserBroadcastPush(data []byte) (PhxMessage, error) {
	const header = 7
	if len(data) < header {
		return PhxMessage{}, errPhxBinaryHeader
	}
	fields, rest, err := phxBinaryStrings(data[header:], data[1:header-1])
	if err != nil {
		return PhxMessage{}, err
	}
	b := &PhxUserBroadcast{Event: fields[3]}
	if meta := fields[4]; meta != "" {
		if !json.Valid([]byte(meta)) || firstJSONByte([]byte(meta)) != '{' {
			return PhxMessage{}, errPhxBinaryMetadata
		}
		b.Meta = json.RawMessage(meta)
	}
	m := PhxMessage{
		JoinRef:   phxRefFromBinary(fields[0]),
		Ref:       phxRefFromBinary(fields[1]),
		Topic:     fields[2],
		Event:     PhxEventBroadcast,
		Broadcast: b,
		Binary:    true,
	}
	switch data[header-1] {
	case phxEncodingBinary:
		b.Payload = bytes.Clone(rest)
	case phxEncodingJSON:
		// Trimmed so that the payload reads back the same from the JSON form.
		rest = bytes.Trim(rest, " \t\r\n")
		// JSON text is UTF-8; the message may be re-sent in a text frame.
		if !utf8.Valid(rest) || !json.Valid(rest) {
			return PhxMessage{}, errPhxBinaryJSON
		}
		b.Payload = bytes.Clone(rest)
		b.JSON = true
		m.Payload = phxBroadcastPayload(nil, b.Event, b.Payload, b.Meta)
	default:
		return PhxMessage{}, errPhxBinaryEncoding
	}
	return m, nil
}

// phxBinaryStrings cuts len(lengths) strings off the front of body, whose sizes are
// the bytes of lengths, and returns them and what follows.
func phxBinaryStrings(body, lengths []byte) ([]string, []byte, error) {
	fields := make([]string, len(lengths))
	for i, n := range lengths {
		if len(body) < int(n) {
			return nil, nil, errPhxBinaryLengths
		}
		if !utf8.Valid(body[:n]) {
			return nil, nil, errPhxBinaryUTF8
		}
		fields[i] = string(body[:n])
		body = body[n:]
	}
	return fields, body, nil
}

// phxRefFromBinary maps the empty ref to null: binary frames cannot carry null, and
// realtime-js writes a null ref as "".
func phxRefFromBinary(s string) PhxRef {
	if s == "" {
		return PhxRef{}
	}
	return PhxRefOf(s)
}

// phxBroadcastPayload appends the JSON form of a user broadcast,
// {"type":"broadcast","event":event,"payload":payload}, followed by the members of
// the metadata object meta other than those three keys. An empty payload is written
// as {}, as realtime-js does for a missing one. meta must be a valid JSON object.
func phxBroadcastPayload(dst []byte, event string, payload []byte, meta json.RawMessage) []byte {
	dst = append(dst, `{"type":"broadcast","event":`...)
	dst = appendPhxString(dst, event)
	dst = append(dst, `,"payload":`...)
	dst = appendPhxValue(dst, payload)
	if len(meta) > 0 {
		dec := json.NewDecoder(bytes.NewReader(meta))
		if _, err := dec.Token(); err == nil { // the opening brace
			for dec.More() {
				tok, err := dec.Token()
				key, ok := tok.(string)
				var val json.RawMessage
				if err != nil || !ok || dec.Decode(&val) != nil {
					break
				}
				switch key {
				case "type", "event", "payload":
					continue
				}
				dst = append(dst, ',')
				dst = appendPhxString(dst, key)
				dst = append(dst, ':')
				dst = append(dst, val...)
			}
		}
	}
	return append(dst, '}')
}

// AppendPhxUserBroadcast appends the vsn 2.0.0 binary frame (kind 4, JSON encoding,
// no metadata) that delivers the user broadcast event with JSON payload on topic:
//
//	4, len(topic), len(event), 0, 1, topic, event, payload
//
// realtime-js hands it to on('broadcast') as {type:"broadcast", event, payload}, the
// same as the JSON text form. An empty payload is sent as {}. When topic or event is
// longer than 255 bytes it returns dst unchanged and ErrPhxTooLong: send the text
// form (PhxBroadcast) instead.
func AppendPhxUserBroadcast(dst []byte, topic, event string, payload json.RawMessage) ([]byte, error) {
	if len(payload) == 0 {
		payload = json.RawMessage("{}")
	}
	return appendPhxUserBroadcast(dst, topic, event, phxEncodingJSON, payload)
}

// AppendPhxUserBroadcastBinary is AppendPhxUserBroadcast for a raw-bytes user payload
// (encoding 0), which realtime-js hands over as an ArrayBuffer. Only vsn 2.0.0
// sockets can receive it: such a payload has no JSON form.
func AppendPhxUserBroadcastBinary(dst []byte, topic, event string, payload []byte) ([]byte, error) {
	return appendPhxUserBroadcast(dst, topic, event, phxEncodingBinary, payload)
}

// AppendPhxUserBroadcastBase64 is AppendPhxUserBroadcastBinary for a payload held as b64,
// a JSON string of its standard base64 (how the core carries binary payloads): the bytes
// are decoded straight into the frame. A b64 that is not such a string is an error.
func AppendPhxUserBroadcastBase64(dst []byte, topic, event string, b64 json.RawMessage) ([]byte, error) {
	if len(b64) < 2 || b64[0] != '"' || b64[len(b64)-1] != '"' {
		return dst, errPhxBase64
	}
	frame, err := appendPhxUserBroadcast(dst, topic, event, phxEncodingBinary, nil)
	if err != nil {
		return dst, err
	}
	frame, err = base64.StdEncoding.AppendDecode(frame, b64[1:len(b64)-1])
	if err != nil {
		return dst, fmt.Errorf("%w: %w", errPhxBase64, err)
	}
	return frame, nil
}

func appendPhxUserBroadcast(dst []byte, topic, event string, encoding byte, payload []byte) ([]byte, error) {
	if len(topic) > 255 || len(event) > 255 {
		return dst, ErrPhxTooLong
	}
	dst = append(dst, phxKindUserBroadcast, byte(len(topic)), byte(len(event)), 0, encoding)
	dst = append(dst, topic...)
	dst = append(dst, event...)
	return append(dst, payload...), nil
}
