package web

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/gofiber/contrib/websocket"
	"github.com/gofiber/fiber/v2"

	"collabd/collab"
	"collabd/collab/wire"
)

// The Phoenix channel protocol that @supabase/realtime-js speaks (DESIGN.md section 6):
// one socket, many channels (topics), each a membership in the core. A topic
// "realtime:<name>" is the document <name>.

const (
	phxTopicPrefix  = "realtime:"
	phxMaxChannels  = 100 // channels one socket may join
	phxReadLimit    = collab.MaxBroadcastBytes + 8<<10
	localsPhxSocket = "collabd.phx"
)

// phxUpgrade is what the checks before a Phoenix upgrade found.
type phxUpgrade struct {
	ip     string
	vsn    string
	apikey *identity // the apikey verified as a token, when auth is on and it is one
	slot   *slot     // the socket's place in the limits, released when it ends
}

// upgradePhoenix checks a Phoenix socket before the upgrade: 426 not a WebSocket, 400
// unknown vsn, 403 origin, 429 connection limit, 503 draining. Tokens are checked per
// channel join, as Supabase Realtime does.
func (s *Server) upgradePhoenix(c *fiber.Ctx) error {
	if !websocket.IsWebSocketUpgrade(c) {
		return s.refuse(c, refusedNotWS, "this endpoint speaks WebSocket only")
	}
	vsn, err := wire.NormalizePhxVsn(c.Query("vsn"))
	if err != nil {
		return s.refuse(c, refusedBadVsn, err.Error())
	}
	if r, msg := s.checkCommon(c); r.status != 0 {
		return s.refuse(c, r, msg)
	}
	u := &phxUpgrade{ip: c.IP(), vsn: vsn}
	if s.auth != nil {
		if key := apikey(c); key != "" {
			if id, err := s.auth.verify(key); err == nil {
				u.apikey = &id
			}
		}
	}
	if u.slot = s.limits.acquire(u.ip); u.slot == nil {
		return s.refuse(c, refusedConnLimit, "too many connections")
	}
	c.Locals(localsPhxSocket, u)
	return s.handOver(c, u.slot, c.Next)
}

// apikey returns the Supabase API key of the apikey query parameter or header.
func apikey(c *fiber.Ctx) string {
	if k := c.Query("apikey"); k != "" {
		return k
	}
	return c.Get("apikey")
}

func (s *Server) phoenixHandler() fiber.Handler {
	return websocket.New(func(ws *websocket.Conn) {
		u := ws.Locals(localsPhxSocket).(*phxUpgrade)
		s.serveConn(ws, u.slot, phxReadLimit, phxEncoder{vsn: u.vsn}, func(c *conn) *collab.CloseError {
			p := &phxSocket{srv: s, c: c, up: u, channels: map[string]*phxChannel{}}
			return p.read()
		})
	}, s.wsConfig())
}

// phxSocket is the reader's state of one Phoenix socket.
//
// Each channel keeps its own token: its expiry timer ends that channel alone (phx_close),
// and a refresh changes that channel alone. Lock order: mu, then the hub's locks (a timer
// leaves the hub under mu, so that a channel is closed once).
type phxSocket struct {
	srv *Server
	c   *conn
	up  *phxUpgrade

	mu       sync.Mutex
	channels map[string]*phxChannel // guarded by mu: joined channels by topic; only the reader adds
}

// phxChannel is one joined topic; the core's session carries it as its Tag, for the
// writer. Its fields above sess do not change after the join.
type phxChannel struct {
	topic   string
	joinRef wire.PhxRef // the join's join_ref: every push of the channel carries it
	joinMsg wire.PhxRef // the join's ref, for the join reply
	ack     bool        // broadcast.ack: reply to broadcasts
	sub     string      // the subject of the join's token ("" for none, or auth off)
	private bool        // config.private: needs a token with a subject
	sess    *collab.Session

	expiry    *time.Timer // guarded by phxSocket.mu: ends the channel when its token expires
	expiryGen int         // guarded by phxSocket.mu: tells a stale timer from the current one
}

