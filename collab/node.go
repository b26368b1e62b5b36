package collab

import (
	"encoding/json"
	"time"

	"collabd/presence"
)

// forgetDeadAfter is how long a dead instance is remembered, so that its members are
// fetched again if it comes back (a partition that healed).
const forgetDeadAfter = 10 * time.Minute

func (h *Hub) publishHeartbeat(hello bool) {
	if err := h.publish(h.bus.NodeSubject(kindHB), nodeEnvelope{Node: h.cfg.Node, Hello: hello}); err != nil {
		h.publishFailed("heartbeat", "", err)
	}
}

// heartbeatLoop announces this instance and declares silent ones dead.
func (h *Hub) heartbeatLoop() {
	defer h.wg.Done()
	t := time.NewTicker(h.cfg.Heartbeat)
	defer t.Stop()
	for {
		select {
		case <-h.stop:
			return
		case <-t.C:
		}
		now := h.cfg.Now()
		h.mu.Lock()
		draining := h.draining
		dead := h.live.Expire(now)
		h.mu.Unlock()
		if !draining { // after its goodbye a draining instance stays silent
			h.publishHeartbeat(false)
		}
		h.deadMu.Lock()
		for _, n := range dead {
			h.dead[n] = now
		}
		var forgotten []string
		for n, at := range h.dead {
			if now.Sub(at) > forgetDeadAfter {
				delete(h.dead, n)
				forgotten = append(forgotten, n)
			}
		}
		h.deadMu.Unlock()
		if len(forgotten) > 0 {
			for _, d := range h.openDocs() {
				d.forgetStreams(forgotten)
			}
		}
		for _, n := range dead {
			h.log.Warn("instance silent, its members leave", "peer", n, "after", h.cfg.DownAfter)
			h.dropNode(n)
		}
		for _, d := range h.openDocs() {
			d.releaseHeld(time.Now())
		}
	}
}

func (h *Hub) dropNode(node string) {
	for _, d := range h.openDocs() {
		d.dropNode(node)
	}
}

func (h *Hub) onHeartbeat(_ string, data []byte) {
	var env nodeEnvelope
	if err := json.Unmarshal(data, &env); err != nil || env.Node == "" || env.Node == h.cfg.Node {
		return
	}
	h.mu.Lock()
	isNew := h.live.Seen(env.Node, h.cfg.Now())
	h.mu.Unlock()
	h.deadMu.Lock()
	_, wasDead := h.dead[env.Node]
	delete(h.dead, env.Node)
	h.deadMu.Unlock()
	if isNew && env.Hello {
		h.publishHeartbeat(false) // so that the newcomer knows at once whom to wait for
	}
	if wasDead {
		h.log.Info("instance is back, re-syncing its members", "peer", env.Node)
		for _, d := range h.openDocs() {
			d.requestSync(env.Node)
		}
	}
}

func (h *Hub) onBye(_ string, data []byte) {
	var env nodeEnvelope
	if err := json.Unmarshal(data, &env); err != nil || env.Node == h.cfg.Node {
		return
	}
	h.mu.Lock()
	h.live.Forget(env.Node)
	h.mu.Unlock()
	h.deadMu.Lock()
	h.dead[env.Node] = h.cfg.Now()
	h.deadMu.Unlock()
	h.dropNode(env.Node)
}

// isDead reports whether node was declared dead or said goodbye, and has not been heard
// from since: its late messages must not bring its members back.
func (h *Hub) isDead(node string) bool {
	h.deadMu.Lock()
	defer h.deadMu.Unlock()
	_, dead := h.dead[node]
	return dead
}

// alivePeers returns the other instances known alive.
func (h *Hub) alivePeers() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.live.Nodes()
}

// onSync answers another instance's request for this instance's members of a document,
// with an empty snapshot when it has none, so the asker knows it heard everyone.
func (h *Hub) onSync(subject string, data []byte) {
	var env syncEnvelope
	if err := json.Unmarshal(data, &env); err != nil || env.Node == h.cfg.Node {
		return
	}
	if env.To != "" && env.To != h.cfg.Node || h.Draining() {
		return
	}
	id, ok := h.bus.DocFromSubject(subject)
	if !ok {
		return
	}
	h.mu.Lock()
	d := h.docs[id]
	if d == nil {
		// Published under h.mu: a join that opens the document here publishes after it.
		env := presenceEnvelope{Node: h.cfg.Node, Type: presenceSnap, V: presence.Version{}}
		if err := h.publish(h.bus.DocSubject(id, kindPresence), env); err != nil {
			h.publishFailed("snapshot", id, err)
		}
		h.mu.Unlock()
		return
	}
	d.mu.Lock()
	h.mu.Unlock()
	d.announceLocked()
	d.mu.Unlock()
}
