package web

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/url"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/gofiber/fiber/v2"

	"collabd/collab"
)

// The HTTP fallback transports (docs/protocol.md): Server-Sent Events and long polling
// carry the native protocol's frames for clients whose network breaks WebSocket. Their
// sessions are found by an unguessable secret, the sid, never by the session id that
// every member sees in presence.

const (
	transportSSE  = "sse"
	transportPoll = "poll"
)

// httpSession is one SSE or long-polling connection, from its opening request to its end,
// and for a while after (a tombstone that tells late requests how it ended).
type httpSession struct {
	sid    string
	kind   string // transportSSE or transportPoll
	doc    string
	c      *conn
	joined chan struct{} // closed once the join ended: member is set, or the join failed
	member *nativeMember // set before joined closes; nil when the join failed
	poll   *pollSession  // long polling only

	// mu makes POSTs take turns, so that frames are handled in order; it guards member.bad.
	mu sync.Mutex

	// final is how the session ended; guarded by Server.sessMu. nil while it runs.
	final *collab.CloseError
}

// checkOpen checks the request that opens an SSE stream or a poll session and answers
// plain HTTP when it cannot go on: 400 bad document id or user, 503 draining, 403 origin or
// permission, 401 token missing or bad (it must come with this request: these transports
// have no first-message auth), 429 connection limit.
func (s *Server) checkOpen(c *fiber.Ctx) (*admission, error) {
	doc, err := docParam(c)
	if err != nil {
		return nil, s.refuse(c, refusedBadDoc, err.Error())
	}
	return s.admit(c, doc, true)
}

// newHTTPSession registers a session of transport kind for o.
func (s *Server) newHTTPSession(kind string, o *admission, c *conn) *httpSession {
	hs := &httpSession{sid: randomKey(), kind: kind, doc: o.doc, c: c, joined: make(chan struct{})}
	s.sessMu.Lock()
	s.sessions[hs.sid] = hs
	s.sessMu.Unlock()
	return hs
}

// endHTTPSession records how hs ended; late requests learn it (410) until the tombstone
// goes, after the time a client may take to come back. The tombstone holds only what
// lookup reads, not the connection: its outbox may still hold up to QueueBytes (a slow
// consumer's), and sessions end faster than tombstones go.
func (s *Server) endHTTPSession(hs *httpSession) {
	final := hs.c.out.Closed()
	if final == nil {
		final = errClientGone
	}
	s.sessMu.Lock()
	hs.final = final // for the requests that hold hs already
	s.sessions[hs.sid] = &httpSession{sid: hs.sid, kind: hs.kind, doc: hs.doc, final: final}
	s.sessMu.Unlock()
	time.AfterFunc(s.cfg.PollTimeout+s.cfg.PollGrace, func() {
		s.sessMu.Lock()
		delete(s.sessions, hs.sid)
		s.sessMu.Unlock()
	})
}

// lookup finds the session of a request's sid, or answers: 404 unknown (or another
// transport's, or another document's), 410 ended, with how.
func (s *Server) lookup(c *fiber.Ctx, kind string) (*httpSession, error) {
	s.sessMu.Lock()
	hs := s.sessions[c.Query("sid")]
	var final *collab.CloseError
	if hs != nil {
		final = hs.final
	}
	s.sessMu.Unlock()
	doc, _ := url.PathUnescape(c.Params("doc")) // a bad escape matches no document
	if hs == nil || hs.kind != kind || doc != hs.doc {
		return nil, jsonError(c, fiber.StatusNotFound, "unknown session: open a new one")
	}
	if final != nil {
		return nil, sendGone(c, final)
	}
	return hs, nil
}

// sendGone answers 410 for an ended session: {"close":{"code":...,"reason":"..."}}.
func sendGone(c *fiber.Ctx, cerr *collab.CloseError) error {
	b := append([]byte(`{"close":`), appendClose(nil, cerr)...)
	c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSON)
	return c.Status(fiber.StatusGone).Send(append(b, '}'))
}

// appendClose appends how a session ended as the HTTP transports tell it, in a poll's
// answer, a 410 and an SSE close event: {"code":...,"reason":"..."}.
func appendClose(b []byte, cerr *collab.CloseError) []byte {
	b = append(b, `{"code":`...)
	b = strconv.AppendInt(b, int64(cerr.Code), 10)
	b = append(b, `,"reason":`...)
	reason, _ := json.Marshal(cerr.Reason) // strings always marshal
	b = append(b, reason...)
	return append(b, '}')
}

func jsonError(c *fiber.Ctx, status int, msg string) error {
	return c.Status(status).JSON(fiber.Map{"error": msg})
}

// postFrames takes a client's frames for its session: one native frame per line. It
// answers 204 once every line was handled; 400 at the first line that is not a frame
// (those before it were handled; a frame that is a bad message gets the usual error frame
// instead); 413 when the body is larger than a WebSocket frame may be; 404 or 410 for an
// unknown or ended session.
func (s *Server) postFrames(kind string) fiber.Handler {
	return func(c *fiber.Ctx) error {
		c.Set(fiber.HeaderCacheControl, "no-store")
		if !s.originAllowed(c) {
			return jsonError(c, fiber.StatusForbidden, "origin not allowed")
		}
		hs, err := s.lookup(c, kind)
		if hs == nil {
			return err
		}
		body := c.Body()
		if len(body) > nativeReadLimit {
			return jsonError(c, fiber.StatusRequestEntityTooLarge, fmt.Sprintf("body larger than %d bytes", nativeReadLimit))
		}
		select {
		case <-hs.joined:
		case <-hs.c.ctx.Done():
		}
		hs.mu.Lock()
		defer hs.mu.Unlock()
		if cerr := hs.c.out.Closed(); cerr != nil || hs.member == nil {
			if cerr == nil {
				cerr = errClientGone
			}
			return sendGone(c, cerr)
		}
		for n, line := range bytes.Split(body, []byte("\n")) {
			line = bytes.TrimSpace(line)
			if len(line) == 0 {
				continue
			}
			if problem := notFrame(line); problem != "" {
				return jsonError(c, fiber.StatusBadRequest, fmt.Sprintf("line %d: %s", n+1, problem))
			}
			if cerr := hs.member.handle(line); cerr != nil {
				hs.c.out.Close(cerr)
				return sendGone(c, hs.c.out.Closed())
			}
		}
		return c.SendStatus(fiber.StatusNoContent)
	}
}

// notFrame says why line cannot be a native frame (a JSON object in UTF-8), or "".
func notFrame(line []byte) string {
	switch {
	case !utf8.Valid(line):
		return "not valid UTF-8"
	case line[0] != '{' || !json.Valid(line):
		return "not a JSON object: send one native frame per line"
	}
	return ""
}