func (p *phxSocket) read() *collab.CloseError {
	p.c.extendOnPong()
	defer func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		for _, ch := range p.channels {
			p.leaveLocked(ch)
		}
	}()
	bad := 0
	for {
		mt, data, cerr := p.c.readFrame()
		if cerr != nil {
			return cerr
		}
		msg, err := wire.DecodePhx(p.up.vsn, data, mt == websocket.BinaryMessage)
		p.srv.metrics.phxFrame(msg.Event, err == nil)
		if err != nil {
			// Without a topic and ref there is nobody to reply to.
			p.srv.log.Debug("bad phoenix frame", "err", err)
			if bad++; bad > maxBadFrames {
				return collab.ErrProtocol
			}
			continue
		}
		bad = 0
		if cerr := p.handle(msg); cerr != nil {
			return cerr
		}
	}
}

func (p *phxSocket) handle(msg wire.PhxMessage) *collab.CloseError {
	if msg.Topic == wire.PhxTopicPhoenix && msg.Event == wire.PhxEventHeartbeat {
		p.reply(wire.PhxReply(msg, wire.PhxStatusOK, nil))
		return nil
	}
	if msg.Event == wire.PhxEventJoin {
		p.join(msg)
		return nil
	}
	ch := p.channel(msg.Topic)
	if ch == nil {
		if msg.Event != wire.PhxEventLeave && msg.Event != wire.PhxEventAccessToken {
			p.reply(wire.PhxReplyError(msg, "unmatched topic"))
		}
		return nil
	}
	switch msg.Event {
	case wire.PhxEventLeave:
		joined := p.leave(ch)
		p.reply(wire.PhxReply(msg, wire.PhxStatusOK, nil))
		if joined { // else its token expired meanwhile, and it was closed then
			p.reply(wire.PhxClose(ch.joinRef, ch.topic))
		}
	case wire.PhxEventAccessToken:
		return p.accessToken(ch, msg)
	case wire.PhxEventBroadcast:
		return p.broadcast(ch, msg)
	case wire.PhxEventPresence:
		return p.presence(ch, msg)
	default:
		p.reply(wire.PhxReplyError(msg, "unknown event "+truncate(msg.Event, 64)))
	}
	return nil
}

// phxJoinConfig is the config of a phx_join payload.
type phxJoinConfig struct {
	Config struct {
		Broadcast struct {
			Self bool `json:"self"`
			Ack  bool `json:"ack"`
		} `json:"broadcast"`
		Presence struct {
			Key     string `json:"key"`
			Enabled *bool  `json:"enabled"`
		} `json:"presence"`
		Private         bool              `json:"private"`
		PostgresChanges []json.RawMessage `json:"postgres_changes"`
	} `json:"config"`
	AccessToken string `json:"access_token"`
}

