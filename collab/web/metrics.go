package web

import (
	"strconv"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/middleware/adaptor"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics are the instance's Prometheus metrics, in a registry of its own so that several
// servers can live in one process (tests).
type metrics struct {
	reg      *prometheus.Registry
	framesIn *prometheus.CounterVec
	closes   *prometheus.CounterVec
	refused  *prometheus.CounterVec
}

func newMetrics(s *Server) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		framesIn: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "collabd_frames_received_total", Help: "Client frames received, by protocol.",
		}, []string{"protocol"}),
		closes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "collabd_closes_total", Help: "Connections closed by the server, by close code.",
		}, []string{"code"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "collabd_upgrades_refused_total", Help: "WebSocket upgrades refused, by HTTP status.",
		}, []string{"status"}),
	}
	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.framesIn, m.closes, m.refused,
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
			Name: "collabd_ready", Help: "1 while the instance is connected to NATS and accepting clients.",
		}, func() float64 {
			if s.Ready() {
				return 1
			}
			return 0
		}),
	)
	return m
}

func (m *metrics) handler() fiber.Handler {
	return adaptor.HTTPHandler(promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}))
}

func (m *metrics) closed(code int) { m.closes.WithLabelValues(strconv.Itoa(code)).Inc() }
