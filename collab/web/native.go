package web

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/gofiber/contrib/websocket"
	"github.com/gofiber/fiber/v2"

	"collabd/collab"
	"collabd/collab/wire"
)

// nativeReadLimit is the largest client frame: the largest payload (a broadcast) with room
// for its envelope. Larger frames close the connection with 1009.
const nativeReadLimit = collab.MaxBroadcastBytes + 4<<10

// maxBadFrames is how many bad frames a connection may send in a row before it is closed
// with 4000.
const maxBadFrames = 20

// admission is what the checks before a connection to a document found, for its handler.
type admission struct {
	doc   string
	user  string    // the user query (auth off only)
	ident *identity // nil: auth off, or the client sends its token first thing (WebSocket)
	slot  *slot     // the connection's place in the limits, released when it ends
}

const localsUpgrade = "collabd.upgrade"

// upgradeNative checks a native connection before the upgrade and answers plain HTTP when
// it cannot go on: 400 bad document id or user, 426 not a WebSocket, 403 origin or permission,
// 401 bad token, 429 connection limit, 503 draining.
func (s *Server) upgradeNative(c *fiber.Ctx) error {
	doc, err := docParam(c)
	if err != nil {
		return s.refuse(c, refusedBadDoc, err.Error())
	}
	if !websocket.IsWebSocketUpgrade(c) {
		return s.refuse(c, refusedNotWS, "this endpoint speaks WebSocket only")
	}
	u, err := s.admit(c, doc, false)
	if u == nil {
		return err // refused: the answer is written
	}
	c.Locals(localsUpgrade, u)
	return s.handOver(c, u.slot, c.Next)
}

// docParam returns the request's {doc} path parameter, unescaped and checked, as a string
// of its own (Fiber's parameters live in a buffer that is reused after the handler), or
// the reason to answer 400 with.
func docParam(c *fiber.Ctx) (string, error) {
	doc, err := url.PathUnescape(c.Params("doc"))
	if err != nil {
		return "", fmt.Errorf("bad document id: %w", err)
	}
	if err := collab.ValidDocID(doc); err != nil {
		return "", fmt.Errorf("bad %w", err)
	}
	return strings.Clone(doc), nil
}

// admit applies the checks every connection to a document shares, after its endpoint's
// own: draining and origin (503, 403), the user (400) or the token (401, 403), and the
// connection limits (429). With tokenNow the token must come with this request when auth is
// on; otherwise a request without one is left for a first auth message (ident nil). A nil
// admission means the request was refused and answered (err: a failure to answer).
func (s *Server) admit(c *fiber.Ctx, doc string, tokenNow bool) (*admission, error) {
	if r, msg := s.checkCommon(c); r.status != 0 {
		return nil, s.refuse(c, r, msg)
	}
	a := &admission{doc: doc}
	if s.auth == nil {
		// With auth on the token names the user and the query is ignored.
		if a.user = strings.Clone(c.Query("user")); a.user != "" {
			if err := collab.ValidUserID(a.user); err != nil {
				return nil, s.refuse(c, refusedBadUser, "bad user: "+err.Error())
			}
		}
	} else if tok := bearer(c); tok != "" {
		id, err := s.auth.verifyUser(tok)
		if err != nil {
			return nil, s.refuse(c, refusedToken, err.Error())
		}
		if !id.allows(doc) {
			return nil, s.refuse(c, refusedDocument, "token does not allow document "+doc)
		}
		a.ident = &id
	} else if tokenNow {
		return nil, s.refuse(c, refusedToken, "token missing: send it with this request (token query or Authorization: Bearer)")
	}
	if a.slot = s.limits.acquire(c.IP()); a.slot == nil {
		return nil, s.refuse(c, refusedConnLimit, "too many connections")
	}
	return a, nil
}

