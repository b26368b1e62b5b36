package wire

import (
	"bytes"
	"sort"
	"strconv"

	"collabd/presence"
)

// PhxPresenceRef is the phx_ref of one version of a member's presence: realtime-js tells
// an update from a second tab by it, so it changes with every change of the state.
func PhxPresenceRef(id string, e presence.Entry) string {
	return id + "." + strconv.FormatUint(e.Rev, 10)
}

// AppendPhxPresenceState appends the presence_state payload of members, grouped by
// presence key (the member's user) into metas: {"key":{"metas":[{...state,"phx_ref"}]}}.
func AppendPhxPresenceState(dst []byte, members presence.Members) []byte {
	return appendPhxMetas(dst, members, nil)
}

// AppendPhxPresenceDiff appends the presence_diff payload of d. An update is a join of
// the new meta (with phx_ref_prev) and a leave of the old one, as Phoenix sends it.
func AppendPhxPresenceDiff(dst []byte, d presence.Diff) []byte {
	dst = append(dst, `{"joins":`...)
	dst = appendPhxMetas(dst, d.Joins, d.Prev)
	dst = append(dst, `,"leaves":`...)
	if len(d.Prev) == 0 {
		dst = appendPhxMetas(dst, d.Leaves, nil)
	} else {
		leaves := make(presence.Members, len(d.Leaves)+len(d.Prev))
		for id, e := range d.Leaves {
			leaves[id] = e
		}
		for id, e := range d.Prev {
			leaves[id] = e
		}
		dst = appendPhxMetas(dst, leaves, nil)
	}
	return append(dst, '}')
}

// appendPhxMetas writes members grouped by key, keys and metas in a stable order.
func appendPhxMetas(dst []byte, members presence.Members, prev presence.Members) []byte {
	byKey := map[string][]string{}
	for id, e := range members {
		byKey[e.User] = append(byKey[e.User], id)
	}
	keys := make([]string, 0, len(byKey))
	for k := range byKey {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	dst = append(dst, '{')
	for i, k := range keys {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendPhxString(dst, k)
		dst = append(dst, `:{"metas":[`...)
		ids := byKey[k]
		sort.Strings(ids)
		for j, id := range ids {
			if j > 0 {
				dst = append(dst, ',')
			}
			e := members[id]
			dst = appendPhxMeta(dst, id, e, prev)
		}
		dst = append(dst, "]}"...)
	}
	return append(dst, '}')
}

// appendPhxMeta writes the member's state object with phx_ref (and phx_ref_prev) added.
func appendPhxMeta(dst []byte, id string, e presence.Entry, prev presence.Members) []byte {
	state := e.State
	if len(state) < 2 || state[0] != '{' {
		state = []byte("{}")
	}
	body := state[1 : len(state)-1] // the members of the object, possibly empty
	dst = append(dst, '{')
	dst = append(dst, body...)
	if len(bytes.TrimSpace(body)) > 0 {
		dst = append(dst, ',')
	}
	dst = append(dst, `"phx_ref":`...)
	dst = appendPhxString(dst, PhxPresenceRef(id, e))
	if p, ok := prev[id]; ok {
		dst = append(dst, `,"phx_ref_prev":`...)
		dst = appendPhxString(dst, PhxPresenceRef(id, p))
	}
	return append(dst, '}')
}
