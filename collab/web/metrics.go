package web

import (
	"strconv"
	"sync/atomic"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/middleware/adaptor"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"collabd/collab"
	"collabd/collab/wire"
)

// Metrics are the Prometheus metrics of one instance, in a registry of their own so that
// several instances can live in one process (tests). Every labelled counter starts with
// all of its known labels at zero, so each family and series is there at the first scrape
// and an alert on a rate never waits for the first event.
//
// NewMetrics exists apart from New because the hub is built before the web server and
// reports snapshots and syncs to it: hand Snapshot and Sync to collab.Config, and the
// Metrics to Config.Metrics. One Metrics serves one Server.
type Metrics struct {
	reg           *prometheus.Registry
	nativeFrames  map[collab.CommandKind]prometheus.Counter
	phxFrames     map[string]prometheus.Counter
	invalidFrames map[string]prometheus.Counter // by protocol
	closes        *prometheus.CounterVec
	refused       *prometheus.CounterVec
	snapshotBytes prometheus.Histogram
	syncSeconds   prometheus.Histogram
	bound         atomic.Bool // a Server registered its gauges
}

// The frame types of collabd_frames_received_total: what each protocol's clients send.
// Frames that do not decode, and Phoenix events this server does not know, count as
// "invalid" and "other": a client never makes up a label.
var (
	nativeFrameTypes = map[collab.CommandKind]string{
		collab.CmdCursor:    "cursor",
		collab.CmdTrack:     "presence.track",
		collab.CmdUntrack:   "presence.untrack",
		collab.CmdBroadcast: "broadcast",
		collab.CmdPing:      "ping",
		collab.CmdAuth:      "auth",
	}
	phxFrameTypes = []string{
		wire.PhxEventHeartbeat, wire.PhxEventJoin, wire.PhxEventLeave, wire.PhxEventAccessToken,
		wire.PhxEventBroadcast, wire.PhxEventPresence, phxOtherEvent,
	}
)

const (
	frameInvalid  = "invalid"
	phxOtherEvent = "other"
)

// closeCodes are the codes of the close table (collab/errors.go, docs/protocol.md), the
// labels of collabd_closes_total.
var closeCodes = []int{
	collab.CodeNormal, collab.CodeTooBig, collab.CodeInternal, collab.CodeRestart,
	collab.CodeProtocol, collab.CodeUnauthorized, collab.CodeForbidden,
	collab.CodeSlowConsumer, collab.CodeRateLimited,
}

// refusal is why an upgrade was refused before it happened: the HTTP status and a short
// machine reason, the labels of collabd_upgrades_refused_total.
type refusal struct {
	status int
	reason string
}

// The refusals the upgrade checks make (docs/operations.md lists them).
var (
	refusedBadDoc    = refusal{fiber.StatusBadRequest, "bad_document"}
	refusedBadVsn    = refusal{fiber.StatusBadRequest, "bad_vsn"}
	refusedBadUser   = refusal{fiber.StatusBadRequest, "bad_user"}
	refusedNotWS     = refusal{fiber.StatusUpgradeRequired, "not_websocket"}
	refusedToken     = refusal{fiber.StatusUnauthorized, "token"}
	refusedOrigin    = refusal{fiber.StatusForbidden, "origin"}
	refusedDocument  = refusal{fiber.StatusForbidden, "document"}
	refusedConnLimit = refusal{fiber.StatusTooManyRequests, "conn_limit"}
	refusedDraining  = refusal{fiber.StatusServiceUnavailable, "unavailable"}

	refusals = []refusal{refusedBadDoc, refusedBadVsn, refusedBadUser, refusedNotWS, refusedToken,
		refusedOrigin, refusedDocument, refusedConnLimit, refusedDraining}
)