func (p *phxSocket) join(msg wire.PhxMessage) {
	var cfg phxJoinConfig
	if len(msg.Payload) > 0 {
		if err := json.Unmarshal(msg.Payload, &cfg); err != nil {
			p.reply(wire.PhxReplyError(msg, "bad join payload: "+err.Error()))
			return
		}
	}
	if len(cfg.Config.PostgresChanges) > 0 {
		p.reply(wire.PhxReplyError(msg, "postgres_changes is not supported by this server: use broadcast and presence"))
		return
	}
	doc := strings.TrimPrefix(msg.Topic, phxTopicPrefix)
	if err := collab.ValidDocID(doc); err != nil {
		p.reply(wire.PhxReplyError(msg, "bad topic: "+err.Error()))
		return
	}
	ident, reason := p.identify(cfg.AccessToken, doc)
	if reason == "" && cfg.Config.Private && ident != nil && ident.user == "" {
		reason = "Unauthorized: a private channel needs a user token (an access_token with a subject, sub), not only the anon key"
	}
	if reason != "" {
		p.reply(wire.PhxReplyError(msg, reason))
		return
	}
	key, reason := presenceKey(cfg.Config.Presence.Key, ident)
	if reason != "" {
		p.reply(wire.PhxReplyError(msg, reason))
		return
	}
	if old := p.channel(msg.Topic); old != nil {
		// A join of a joined topic replaces the channel, as Phoenix does.
		p.leave(old)
	} else if p.channelCount() >= phxMaxChannels {
		p.reply(wire.PhxReplyError(msg, "too many channels on this socket"))
		return
	}
	ch := &phxChannel{topic: msg.Topic, joinRef: msg.JoinRef, joinMsg: msg.Ref, ack: cfg.Config.Broadcast.Ack, private: cfg.Config.Private}
	if !ch.joinRef.Valid {
		ch.joinRef = msg.Ref
	}
	if ident != nil {
		ch.sub = ident.user
	}
	opts := collab.JoinOptions{
		Doc:           doc,
		User:          key,
		Presence:      true,
		SelfBroadcast: cfg.Config.Broadcast.Self,
		Tag:           ch,
	}
	if ident != nil {
		opts.ReadOnly = !ident.write
	}
	sess, err := p.srv.hub.Join(p.c.ctx, p.c.out, opts)
	if err != nil {
		reason := "join failed"
		if ce, ok := err.(*collab.CloseError); ok {
			reason = ce.Reason
		} else {
			p.srv.log.Error("join failed", "doc", doc, "err", err)
		}
		p.reply(wire.PhxReplyError(msg, reason))
		return
	}
	ch.sess = sess
	p.mu.Lock()
	defer p.mu.Unlock()
	p.channels[msg.Topic] = ch
	if ident != nil {
		p.setExpiryLocked(ch, ident.expires)
	}
}

// presenceKey returns the presence key a channel's member shows as, or the reason to
// refuse the join. With auth off it is the client's key, or a random one when it sets
// none. With auth on it is the token's subject, so that nobody shows as someone else: a
// key that is not the subject is refused. A token without a subject (the anon key) shows
// as a random key and may not choose one.
func presenceKey(key string, id *identity) (string, string) {
	if key != "" {
		if err := collab.ValidUserID(key); err != nil {
			return "", "bad presence key: " + err.Error()
		}
	}
	switch {
	case id == nil: // auth off
		if key == "" {
			key = randomKey()
		}
		return key, ""
	case id.user == "":
		if key != "" {
			return "", fmt.Sprintf("Unauthorized: presence key %q needs a token whose subject (sub) it is; this token has no sub: leave the key unset (put names in the tracked state)", key)
		}
		return randomKey(), ""
	case key != "" && key != id.user:
		return "", fmt.Sprintf("Unauthorized: presence key %q is not this token's subject (sub): leave the key unset or set it to the sub", key)
	}
	return id.user, ""
}

// identify checks the token of a join when auth is on: the join's access_token, else the
// socket's apikey. It returns the reason to refuse the join, or "".
func (p *phxSocket) identify(token, doc string) (*identity, string) {
	if p.srv.auth == nil {
		return nil, ""
	}
	var id *identity
	if token != "" {
		v, err := p.srv.auth.verify(token)
		if err != nil {
			return nil, "Unauthorized: " + err.Error()
		}
		id = &v
	} else if p.up.apikey != nil {
		id = p.up.apikey
	} else {
		return nil, "Unauthorized: a valid access token or apikey is required"
	}
	if !id.allows(doc) {
		return nil, "Unauthorized: You do not have permissions to read from this Channel topic: " + doc
	}
	return id, ""
}

// channel returns the joined channel of topic, or nil.
func (p *phxSocket) channel(topic string) *phxChannel {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.channels[topic]
}

func (p *phxSocket) channelCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.channels)
}

// leave ends ch's membership and reports whether it was still joined (its token may have
// expired meanwhile).
func (p *phxSocket) leave(ch *phxChannel) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.leaveLocked(ch)
}

func (p *phxSocket) leaveLocked(ch *phxChannel) bool {
	if p.channels[ch.topic] != ch {
		return false
	}
	delete(p.channels, ch.topic)
	if ch.expiry != nil {
		ch.expiry.Stop()
	}
	ch.expiryGen++
	p.srv.hub.Leave(ch.sess)
	return true
}

