package collab

import (
	"context"

	"collabd/presence"
)

// State returns the members of document id across every instance, as a presence.state
// frame holds them, even when no member is on this instance: the document is then opened
// for the call (subscribed and synchronised with the other instances, waiting up to
// SyncTimeout for their answers, as a join does) and closed again after it.
func (h *Hub) State(ctx context.Context, id string) (presence.Members, error) {
	d, err := h.acquireOpen(ctx, id)
	if err != nil {
		return nil, err
	}
	defer h.release(d)
	return d.state(), nil
}