// NewMetrics returns the metrics of one instance, every labelled series at zero.
func NewMetrics() *Metrics {
	frames := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "collabd_frames_received_total", Help: "Client frames received, by protocol and frame type.",
	}, []string{"protocol", "type"})
	m := &Metrics{
		reg:           prometheus.NewRegistry(),
		nativeFrames:  map[collab.CommandKind]prometheus.Counter{},
		phxFrames:     map[string]prometheus.Counter{},
		invalidFrames: map[string]prometheus.Counter{},
		closes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "collabd_closes_total", Help: "Connections closed by the server, by close code.",
		}, []string{"code"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "collabd_upgrades_refused_total", Help: "WebSocket upgrades refused, by HTTP status and reason.",
		}, []string{"status", "reason"}),
		snapshotBytes: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "collabd_presence_snapshot_bytes",
			Help:    "Encoded size of each presence snapshot this instance publishes (all parts of it).",
			Buckets: prometheus.ExponentialBuckets(256, 4, 9), // 256 B to 16 MiB
		}),
		syncSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "collabd_sync_seconds",
			Help:    "How long each document opening waited for the other instances' presence.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}),
	}
	for kind, typ := range nativeFrameTypes {
		m.nativeFrames[kind] = frames.WithLabelValues("native", typ)
	}
	for _, typ := range phxFrameTypes {
		m.phxFrames[typ] = frames.WithLabelValues("phoenix", typ)
	}
	for _, proto := range []string{"native", "phoenix"} {
		m.invalidFrames[proto] = frames.WithLabelValues(proto, frameInvalid)
	}
	for _, code := range closeCodes {
		m.closes.WithLabelValues(strconv.Itoa(code))
	}
	for _, r := range refusals {
		m.refused.WithLabelValues(strconv.Itoa(r.status), r.reason)
	}
	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		frames, m.closes, m.refused, m.snapshotBytes, m.syncSeconds,
	)
	return m
}

// Snapshot records the size of a presence snapshot; it is collab.Config.OnSnapshot.
func (m *Metrics) Snapshot(bytes int) { m.snapshotBytes.Observe(float64(bytes)) }

// Sync records how long a document opening waited; it is collab.Config.OnSync.
func (m *Metrics) Sync(d time.Duration) { m.syncSeconds.Observe(d.Seconds()) }

// bind registers the gauges that read s.
func (m *Metrics) bind(s *Server) {
	if !m.bound.CompareAndSwap(false, true) {
		panic("web: one Metrics serves one Server; call NewMetrics for each")
	}
	m.reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "collabd_connections", Help: "Open client connections.",
		}, func() float64 { return float64(s.limits.count()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "collabd_sessions", Help: "Memberships (a client in a document) on this instance.",
		}, func() float64 { return float64(s.hub.Sessions()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "collabd_documents", Help: "Documents with members on this instance.",
		}, func() float64 { return float64(s.hub.Docs()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "collabd_ready", Help: "1 while /readyz answers 200: connected to NATS, accepting clients, not draining.",
		}, func() float64 {
			if s.Ready() {
				return 1
			}
			return 0
		}),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "collabd_nats_reconnects_total", Help: "Times the NATS connection came back after a loss.",
		}, func() float64 { return float64(s.cfg.NATSReconnects()) }),
	)
}

func (m *Metrics) handler() fiber.Handler {
	return adaptor.HTTPHandler(promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}))
}

func (m *Metrics) closed(code int) { m.closes.WithLabelValues(strconv.Itoa(code)).Inc() }

func (m *Metrics) refusedUpgrade(r refusal) {
	m.refused.WithLabelValues(strconv.Itoa(r.status), r.reason).Inc()
}

// nativeFrame counts a native frame; ok is false for a frame that did not decode.
func (m *Metrics) nativeFrame(kind collab.CommandKind, ok bool) {
	if c := m.nativeFrames[kind]; ok && c != nil {
		c.Inc()
		return
	}
	m.invalidFrames["native"].Inc()
}

// phxFrame counts a Phoenix frame by event; ok is false for a frame that did not decode.
func (m *Metrics) phxFrame(event string, ok bool) {
	if !ok {
		m.invalidFrames["phoenix"].Inc()
		return
	}
	c := m.phxFrames[event]
	if c == nil {
		c = m.phxFrames[phxOtherEvent]
	}
	c.Inc()
}
