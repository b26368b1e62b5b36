package web

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"unicode/utf8"

	"github.com/gofiber/fiber/v2"

	"collabd/collab"
)

// restMaxMessages bounds the messages of one REST broadcast request.
const restMaxMessages = 100

// restMessage is one broadcast of a REST request.
type restMessage struct {
	Topic   string          `json:"topic"`
	Event   string          `json:"event"`
	Payload json.RawMessage `json:"payload"`
}

// restBroadcast sends broadcasts from a server: POST {"messages":[{"topic","event",
// "payload"}]}, the topic with or without the "realtime:" prefix.
func (s *Server) restBroadcast(c *fiber.Ctx) error {
	return s.restSend(c, func() ([]restMessage, error) {
		var body struct {
			Messages []restMessage `json:"messages"`
		}
		if err := json.Unmarshal(c.Body(), &body); err != nil {
			return nil, errors.New(`body must be {"messages":[{"topic","event","payload"}]}: ` + err.Error())
		}
		return body.Messages, nil
	})
}

// restBroadcastEvent is realtime-js's httpSend: POST .../api/broadcast/{topic}/events/{event}
// with the payload as the body.
func (s *Server) restBroadcastEvent(c *fiber.Ctx) error {
	return s.restSend(c, func() ([]restMessage, error) {
		topic, err1 := url.PathUnescape(c.Params("topic"))
		event, err2 := url.PathUnescape(c.Params("event"))
		if err := errors.Join(err1, err2); err != nil {
			return nil, err
		}
		payload := json.RawMessage(bytes.Clone(c.Body()))
		if len(payload) > 0 && !json.Valid(payload) {
			return nil, errors.New("body must be the JSON payload")
		}
		return []restMessage{{Topic: topic, Event: event, Payload: payload}}, nil
	})
}

// restSend checks the origin and the token (with auth on: apikey header, Authorization:
// Bearer, or token query, allowed to write in every topic), then the messages that parse
// reads from the request, and answers 202 once every message is on its way, or 400 naming
// the first bad message and sending none.
func (s *Server) restSend(c *fiber.Ctx, parse func() ([]restMessage, error)) error {
	fail := func(status int, msg string) error { return c.Status(status).JSON(fiber.Map{"error": msg}) }
	if !s.originAllowed(c) {
		return fail(fiber.StatusForbidden, "origin not allowed")
	}
	var ident *identity
	if s.auth != nil {
		tok := bearer(c)
		if tok == "" {
			tok = apikey(c)
		}
		if tok == "" {
			return fail(fiber.StatusUnauthorized, "a token is required (apikey header or Authorization: Bearer)")
		}
		id, err := s.auth.verify(tok)
		if err != nil {
			return fail(fiber.StatusUnauthorized, err.Error())
		}
		ident = &id
	}
	msgs, err := parse()
	if err != nil {
		return fail(fiber.StatusBadRequest, err.Error())
	}
	if len(msgs) == 0 || len(msgs) > restMaxMessages {
		return fail(fiber.StatusBadRequest, fmt.Sprintf("send 1 to %d messages", restMaxMessages))
	}
	docs := make([]string, len(msgs))
	for i, m := range msgs {
		doc := strings.TrimPrefix(m.Topic, phxTopicPrefix)
		if status, problem := checkBroadcast(ident, doc, m.Event, m.Payload); status != 0 {
			return fail(status, fmt.Sprintf("messages[%d]: %s", i, problem))
		}
		docs[i] = doc
	}
	for i, m := range msgs {
		payload := m.Payload
		if len(payload) == 0 {
			payload = json.RawMessage("{}")
		}
		if err := s.hub.BroadcastFrom("", docs[i], m.Event, payload); err != nil {
			s.log.Error("rest broadcast", "doc", docs[i], "err", err)
			return fail(fiber.StatusInternalServerError, "internal error")
		}
	}
	return c.SendStatus(fiber.StatusAccepted)
}

// checkBroadcast applies the rules of a broadcast frame on the sockets to a broadcast that
// comes from a REST request: a valid document id, an event name, a payload (JSON the
// caller checked) within the size limit, valid UTF-8 throughout (relayed as is, invalid
// UTF-8 makes every browser in the document drop its connection), and, with auth on, a
// token that may write in the document. It returns the HTTP status and the reason to
// refuse, or 0.
func checkBroadcast(ident *identity, doc, event string, payload []byte) (int, string) {
	switch {
	case collab.ValidDocID(doc) != nil:
		return fiber.StatusBadRequest, "bad topic: " + collab.ValidDocID(doc).Error()
	case event == "":
		return fiber.StatusBadRequest, "event is required"
	case len(event)+len(payload) > collab.MaxBroadcastBytes:
		return fiber.StatusRequestEntityTooLarge, fmt.Sprintf("event and payload larger than %d bytes", collab.MaxBroadcastBytes)
	case !utf8.ValidString(event):
		return fiber.StatusBadRequest, "event is not valid UTF-8"
	case !utf8.Valid(payload):
		return fiber.StatusBadRequest, "payload is not valid UTF-8"
	case ident != nil && !ident.allows(doc):
		return fiber.StatusForbidden, fmt.Sprintf("token does not allow document %q", doc)
	case ident != nil && !ident.write:
		return fiber.StatusForbidden, fmt.Sprintf("token may not write in %q", doc)
	}
	return 0, ""
}
