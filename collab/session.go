package collab

import (
	"encoding/json"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// JoinOptions describes a membership: one client in one document.
type JoinOptions struct {
	Doc  string // a valid document id
	User string // the user behind the session (JWT subject or display id)
	// Present makes the session present with state {} from the start (native clients);
	// otherwise it appears only once it tracks (Phoenix clients).
	Present bool
	// Presence, Cursors: whether the session receives presence events and cursors.
	Presence, Cursors bool
	// SelfBroadcast makes the session receive its own broadcasts (Phoenix broadcast.self).
	SelfBroadcast bool
	// ReadOnly refuses cursors and broadcasts from this session (presence stays allowed).
	ReadOnly bool
	// Tag is the web layer's, for its writer (a Phoenix topic and join ref, say).
	Tag any
}

// Session is one membership: a client in a document, with its own limits. It delivers to
// its connection's Outbox, which several sessions may share.
type Session struct {
	ID   string
	User string
	Doc  string
	Tag  any
	Out  *Outbox
	opts JoinOptions
	hub  *Hub
	doc  *doc

	cursorLim *rate.Limiter // per-session cursor rate
	msgLim    *rate.Limiter // every other request
	strikes   *rate.Limiter // dropped messages allowed before the session is closed

	mu       sync.Mutex
	lastWarn time.Time // guarded by mu: last rate_limited error frame
	left     bool      // guarded by doc.mu: the session is no longer a member
	evicted  atomic.Bool
	// write is the write permission once SetReadOnly changed it (writeDenied or
	// writeAllowed); zero: as joined (opts.ReadOnly).
	write atomic.Int32
	// cursorJoin is the document's cursor change number at the join: the snapshot holds
	// every change up to it. Set under doc.mu before the first batch is queued for the
	// session; read by its writer.
	cursorJoin uint64
}

const (
	writeDenied  = 1
	writeAllowed = 2
)

// Options returns the options the session joined with.
func (s *Session) Options() JoinOptions { return s.opts }

// SetReadOnly changes the session's write permission after the join, when a refreshed
// token grants or takes away write; it applies from the next request on.
func (s *Session) SetReadOnly(readOnly bool) {
	v := int32(writeAllowed)
	if readOnly {
		v = writeDenied
	}
	s.write.Store(v)
}

// ReadOnly reports whether the session may not send cursors and broadcasts now.
func (s *Session) ReadOnly() bool {
	switch s.write.Load() {
	case writeDenied:
		return true
	case writeAllowed:
		return false
	}
	return s.opts.ReadOnly
}

// Limit counts a request that the web layer handles itself (a token refresh) against the
// session's message rate, as Handle counts the others. It reports whether the request may
// go on; a non-nil error means the connection must close with it.
func (s *Session) Limit(ref string) (bool, *CloseError) {
	if s.msgLim.Allow() {
		return true, nil
	}
	return false, s.limited(ref)
}

// Handle executes one client request. Recoverable problems become error events; a
// non-nil result means the connection must close with it.
func (s *Session) Handle(cmd Command) *CloseError {
	lim := s.msgLim
	if cmd.Kind == CmdCursor {
		lim = s.cursorLim
	}
	if !lim.Allow() {
		return s.limited(cmd.Ref)
	}
	switch cmd.Kind {
	case CmdCursor:
		if s.ReadOnly() {
			if s.mayWarn(cmd.Ref) { // cursors come fast: one error a second is enough
				s.fail(cmd.Ref, Errorf(ErrCodeForbidden, "this token may not write in %q", s.Doc))
			}
			return nil
		}
		s.hub.cursor(s, cmd.Data)
	case CmdTrack:
		s.hub.track(s, cmd.Ref, cmd.Data)
	case CmdUntrack:
		s.ok(cmd.Ref)
		s.hub.untrack(s)
	case CmdBroadcast:
		if s.ReadOnly() {
			s.fail(cmd.Ref, Errorf(ErrCodeForbidden, "this token may not write in %q", s.Doc))
			return nil
		}
		s.hub.broadcast(s, cmd.Name, cmd.Data, cmd.Binary)
		s.ok(cmd.Ref)
	case CmdPing:
		s.Out.push(Event{Session: s, Kind: EventPong, Ref: cmd.Ref, Data: cmd.Data})
	default:
		s.fail(cmd.Ref, Errorf(ErrCodeUnknownType, "unknown command"))
	}
	return nil
}

// limited handles a request over the rate: dropped, with an error frame at most once a
// second, and the connection closed once the client keeps it up.
func (s *Session) limited(ref string) *CloseError {
	if !s.strikes.Allow() {
		return ErrRateLimited
	}
	if s.mayWarn(ref) {
		s.fail(ref, Errorf(ErrCodeRateLimited, "too many messages; this one was dropped"))
	}
	return nil
}

// mayWarn reports whether an error frame for a dropped message should go out: always when
// the request has a ref, otherwise at most once a second.
func (s *Session) mayWarn(ref string) bool {
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if ref == "" && now.Sub(s.lastWarn) < time.Second {
		return false
	}
	s.lastWarn = now
	return true
}

func (s *Session) ok(ref string) {
	if ref != "" {
		s.Out.push(Event{Session: s, Kind: EventOK, Ref: ref})
	}
}

// Fail sends the session an error frame (for problems found before a Command exists,
// such as a frame that does not decode).
func (s *Session) Fail(ref string, err *Error) { s.fail(ref, err) }

func (s *Session) fail(ref string, err *Error) {
	s.Out.push(Event{Session: s, Kind: EventError, Ref: ref, Err: err})
}

// emptyState is the presence state of a session that has not tracked.
var emptyState = json.RawMessage(`{}`)
