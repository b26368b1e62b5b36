package collab

import (
	"encoding/json"

	"collabd/presence"
)

// Payload limits of the native protocol (DESIGN.md section 3), in bytes of JSON.
const (
	MaxCursorBytes    = 512
	MaxStateBytes     = 4 << 10
	MaxBroadcastBytes = 16 << 10
	// DefaultMaxPresenceBytes bounds a document's whole presence (Config.MaxPresenceBytes).
	DefaultMaxPresenceBytes = 8 << 20
)

// CommandKind is what a client asks for.
type CommandKind uint8

// The commands every protocol decodes into.
const (
	CmdCursor    CommandKind = iota + 1 // Data: the cursor object, or null to hide it
	CmdTrack                            // Data: the whole presence state object
	CmdUntrack                          // leave presence, stay connected
	CmdBroadcast                        // Name and Data: a custom event
	CmdPing                             // Data: echoed in the pong
	CmdAuth                             // Token: a fresh token; handled by the web layer
)

// Command is one decoded client request.
type Command struct {
	Kind  CommandKind
	Ref   string          // echoed in the reply; empty means no ok is wanted
	Name  string          // broadcast event name
	Data  json.RawMessage // see CommandKind
	Token string          // CmdAuth
	// Binary marks a broadcast whose payload is bytes, not JSON (a realtime-js ArrayBuffer):
	// Data is then a JSON string holding their standard base64.
	Binary bool
}

// EventKind is what a client is told.
type EventKind uint8

// The events the core hands to a connection's writer.
const (
	EventWelcome       EventKind = iota + 1 // the session is a member from now on
	EventPresenceState                      // State: everyone present
	EventPresenceDiff                       // Diff: joins, updates and leaves
	EventBroadcast                          // From, Name, Data
	EventOK                                 // Ref: a request succeeded
	EventError                              // Ref, Err: a request failed; the connection stays
	EventPong                               // Ref, Data: the ping's
	EventFrame                              // Data: a text frame the web layer encoded (a reply that belongs to no session)
)

// Event is one message for one session. Maps and raw messages in it are shared between
// recipients and must not be changed.
type Event struct {
	Session *Session
	Kind    EventKind
	Ref     string
	State   presence.Members
	Diff    presence.Diff
	From    string // broadcast sender's session id
	Name    string // broadcast event name
	Data    json.RawMessage
	Err     *Error
	// Binary marks a broadcast whose payload is bytes: Data is a JSON string holding their
	// standard base64 (Command.Binary).
	Binary bool
}

// size estimates the bytes the event takes in a queue and on the wire.
func (e *Event) size() int {
	n := 64 + len(e.Ref) + len(e.Name) + len(e.Data)
	for _, m := range [...]presence.Members{e.State, e.Diff.Joins, e.Diff.Leaves, e.Diff.Prev} {
		for id, en := range m {
			n += 32 + len(id) + len(en.User) + len(en.State)
		}
	}
	if e.Err != nil {
		n += len(e.Err.Message)
	}
	return n
}