// checkCommon applies the checks every WebSocket endpoint shares: draining and origin.
// It still accepts while only /readyz says unready (the drain delay of a shutdown).
func (s *Server) checkCommon(c *fiber.Ctx) (refusal, string) {
	if !s.accepting() {
		return refusedDraining, "instance is draining or not connected, try another"
	}
	if !s.originAllowed(c) {
		return refusedOrigin, "origin not allowed"
	}
	return refusal{}, ""
}

func (s *Server) refuse(c *fiber.Ctx, r refusal, msg string) error {
	s.metrics.refusedUpgrade(r)
	return c.Status(r.status).SendString(msg + "\n")
}

// bearer returns the token of the token query parameter or the Authorization header.
func bearer(c *fiber.Ctx) string {
	if t := c.Query("token"); t != "" {
		return t
	}
	h := c.Get(fiber.HeaderAuthorization)
	if len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
		return strings.TrimSpace(h[7:])
	}
	return ""
}

// writeBuffers lends WebSocket write buffers to connections for the length of a write.
var writeBuffers = &sync.Pool{}

func (s *Server) wsConfig() websocket.Config {
	return websocket.Config{
		HandshakeTimeout: 10 * time.Second,
		// Idle connections hold as little as possible: a small read buffer (a cursor frame
		// is under 100 bytes; larger frames take several reads), and a write buffer only
		// while writing, from a pool shared by every connection.
		ReadBufferSize:  512,
		WriteBufferSize: 4096,
		WriteBufferPool: writeBuffers,
		RecoverHandler: func(ws *websocket.Conn) {
			if p := recover(); p != nil {
				s.log.Error("panic in connection handler", "panic", p)
			}
		},
	}
}

func (s *Server) nativeHandler() fiber.Handler {
	return websocket.New(func(ws *websocket.Conn) {
		u := ws.Locals(localsUpgrade).(*admission)
		s.serveConn(ws, u.slot, nativeReadLimit, nativeEncoder{}, func(c *conn) *collab.CloseError {
			return s.readNative(c, u)
		})
	}, s.wsConfig())
}

// readNative runs a native connection: authentication when the upgrade carried no token,
// the join, then one command per frame until the connection ends.
func (s *Server) readNative(c *conn, u *admission) *collab.CloseError {
	c.extendOnPong()
	ident := u.ident
	var authRef string
	if s.auth != nil && ident == nil {
		id, ref, cerr := s.firstAuth(c, u.doc)
		if cerr != nil {
			return cerr
		}
		ident, authRef = &id, ref
	}
	m, cerr := s.joinNative(c, u.doc, u.user, ident, authRef)
	if cerr != nil {
		return cerr
	}
	defer s.hub.Leave(m.sess)
	for {
		mt, frame, cerr := c.readFrame()
		if cerr != nil {
			return cerr
		}
		if mt != websocket.TextMessage {
			s.metrics.nativeFrame(0, false)
			return errBinaryFrames
		}
		if cerr := m.handle(frame); cerr != nil {
			return cerr
		}
	}
}

// nativeMember is a native client joined to its document, whatever its transport: the
// WebSocket reader hands it every frame, the HTTP transports every line POSTed to them.
type nativeMember struct {
	srv  *Server
	c    *conn
	sess *collab.Session
	bad  int // bad frames in a row; owned by the reader (HTTP transports: httpSession.mu)
}

// joinNative makes a native client a member of doc: as the token's subject when there is a
// token, else as user. authRef is the ref of a first auth message, acknowledged first.
func (s *Server) joinNative(c *conn, doc, user string, ident *identity, authRef string) (*nativeMember, *collab.CloseError) {
	opts := collab.JoinOptions{Doc: doc, User: user, Present: true, Presence: true, Cursors: true}
	if ident != nil {
		opts.User, opts.ReadOnly = ident.user, !ident.write
		c.setExpiry(ident.expires)
	}
	if opts.User == "" {
		opts.User = "anonymous"
	}
	if authRef != "" {
		c.out.Push(collab.Event{Kind: collab.EventOK, Ref: authRef})
	}
	sess, cerr := s.join(c, opts)
	if cerr != nil {
		return nil, cerr
	}
	return &nativeMember{srv: s, c: c, sess: sess}, nil
}

