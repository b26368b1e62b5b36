package wire

import (
	"encoding/json"
	"unicode/utf8"
)

// AppendPhx appends m as a text frame of the serializer vsn: for PhxVsn2 the array
// [join_ref,ref,topic,event,payload], for any other vsn the PhxVsn1 object
// {"join_ref":...,"ref":...,"topic":...,"event":...,"payload":...}, the key order
// Phoenix writes. Null refs are written as null, a nil Payload as {}; Payload is
// written verbatim and must be valid JSON. Raw and Broadcast are ignored: a message
// whose payload exists only as bytes has no text form.
func AppendPhx(dst []byte, vsn string, m PhxMessage) []byte {
	if vsn == PhxVsn2 {
		dst = append(dst, '[')
		dst = appendPhxRef(dst, m.JoinRef)
		dst = append(dst, ',')
		dst = appendPhxRef(dst, m.Ref)
		dst = append(dst, ',')
		dst = appendPhxString(dst, m.Topic)
		dst = append(dst, ',')
		dst = appendPhxString(dst, m.Event)
		dst = append(dst, ',')
		dst = appendPhxValue(dst, m.Payload)
		return append(dst, ']')
	}
	dst = append(dst, `{"join_ref":`...)
	dst = appendPhxRef(dst, m.JoinRef)
	dst = append(dst, `,"ref":`...)
	dst = appendPhxRef(dst, m.Ref)
	dst = append(dst, `,"topic":`...)
	dst = appendPhxString(dst, m.Topic)
	dst = append(dst, `,"event":`...)
	dst = appendPhxString(dst, m.Event)
	dst = append(dst, `,"payload":`...)
	dst = appendPhxValue(dst, m.Payload)
	return append(dst, '}')
}

// PhxReply returns the phx_reply to the client message req, with payload
// {"status":status,"response":response} (a nil response is {}). It carries req's
// join_ref, ref and topic, which is how realtime-js matches it to its push: a
// heartbeat's reply has a null join_ref, a join's has join_ref == ref.
func PhxReply(req PhxMessage, status string, response json.RawMessage) PhxMessage {
	p := make([]byte, 0, len(`{"status":"","response":}`)+len(status)+len(response)+2)
	p = append(p, `{"status":`...)
	p = appendPhxString(p, status)
	p = append(p, `,"response":`...)
	p = appendPhxValue(p, response)
	p = append(p, '}')
	return PhxMessage{JoinRef: req.JoinRef, Ref: req.Ref, Topic: req.Topic, Event: PhxEventReply, Payload: p}
}

// PhxReplyError returns the error reply {"status":"error","response":{"reason":reason}}
// to req. realtime-js shows the response's values joined by ", " (a refused join
// becomes CHANNEL_ERROR with reason as its message) and rejoins after a backoff.
func PhxReplyError(req PhxMessage, reason string) PhxMessage {
	r := make([]byte, 0, len(`{"reason":""}`)+len(reason)+2)
	r = append(r, `{"reason":`...)
	r = appendPhxString(r, reason)
	r = append(r, '}')
	return PhxReply(req, PhxStatusError, r)
}

// PhxClose returns the phx_close that confirms a leave or ends a channel. Phoenix
// sends it with both refs set to the channel's join_ref, not the phx_leave's ref.
func PhxClose(joinRef PhxRef, topic string) PhxMessage {
	return PhxMessage{JoinRef: joinRef, Ref: joinRef, Topic: topic, Event: PhxEventClose, Payload: json.RawMessage("{}")}
}

// PhxBroadcastBase64 is PhxBroadcast for a binary user payload, for a socket that cannot
// receive it in a binary frame (vsn 1.0.0): the payload is b64, a JSON string holding the
// standard base64 of the bytes, and "encoding":"base64" says so:
// {"type":"broadcast","event":event,"payload":"AAEC","encoding":"base64"}.
func PhxBroadcastBase64(topic, event string, b64 json.RawMessage) PhxMessage {
	p := make([]byte, 0, len(`{"type":"broadcast","event":"","payload":,"encoding":"base64"}`)+len(event)+len(b64)+2)
	p = phxBroadcastPayload(p, event, b64, json.RawMessage(`{"encoding":"base64"}`))
	return PhxMessage{Topic: topic, Event: PhxEventBroadcast, Payload: p}
}

// PhxSystem returns the Supabase Realtime system message that tells a channel's client
// why the server ends it, {"extension":"system","status":status,"message":message,
// "channel":channel}; realtime-js hands it to on('system') listeners. Send PhxClose after.
func PhxSystem(joinRef PhxRef, topic, channel, status, message string) PhxMessage {
	p := make([]byte, 0, 64+len(status)+len(message)+len(channel))
	p = append(p, `{"extension":"system","status":`...)
	p = appendPhxString(p, status)
	p = append(p, `,"message":`...)
	p = appendPhxString(p, message)
	p = append(p, `,"channel":`...)
	p = appendPhxString(p, channel)
	p = append(p, '}')
	return PhxMessage{JoinRef: joinRef, Topic: topic, Event: PhxEventSystem, Payload: p}
}

// PhxBroadcast returns the JSON text form of a user broadcast, with null refs:
// [null,null,topic,"broadcast",{"type":"broadcast","event":event,"payload":payload}].
// It is how a vsn 1.0.0 socket receives every broadcast, and how a vsn 2.0.0 socket
// receives one that does not fit a binary frame. An empty payload is sent as {}.
func PhxBroadcast(topic, event string, payload json.RawMessage) PhxMessage {
	p := make([]byte, 0, len(`{"type":"broadcast","event":"","payload":}`)+len(event)+len(payload)+2)
	p = phxBroadcastPayload(p, event, payload, nil)
	return PhxMessage{Topic: topic, Event: PhxEventBroadcast, Payload: p}
}

func appendPhxRef(dst []byte, r PhxRef) []byte {
	if !r.Valid {
		return append(dst, "null"...)
	}
	return appendPhxString(dst, r.Value)
}

// appendPhxValue appends the JSON value v, or {} when v is empty: a missing payload
// is an empty object both to Phoenix and to realtime-js.
func appendPhxValue(dst []byte, v []byte) []byte {
	if len(v) == 0 {
		return append(dst, "{}"...)
	}
	return append(dst, v...)
}

const phxHex = "0123456789abcdef"

// appendPhxString appends s as a JSON string the way JSON.stringify writes it: only
// '"', '\\' and control characters are escaped, so frames match the captured ones
// byte for byte (encoding/json would also escape <, > and &). Invalid UTF-8 becomes
// U+FFFD, since text frames must be UTF-8.
func appendPhxString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', phxHex[c>>4], phxHex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i++
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
