// Package wire converts between frames and the core's commands and events: the native
// JSON protocol of DESIGN.md section 3 and the Phoenix serializers that
// @supabase/realtime-js speaks. It does no I/O and holds no state.
package wire
