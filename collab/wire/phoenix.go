package wire

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// Phoenix serializer versions, as the vsn query parameter names them. A socket speaks
// exactly one for its whole life: PhxVsn1 frames are JSON objects, PhxVsn2 frames are
// JSON arrays plus the binary user-broadcast frames of @supabase/realtime-js.
const (
	PhxVsn1 = "1.0.0"
	PhxVsn2 = "2.0.0"
)

// Phoenix and Supabase Realtime event and topic names, so the server and tests spell
// them once.
const (
	PhxEventJoin          = "phx_join"
	PhxEventLeave         = "phx_leave"
	PhxEventReply         = "phx_reply"
	PhxEventClose         = "phx_close"
	PhxEventError         = "phx_error"
	PhxEventHeartbeat     = "heartbeat"
	PhxEventBroadcast     = "broadcast"
	PhxEventPresence      = "presence"
	PhxEventPresenceState = "presence_state"
	PhxEventPresenceDiff  = "presence_diff"
	PhxEventAccessToken   = "access_token"
	PhxEventSystem        = "system"  // Supabase Realtime's server notices on a channel
	PhxTopicPhoenix       = "phoenix" // the socket-level topic heartbeats use
	PhxStatusOK           = "ok"
	PhxStatusError        = "error"
)

// ErrPhxVsn means the client asked for a serializer version collabd does not speak.
// Phoenix refuses such a connection; so should the server (before upgrading).
var ErrPhxVsn = errors.New("wire: unsupported phoenix vsn")

// ErrPhxTooLong means a string does not fit a binary frame's one-byte length prefix;
// send the message in its JSON text form instead.
var ErrPhxTooLong = errors.New("wire: phoenix binary frame field longer than 255 bytes; send the JSON text form instead")

// PhxRef is a Phoenix join_ref or ref: a string, or null. Phoenix echoes refs back
// verbatim, and realtime-js tells a reply to its push from a server push by them, so
// null and "6" must survive a round trip. The zero value is null, which is what
// server-initiated broadcasts carry.
type PhxRef struct {
	Value string
	Valid bool // false means null
}

// PhxRefOf returns the non-null ref s.
func PhxRefOf(s string) PhxRef { return PhxRef{Value: s, Valid: true} }

// PhxMessage is one Phoenix channel message, whatever serializer carried it, so the
// server handles vsn 1.0.0 objects, vsn 2.0.0 arrays and vsn 2.0.0 binary frames with
// one code path.
type PhxMessage struct {
	JoinRef PhxRef
	Ref     PhxRef
	Topic   string
	Event   string

	// Payload is the payload, always a JSON object when set. A binary user broadcast
	// with JSON encoding (kind 3) gets the payload the client would have sent in the
	// text form, so broadcasts look the same whichever frame carried them. Payload is
	// nil only when the payload has no JSON form: a binary push (kind 0, see Raw) or a
	// user broadcast of raw bytes (kind 3, encoding 0, see Broadcast). Encoders write
	// a nil Payload as {}.
	Payload json.RawMessage

	// Raw is the opaque payload of a binary push (kind 0), nil otherwise. realtime-js
	// never sends one; Phoenix clients may.
	Raw []byte

	// Broadcast is set by DecodePhx when Event is "broadcast" and the payload names a
	// user event, whether it came as a kind-3 binary frame or as the JSON form
	// {"type":"broadcast","event":...,"payload":...}, so the server reads the user
	// event and payload in one place. Encoders ignore it.
	Broadcast *PhxUserBroadcast

	// Binary reports that the message arrived in a binary frame (vsn 2.0.0), whose
	// refs cannot be null: an empty ref there decodes as null.
	Binary bool
}

// PhxUserBroadcast is the user-level part of a Supabase broadcast: what the sender
// passed to channel.send({type: "broadcast", event, payload}).
type PhxUserBroadcast struct {
	Event string

	// Payload is the user payload: JSON text when JSON is true, raw bytes (an
	// ArrayBuffer on the client) otherwise. In the JSON form a missing "payload" key
	// leaves it nil; the kind-4 encoder then writes {} as realtime-js itself does.
	Payload []byte
	JSON    bool

	// Meta is the metadata object of a kind-3 frame, nil when the frame has none or
	// the message came as text. realtime-js 2.119.1 puts the send() keys it lets
	// through there (only "persist"); in the JSON form they are top-level payload keys.
	Meta json.RawMessage
}

// NormalizePhxVsn returns the serializer version for the vsn query parameter value:
// PhxVsn1 when it is empty (Phoenix's default when the parameter is missing), PhxVsn1
// or PhxVsn2 for a version matching "~> 1.0.0" or "~> 2.0.0" as Phoenix matches them
// (any patch level, build metadata allowed, no pre-release). Anything else is an error
// wrapping ErrPhxVsn. realtime-js 2.x sends vsn=2.0.0 unless told vsn: "1.0.0".
func NormalizePhxVsn(vsn string) (string, error) {
	if vsn == "" {
		return PhxVsn1, nil
	}
	core, _, _ := strings.Cut(vsn, "+")
	parts := strings.Split(core, ".")
	if len(parts) == 3 && parts[1] == "0" && isPhxVersionNumber(parts[2]) {
		switch parts[0] {
		case "1":
			return PhxVsn1, nil
		case "2":
			return PhxVsn2, nil
		}
	}
	return "", fmt.Errorf("%w %.32q (want 1.0.0 or 2.0.0)", ErrPhxVsn, vsn)
}

// isPhxVersionNumber reports whether s is a semver numeric identifier: digits, no
// leading zero.
func isPhxVersionNumber(s string) bool {
	if s == "" || len(s) > 1 && s[0] == '0' {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
