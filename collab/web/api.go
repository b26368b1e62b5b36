package web

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/gofiber/fiber/v2"

	"collabd/collab"
)

// The REST surface for backends and for clients that only poll (docs/protocol.md):
// a document's presence, and broadcasts into it. Same auth as the native endpoints (token
// query or Authorization: Bearer), browser origins checked against -origins.

// apiTimeout bounds an API request that has to open a document.
const apiTimeout = 10 * time.Second

// apiDoc checks an API request: 403 origin, 400 document id, 401 token, 403 document not
// allowed. It returns the document and the token's identity (nil: auth is off), or the
// answer it sent.
func (s *Server) apiDoc(c *fiber.Ctx) (string, *identity, error) {
	c.Set(fiber.HeaderCacheControl, "no-store")
	if !s.originAllowed(c) {
		return "", nil, jsonError(c, fiber.StatusForbidden, "origin not allowed")
	}
	doc, err := docParam(c)
	if err != nil {
		return "", nil, jsonError(c, fiber.StatusBadRequest, err.Error())
	}
	if s.auth == nil {
		return doc, nil, nil
	}
	tok := bearer(c)
	if tok == "" {
		return "", nil, jsonError(c, fiber.StatusUnauthorized, "a token is required (token query or Authorization: Bearer)")
	}
	id, err := s.auth.verify(tok)
	if err != nil {
		return "", nil, jsonError(c, fiber.StatusUnauthorized, err.Error())
	}
	if !id.allows(doc) {
		return "", nil, jsonError(c, fiber.StatusForbidden, fmt.Sprintf("token does not allow document %q", doc))
	}
	return doc, &id, nil
}

// apiPresence is GET /api/docs/{doc}/presence: the document's members across instances,
// exactly as presence.state has them: {"<session id>":{"user":"...","state":{...}},...}.
func (s *Server) apiPresence(c *fiber.Ctx) error {
	doc, _, err := s.apiDoc(c)
	if doc == "" {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), apiTimeout)
	defer cancel()
	members, err := s.hub.State(ctx, doc)
	switch {
	case errors.Is(err, collab.ErrShutdown):
		return jsonError(c, fiber.StatusServiceUnavailable, "instance is draining, try another")
	case err != nil:
		s.log.Error("presence lookup", "doc", doc, "err", err)
		return jsonError(c, fiber.StatusInternalServerError, "internal error")
	}
	type entry struct {
		User  string          `json:"user"`
		State json.RawMessage `json:"state"`
	}
	out := make(map[string]entry, len(members))
	for id, e := range members {
		out[id] = entry{User: e.User, State: e.State}
	}
	return c.JSON(out)
}

// apiBroadcast is POST /api/docs/{doc}/broadcast with {"event":"...","data":...}: every
// member on every instance receives it, from "" (no session). 202 once it is on its way.
func (s *Server) apiBroadcast(c *fiber.Ctx) error {
	doc, ident, err := s.apiDoc(c)
	if doc == "" {
		return err
	}
	body := c.Body()
	if len(body) > nativeReadLimit {
		return jsonError(c, fiber.StatusRequestEntityTooLarge, fmt.Sprintf("body larger than %d bytes", nativeReadLimit))
	}
	if !utf8.Valid(body) {
		return jsonError(c, fiber.StatusBadRequest, "body is not valid UTF-8")
	}
	var b struct {
		Event *string         `json:"event"`
		Data  json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(body, &b); err != nil || b.Event == nil {
		return jsonError(c, fiber.StatusBadRequest, `body must be {"event": "<name>", "data": any}`)
	}
	data := json.RawMessage("null")
	if len(b.Data) > 0 {
		var buf bytes.Buffer
		if err := json.Compact(&buf, b.Data); err != nil {
			return jsonError(c, fiber.StatusBadRequest, "data is not JSON: "+err.Error())
		}
		data = buf.Bytes()
	}
	if status, problem := checkBroadcast(ident, doc, *b.Event, data); status != 0 {
		return jsonError(c, status, problem)
	}
	if err := s.hub.BroadcastFrom("", doc, *b.Event, data); err != nil {
		s.log.Error("api broadcast", "doc", doc, "err", err)
		return jsonError(c, fiber.StatusInternalServerError, "internal error")
	}
	return c.SendStatus(fiber.StatusAccepted)
}
