package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/golang-jwt/jwt/v5"
)

// centrifugoAdapter speaks Centrifugo's bidirectional JSON protocol (client
// protocol v2, Centrifugo v4 and later): a connect command, a subscribe to
// the document's channel "<namespace>:<doc>", and a publish command per
// cursor update. The namespace must allow client publish (for example
// allow_publish_for_subscriber). With a secret the client authenticates with
// an HS256 connection token whose subject is its client id; without one the
// server must run with client.insecure.
type centrifugoAdapter struct {
	secret    []byte
	namespace string
}

func newCentrifugoAdapter(o adapterOptions) (Adapter, error) {
	a := &centrifugoAdapter{namespace: o.centrifugoNamespace}
	if o.centrifugoSecret != "" {
		a.secret = []byte(o.centrifugoSecret)
	}
	return a, nil
}

func (a *centrifugoAdapter) Path(string, uint32) string { return "/connection/websocket" }

func (a *centrifugoAdapter) channel(doc string) string {
	if a.namespace == "" {
		return doc
	}
	return a.namespace + ":" + doc
}

type centrifugoReply struct {
	ID    uint32 `json:"id"`
	Error *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

func (a *centrifugoAdapter) Join(w Wire, doc string, id uint32) (Session, error) {
	token := ""
	if a.secret != nil {
		var err error
		token, err = jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": strconv.FormatUint(uint64(id), 10)}).SignedString(a.secret)
		if err != nil {
			return nil, err
		}
	}
	channel := a.channel(doc)
	cmds := []any{
		map[string]any{"id": 1, "connect": map[string]any{"token": token, "name": "collabd-bench"}},
		map[string]any{"id": 2, "subscribe": map[string]any{"channel": channel}},
	}
	for i, cmd := range cmds {
		frame, err := json.Marshal(cmd)
		if err != nil {
			return nil, err
		}
		if err := w.Send(frame); err != nil {
			return nil, err
		}
		if err := awaitCentrifugoReply(w, w.Send, uint32(i+1)); err != nil {
			return nil, fmt.Errorf("%s: %w", []string{"connect", "subscribe"}[i], err)
		}
	}
	prefix, err := json.Marshal(channel)
	if err != nil {
		return nil, err
	}
	return &centrifugoSession{
		prefix: append(append([]byte(`,"publish":{"channel":`), prefix...), `,"data":`...),
		nextID: 3,
	}, nil
}

// awaitCentrifugoReply reads frames until the reply to command id arrives,
// answering server pings on the way.
func awaitCentrifugoReply(w Wire, send func([]byte) error, id uint32) error {
	for {
		frame, err := w.Recv()
		if err != nil {
			return err
		}
		for line := range bytes.SplitSeq(frame, []byte("\n")) {
			if string(line) == "{}" {
				if err := send([]byte("{}")); err != nil {
					return err
				}
				continue
			}
			if !bytes.HasPrefix(line, []byte(`{"id":`)) {
				continue // a push, e.g. another client's join
			}
			var r centrifugoReply
			if err := json.Unmarshal(line, &r); err != nil {
				return fmt.Errorf("bad reply %q: %w", line, err)
			}
			if r.ID != id {
				continue
			}
			if r.Error != nil {
				return fmt.Errorf("server error %d: %s", r.Error.Code, r.Error.Message)
			}
			return nil
		}
	}
}

type centrifugoSession struct {
	prefix []byte // `,"publish":{"channel":"…","data":`
	nextID uint64 // sender goroutine only
}

func (s *centrifugoSession) AppendCursor(dst []byte, p Position) []byte {
	dst = append(dst, `{"id":`...)
	dst = appendUint(dst, s.nextID)
	s.nextID++
	dst = append(dst, s.prefix...)
	dst = appendPosition(dst, p)
	return append(dst, "}}"...)
}

var errCentrifugoDisconnect = errors.New("centrifugo: server sent disconnect")

// Decode handles one frame, which may hold several newline-separated replies
// and pushes when the server batches its writes.
func (s *centrifugoSession) Decode(frame []byte, in *Inbound) error {
	for line := range bytes.SplitSeq(frame, []byte("\n")) {
		switch {
		case len(line) == 0:
		case string(line) == "{}": // server ping; protocol v2 wants an empty pong
			if len(in.Reply) == 0 {
				in.Reply = append(in.Reply, "{}"...)
			}
			in.Other++
		case bytes.HasPrefix(line, []byte(`{"push":`)):
			switch {
			case bytes.Contains(line, []byte(`"pub":`)):
				n := len(in.Positions)
				var bad int
				in.Positions, bad = scanPositions(line, in.Positions)
				in.DecodeErrors += bad
				if len(in.Positions) == n && bad == 0 {
					in.Other++ // a publication that is not a cursor
				}
			case bytes.Contains(line, []byte(`"disconnect":`)):
				return fmt.Errorf("%w: %s", errCentrifugoDisconnect, line)
			default:
				in.Other++ // join, leave, message, …
			}
		case bytes.HasPrefix(line, []byte(`{"id":`)):
			if bytes.Contains(line, []byte(`"error":`)) {
				in.ServerErrors++
			} else {
				in.Acks++
			}
		default:
			in.Other++
		}
	}
	return nil
}
