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
	if err := ValidDocID(id); err != nil {
		return nil, err
	}
	d, created, err := h.acquire(id)
	if err != nil {
		return nil, err
	}
	defer h.release(d)
	if created {
		d.open(ctx)
	}
	select {
	case <-d.ready:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if d.openErr != nil {
		return nil, d.openErr
	}
	return d.state(), nil
}