// endLocked closes ch from the server's side: a system message with the reason (as
// Supabase Realtime sends it), then phx_close, which realtime-js reports as CLOSED.
func (p *phxSocket) endLocked(ch *phxChannel, reason string) {
	if !p.leaveLocked(ch) {
		return
	}
	p.reply(wire.PhxSystem(ch.joinRef, ch.topic, ch.sess.Doc, wire.PhxStatusError, reason))
	p.reply(wire.PhxClose(ch.joinRef, ch.topic))
}

// setExpiryLocked makes ch end when t passes (zero: never), replacing its previous expiry.
func (p *phxSocket) setExpiryLocked(ch *phxChannel, t time.Time) {
	if ch.expiry != nil {
		ch.expiry.Stop()
		ch.expiry = nil
	}
	ch.expiryGen++
	if t.IsZero() {
		return
	}
	gen := ch.expiryGen
	// The timer's goroutine runs once and ends; Stop or a newer generation makes it a no-op.
	ch.expiry = time.AfterFunc(time.Until(t), func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		if ch.expiryGen == gen {
			p.endLocked(ch, "Token has expired")
		}
	})
}

// accessToken takes a fresh token for one channel (realtime-js sends one per channel):
// its expiry and write permission replace the channel's own. A token that cannot be used
// here ends the channel.
func (p *phxSocket) accessToken(ch *phxChannel, msg wire.PhxMessage) *collab.CloseError {
	// Verifying a token costs more than any other request: it counts like them.
	if ok, cerr := ch.sess.Limit(msg.Ref.Value); !ok {
		return cerr
	}
	if p.srv.auth == nil {
		return nil
	}
	var body struct {
		AccessToken string `json:"access_token"`
	}
	_ = json.Unmarshal(msg.Payload, &body) // an empty token is refused below
	var id *identity
	reason := "Unauthorized: access_token is empty"
	if body.AccessToken != "" {
		id, reason = p.identify(body.AccessToken, ch.sess.Doc)
	}
	switch {
	case reason != "":
	case ch.sub != "" && id.user != ch.sub:
		reason = "Unauthorized: access_token is for another user (sub) than the one that joined"
	case ch.private && id.user == "":
		reason = "Unauthorized: a private channel needs a user token (an access_token with a subject, sub)"
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if reason != "" {
		p.endLocked(ch, reason)
		return nil
	}
	if p.channels[ch.topic] == ch {
		ch.sess.SetReadOnly(!id.write)
		p.setExpiryLocked(ch, id.expires)
	}
	return nil
}

func (p *phxSocket) broadcast(ch *phxChannel, msg wire.PhxMessage) *collab.CloseError {
	b := msg.Broadcast
	ref := ""
	if ch.ack && msg.Ref.Valid {
		ref = msg.Ref.Value
	}
	switch {
	case b == nil || b.Event == "":
		p.reply(wire.PhxReplyError(msg, "broadcast needs an event"))
		return nil
	case len(b.Payload) > collab.MaxBroadcastBytes:
		p.reply(wire.PhxReplyError(msg, "broadcast payload too large"))
		return nil
	case !b.JSON:
		// An ArrayBuffer: carried as a base64 JSON string, so that every protocol and the bus
		// can hold it; vsn 2.0.0 members get the bytes back in a binary frame.
		data := make([]byte, 0, base64.StdEncoding.EncodedLen(len(b.Payload))+2)
		data = append(data, '"')
		data = base64.StdEncoding.AppendEncode(data, b.Payload)
		data = append(data, '"')
		return ch.sess.Handle(collab.Command{Kind: collab.CmdBroadcast, Ref: ref, Name: b.Event, Data: data, Binary: true})
	}
	data := json.RawMessage(b.Payload)
	if len(data) == 0 {
		data = json.RawMessage("{}")
	}
	return ch.sess.Handle(collab.Command{Kind: collab.CmdBroadcast, Ref: ref, Name: b.Event, Data: data})
}

func (p *phxSocket) presence(ch *phxChannel, msg wire.PhxMessage) *collab.CloseError {
	var body struct {
		Event   string          `json:"event"`
		Payload json.RawMessage `json:"payload"`
	}
	if err := json.Unmarshal(msg.Payload, &body); err != nil {
		p.reply(wire.PhxReplyError(msg, "bad presence payload"))
		return nil
	}
	ref := msg.Ref.Value
	switch body.Event {
	case "track":
		state := body.Payload
		if len(state) == 0 || string(state) == "null" {
			state = json.RawMessage("{}")
		}
		if len(state) > collab.MaxStateBytes || state[0] != '{' {
			p.reply(wire.PhxReplyError(msg, "presence payload must be a JSON object of at most 4 KiB"))
			return nil
		}
		return ch.sess.Handle(collab.Command{Kind: collab.CmdTrack, Ref: ref, Data: state})
	case "untrack":
		return ch.sess.Handle(collab.Command{Kind: collab.CmdUntrack, Ref: ref})
	}
	p.reply(wire.PhxReplyError(msg, "unknown presence event "+truncate(body.Event, 64)))
	return nil
}

// reply queues a frame that belongs to no session.
func (p *phxSocket) reply(m wire.PhxMessage) {
	p.c.out.Push(collab.Event{Kind: collab.EventFrame, Data: wire.AppendPhx(nil, p.up.vsn, m)})
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

func randomKey() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand)
	return hex.EncodeToString(b[:])
}

