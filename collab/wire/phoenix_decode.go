package wire

import (
	"encoding/json"
	"errors"
	"fmt"
	"unicode/utf8"
)

var (
	errPhxTextUTF8      = errors.New("wire: phoenix text frame is not valid UTF-8")
	errPhxNotArray      = errors.New("wire: phoenix vsn 2.0.0 text frame is not a JSON array")
	errPhxArrayLen      = errors.New("wire: phoenix vsn 2.0.0 text frame is not a 5-element array")
	errPhxNotObject     = errors.New("wire: phoenix vsn 1.0.0 text frame is not a JSON object")
	errPhxBinaryV1      = errors.New("wire: phoenix binary frame on a vsn 1.0.0 socket")
	errPhxRefType       = errors.New("wire: phoenix ref is neither a string nor null")
	errPhxJoinRefType   = errors.New("wire: phoenix join_ref is neither a string nor null")
	errPhxTopicType     = errors.New("wire: phoenix topic is not a string")
	errPhxEventType     = errors.New("wire: phoenix event is not a string")
	errPhxPayloadObject = errors.New("wire: phoenix payload is not a JSON object")
)

// DecodePhx decodes one WebSocket frame of a socket speaking the serializer vsn (a
// value NormalizePhxVsn returned); binary tells a binary frame from a text one. The
// message does not alias data. It never panics, whatever the bytes; an error says
// what is wrong with the frame, and the socket may skip the frame or close.
func DecodePhx(vsn string, data []byte, binary bool) (PhxMessage, error) {
	switch {
	case vsn != PhxVsn1 && vsn != PhxVsn2:
		return PhxMessage{}, fmt.Errorf("%w %.32q (call NormalizePhxVsn first)", ErrPhxVsn, vsn)
	case binary && vsn == PhxVsn1:
		return PhxMessage{}, errPhxBinaryV1
	case binary:
		return decodePhxBinary(data)
	}
	// encoding/json would silently replace invalid bytes, and the message may be
	// re-sent in text frames, which must be UTF-8.
	if !utf8.Valid(data) {
		return PhxMessage{}, errPhxTextUTF8
	}
	var (
		m   PhxMessage
		err error
	)
	if vsn == PhxVsn2 {
		m, err = decodePhxArray(data)
	} else {
		m, err = decodePhxObject(data)
	}
	if err != nil {
		return PhxMessage{}, err
	}
	if m.Event == PhxEventBroadcast {
		m.Broadcast = phxTextBroadcast(m.Payload)
	}
	return m, nil
}

// decodePhxArray decodes the vsn 2.0.0 text form [join_ref, ref, topic, event, payload].
func decodePhxArray(data []byte) (PhxMessage, error) {
	if firstJSONByte(data) != '[' {
		return PhxMessage{}, errPhxNotArray
	}
	var elems []json.RawMessage
	if err := json.Unmarshal(data, &elems); err != nil {
		return PhxMessage{}, fmt.Errorf("wire: phoenix text frame is not valid JSON: %w", err)
	}
	if len(elems) != 5 {
		return PhxMessage{}, errPhxArrayLen
	}
	return phxFromFields(elems[0], elems[1], elems[2], elems[3], elems[4])
}

// decodePhxObject decodes the vsn 1.0.0 text form. Like Phoenix's Message.from_map!,
// it requires topic, event, payload and ref, takes join_ref as optional, and ignores
// other keys. Keys match exactly (encoding/json struct fields would fold case).
func decodePhxObject(data []byte) (PhxMessage, error) {
	if firstJSONByte(data) != '{' {
		return PhxMessage{}, errPhxNotObject
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(data, &obj); err != nil {
		return PhxMessage{}, fmt.Errorf("wire: phoenix text frame is not valid JSON: %w", err)
	}
	for _, k := range [...]string{"topic", "event", "payload", "ref"} {
		if _, ok := obj[k]; !ok {
			return PhxMessage{}, fmt.Errorf("wire: phoenix vsn 1.0.0 frame has no %q key", k)
		}
	}
	joinRef, ok := obj["join_ref"]
	if !ok {
		joinRef = json.RawMessage("null")
	}
	return phxFromFields(joinRef, obj["ref"], obj["topic"], obj["event"], obj["payload"])
}

// phxFromFields checks and converts the five raw JSON fields both text forms share.
func phxFromFields(joinRef, ref, topic, event, payload json.RawMessage) (PhxMessage, error) {
	var (
		m   PhxMessage
		err error
	)
	if m.JoinRef, err = phxRefFromJSON(joinRef, errPhxJoinRefType); err != nil {
		return PhxMessage{}, err
	}
	if m.Ref, err = phxRefFromJSON(ref, errPhxRefType); err != nil {
		return PhxMessage{}, err
	}
	if m.Topic, err = phxStringFromJSON(topic, errPhxTopicType); err != nil {
		return PhxMessage{}, err
	}
	if m.Event, err = phxStringFromJSON(event, errPhxEventType); err != nil {
		return PhxMessage{}, err
	}
	if firstJSONByte(payload) != '{' {
		return PhxMessage{}, errPhxPayloadObject
	}
	m.Payload = payload
	return m, nil
}

func phxRefFromJSON(raw json.RawMessage, typeErr error) (PhxRef, error) {
	if string(raw) == "null" {
		return PhxRef{}, nil
	}
	s, err := phxStringFromJSON(raw, typeErr)
	if err != nil {
		return PhxRef{}, err
	}
	return PhxRefOf(s), nil
}

func phxStringFromJSON(raw json.RawMessage, typeErr error) (string, error) {
	if firstJSONByte(raw) != '"' {
		return "", typeErr
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", typeErr
	}
	return s, nil
}

// phxTextBroadcast returns the user broadcast in a JSON broadcast payload, or nil when
// "event" is not a string. That is the test realtime-js applies before sending a
// broadcast as a binary frame, so the two forms select the same messages.
func phxTextBroadcast(payload json.RawMessage) *PhxUserBroadcast {
	var obj map[string]json.RawMessage
	if json.Unmarshal(payload, &obj) != nil {
		return nil
	}
	event, err := phxStringFromJSON(obj["event"], errPhxEventType)
	if err != nil {
		return nil
	}
	var user []byte
	if p, ok := obj["payload"]; ok {
		user = p
	}
	return &PhxUserBroadcast{Event: event, Payload: user, JSON: true}
}

// firstJSONByte returns the first byte of data after JSON whitespace, or 0.
func firstJSONByte(data []byte) byte {
	for _, c := range data {
		switch c {
		case ' ', '\t', '\n', '\r':
			continue
		}
		return c
	}
	return 0
}
