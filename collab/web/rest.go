package web

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/gofiber/fiber/v2"

	"collabd/collab"
)

// restMaxMessages bounds the messages of one REST broadcast request.
const restMaxMessages = 100

// restBroadcastBody is the Supabase REST broadcast request.
type restBroadcastBody struct {
	Messages []struct {
		Topic   string          `json:"topic"`
		Event   string          `json:"event"`
		Payload json.RawMessage `json:"payload"`
	} `json:"messages"`
}

// restBroadcast sends broadcasts from a server: POST {"messages":[{"topic","event",
// "payload"}]}, the topic with or without the "realtime:" prefix. It answers 202 once
// every message is on its way, or 400 naming the first bad message and sending none.
// With auth on it needs a token (apikey header, Authorization: Bearer, or token query)
// that may write in every topic.
func (s *Server) restBroadcast(c *fiber.Ctx) error {
	var ident *identity
	if s.auth != nil {
		tok := bearer(c)
		if tok == "" {
			tok = apikey(c)
		}
		if tok == "" {
			return c.Status(fiber.StatusUnauthorized).JSON(fiber.Map{"error": "a token is required (apikey header or Authorization: Bearer)"})
		}
		id, err := s.auth.verify(tok)
		if err != nil {
			return c.Status(fiber.StatusUnauthorized).JSON(fiber.Map{"error": err.Error()})
		}
		ident = &id
	}
	var body restBroadcastBody
	if err := json.Unmarshal(c.Body(), &body); err != nil {
		return c.Status(fiber.StatusBadRequest).JSON(fiber.Map{"error": "body must be {\"messages\":[{\"topic\",\"event\",\"payload\"}]}: " + err.Error()})
	}
	if len(body.Messages) == 0 || len(body.Messages) > restMaxMessages {
		return c.Status(fiber.StatusBadRequest).JSON(fiber.Map{"error": fmt.Sprintf("send 1 to %d messages", restMaxMessages)})
	}
	docs := make([]string, len(body.Messages))
	for i, m := range body.Messages {
		doc := strings.TrimPrefix(m.Topic, phxTopicPrefix)
		var problem string
		switch {
		case collab.ValidDocID(doc) != nil:
			problem = "bad topic: " + collab.ValidDocID(doc).Error()
		case m.Event == "":
			problem = "event is required"
		case len(m.Payload) > collab.MaxBroadcastBytes:
			problem = fmt.Sprintf("payload larger than %d bytes", collab.MaxBroadcastBytes)
		case ident != nil && (!ident.write || !ident.allows(doc)):
			return c.Status(fiber.StatusForbidden).JSON(fiber.Map{"error": fmt.Sprintf("messages[%d]: token may not write in %q", i, doc)})
		}
		if problem != "" {
			return c.Status(fiber.StatusBadRequest).JSON(fiber.Map{"error": fmt.Sprintf("messages[%d]: %s", i, problem)})
		}
		docs[i] = doc
	}
	for i, m := range body.Messages {
		if err := s.sendREST(docs[i], m.Event, m.Payload); err != nil {
			return c.Status(fiber.StatusInternalServerError).JSON(fiber.Map{"error": "internal error"})
		}
	}
	return c.SendStatus(fiber.StatusAccepted)
}

// restBroadcastEvent is realtime-js's httpSend: POST .../api/broadcast/{topic}/events/{event}
// with the payload as the body; 202 when sent.
func (s *Server) restBroadcastEvent(c *fiber.Ctx) error {
	topic, err1 := url.PathUnescape(c.Params("topic"))
	event, err2 := url.PathUnescape(c.Params("event"))
	if err := errors.Join(err1, err2); err != nil {
		return c.Status(fiber.StatusBadRequest).JSON(fiber.Map{"error": err.Error()})
	}
	payload := json.RawMessage(bytes.Clone(c.Body()))
	if len(payload) > 0 && !json.Valid(payload) {
		return c.Status(fiber.StatusBadRequest).JSON(fiber.Map{"error": "body must be the JSON payload"})
	}
	body, err := json.Marshal(map[string]any{"messages": []any{map[string]any{"topic": topic, "event": event, "payload": payload}}})
	if err != nil {
		return err
	}
	c.Request().SetBody(body)
	return s.restBroadcast(c)
}

func (s *Server) sendREST(doc, event string, payload json.RawMessage) error {
	if len(payload) == 0 {
		payload = json.RawMessage("{}")
	}
	err := s.hub.BroadcastFrom("", doc, event, payload)
	if err != nil {
		s.log.Error("rest broadcast", "doc", doc, "err", err)
	}
	return err
}