// phxEncoder writes a Phoenix socket's frames; events carry their channel in the
// session's Tag.
type phxEncoder struct{ vsn string }

func (e phxEncoder) encode(w *frameWriter, events []collab.Event, _ *collab.Cursors) error {
	for i := range events {
		ev := &events[i]
		if ev.Kind == collab.EventFrame {
			if err := w.text(ev.Data); err != nil {
				return err
			}
			continue
		}
		ch := ev.Session.Tag.(*phxChannel)
		m := wire.PhxMessage{JoinRef: ch.joinRef, Topic: ch.topic}
		switch ev.Kind {
		case collab.EventWelcome:
			m.Ref, m.Event = ch.joinMsg, wire.PhxEventReply
			m.Payload = json.RawMessage(`{"status":"ok","response":{"postgres_changes":[]}}`)
		case collab.EventPresenceState:
			m.Event = wire.PhxEventPresenceState
			m.Payload = wire.AppendPhxPresenceState(nil, ev.State)
		case collab.EventPresenceDiff:
			m.JoinRef, m.Event = wire.PhxRef{}, wire.PhxEventPresenceDiff
			m.Payload = wire.AppendPhxPresenceDiff(nil, ev.Diff)
		case collab.EventBroadcast:
			if ev.Binary {
				if e.vsn == wire.PhxVsn2 {
					frame, err := wire.AppendPhxUserBroadcastBase64(w.buf[:0], ch.topic, ev.Name, ev.Data)
					if err == nil {
						w.buf = frame
						if err := w.binary(frame); err != nil {
							return err
						}
						continue
					}
				}
				m = wire.PhxBroadcastBase64(ch.topic, ev.Name, ev.Data)
				break
			}
			if e.vsn == wire.PhxVsn2 {
				frame, err := wire.AppendPhxUserBroadcast(w.buf[:0], ch.topic, ev.Name, ev.Data)
				if err == nil {
					w.buf = frame
					if err := w.binary(frame); err != nil {
						return err
					}
					continue
				}
			}
			m = wire.PhxBroadcast(ch.topic, ev.Name, ev.Data)
		case collab.EventOK:
			m.Ref, m.Event = wire.PhxRefOf(ev.Ref), wire.PhxEventReply
			m.Payload = json.RawMessage(`{"status":"ok","response":{}}`)
		case collab.EventError:
			req := wire.PhxMessage{JoinRef: ch.joinRef, Ref: wire.PhxRefOf(ev.Ref), Topic: ch.topic}
			if ev.Ref == "" {
				req.Ref = wire.PhxRef{}
			}
			m = wire.PhxReplyError(req, ev.Err.Message)
		default:
			continue
		}
		w.buf = wire.AppendPhx(w.buf[:0], e.vsn, m)
		if err := w.text(w.buf); err != nil {
			return err
		}
	}
	return nil
}