// handle executes one client frame; a non-nil result ends the connection with it.
func (m *nativeMember) handle(frame []byte) *collab.CloseError {
	cmd, ref, perr := wire.DecodeNative(frame)
	m.srv.metrics.nativeFrame(cmd.Kind, perr == nil)
	if perr != nil {
		if m.bad++; m.bad > maxBadFrames {
			return collab.ErrProtocol
		}
		m.sess.Fail(ref, perr)
		return nil
	}
	m.bad = 0
	if cmd.Kind == collab.CmdAuth {
		// Verifying a token costs more than any other request: it counts like them.
		if ok, cerr := m.sess.Limit(cmd.Ref); !ok {
			return cerr
		}
		if cerr := m.srv.refreshAuth(m.c, m.sess, cmd.Token); cerr != nil {
			return cerr
		}
		if cmd.Ref != "" {
			m.c.out.Push(collab.Event{Session: m.sess, Kind: collab.EventOK, Ref: cmd.Ref})
		}
		return nil
	}
	return m.sess.Handle(cmd)
}

// join makes the connection's client a member; a join that the connection's closing
// (drain, say) cut short ends with the connection's close error.
func (s *Server) join(c *conn, opts collab.JoinOptions) (*collab.Session, *collab.CloseError) {
	sess, err := s.hub.Join(c.ctx, c.out, opts)
	if err == nil {
		return sess, nil
	}
	var cerr *collab.CloseError
	switch {
	case errors.As(err, &cerr):
		return nil, cerr
	case c.ctx.Err() != nil:
		return nil, c.out.Closed()
	}
	s.log.Error("join failed", "doc", opts.Doc, "err", err)
	return nil, collab.ErrInternal
}

// firstAuth waits for the auth message of a connection whose upgrade carried no token.
func (s *Server) firstAuth(c *conn, doc string) (identity, string, *collab.CloseError) {
	mt, frame, cerr := c.readFrameWithin(s.cfg.AuthTimeout)
	if cerr != nil {
		return identity{}, "", errAuthMissing
	}
	if mt != websocket.TextMessage {
		return identity{}, "", errAuthMissing
	}
	cmd, ref, perr := wire.DecodeNative(frame)
	if perr != nil || cmd.Kind != collab.CmdAuth {
		return identity{}, ref, errAuthMissing
	}
	id, verr := s.auth.verifyUser(cmd.Token)
	if verr != nil {
		return identity{}, ref, errAuthInvalid
	}
	if !id.allows(doc) {
		return identity{}, ref, errAuthDoc
	}
	return id, ref, nil
}

// refreshAuth takes a fresh token for a joined session: same user, same document. Its
// expiry replaces the old one and its write permission applies at once.
func (s *Server) refreshAuth(c *conn, sess *collab.Session, token string) *collab.CloseError {
	if s.auth == nil {
		return nil // auth is off: there is nothing to refresh
	}
	id, err := s.auth.verifyUser(token)
	if err != nil {
		return errAuthInvalid
	}
	if id.user != sess.User {
		return errAuthUser
	}
	if !id.allows(sess.Doc) {
		return errAuthDoc
	}
	sess.SetReadOnly(!id.write)
	c.setExpiry(id.expires)
	return nil
}

// nativeEncoder writes native frames: one per event, then one cursors frame.
type nativeEncoder struct{}

// The cursors frames are a batch's shared bytes, encoded once per document and tick for
// every member that takes all of it.
func (nativeEncoder) encode(w *frameWriter, events []collab.Event, cursors *collab.Cursors) error {
	for i := range events {
		w.buf = wire.AppendNative(w.buf[:0], &events[i])
		if err := w.text(w.buf); err != nil {
			return err
		}
	}
	return cursors.Frames(wire.NativeCursors, func(_ *collab.Session, frame []byte) error {
		return w.text(frame)
	})
}
