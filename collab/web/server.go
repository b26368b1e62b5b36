// Package web serves collabd over HTTP with Fiber: the WebSocket endpoints, health,
// readiness and metrics, and the demo page. It owns every client connection: one reader
// (the handler) and one writer goroutine each.
package web

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/middleware/filesystem"

	"collabd/collab"
)

// Config tunes the web server. Its zero value works (auth off, any origin).
type Config struct {
	// JWTSecret turns auth on: every connection needs a valid HS256 token. Default "" (off).
	JWTSecret string
	// Origins lists the browser origins allowed to connect; empty allows any.
	Origins []string
	// MaxConns limits client connections (WebSocket, SSE, long polling) on this instance. Default 50000.
	MaxConns int
	// MaxConnsPerIP limits client connections from one address. Default 2000.
	MaxConnsPerIP int
	// QueueBytes bounds each connection's outbound FIFO. Default 1 MiB.
	QueueBytes int
	// PingInterval is how often the server pings a connection. Default 20s.
	PingInterval time.Duration
	// IdleTimeout closes a connection that sent nothing, not even a pong, for this long.
	// Default 45s.
	IdleTimeout time.Duration
	// WriteTimeout bounds one write to a client. Default 10s.
	WriteTimeout time.Duration
	// AuthTimeout is how long a connection without a token may take to send its auth
	// message. Default 5s.
	AuthTimeout time.Duration
	// PollTimeout is how long a long poll waits for messages before it answers with none.
	// Default 25s.
	PollTimeout time.Duration
	// PollGrace is how much longer than PollTimeout a long-polling session may go without
	// a poll outstanding before it ends (a leave). Default 10s.
	PollGrace time.Duration
	// CloseTimeout bounds a close the server starts: a connection it closes is gone this
	// long after the decision, even when the client neither reads its last frames nor
	// answers the close frame. Default 1s.
	CloseTimeout time.Duration
	// Ready reports whether the instance can serve (its bus is connected). Default: always.
	Ready func() bool
	// Metrics receives the instance's metrics; see NewMetrics. Default: a fresh Metrics.
	Metrics *Metrics
	// NATSReconnects counts the NATS reconnections so far, for the metrics. Default: none.
	NATSReconnects func() uint64
	// Static is served at / (the demo page). Default: nothing.
	Static fs.FS
	// Logger. Default slog.Default().
	Logger *slog.Logger
	// TrustedProxies lists the addresses and CIDRs of the proxies (load balancers) in front
	// of this instance: a request from one of them is counted, for the per-address limits,
	// under the first address of its X-Forwarded-For header. Requests from anywhere else
	// are counted under their peer address, whatever headers they send. Default: none.
	TrustedProxies []string
}

func (c Config) withDefaults() Config {
	if c.MaxConns <= 0 {
		c.MaxConns = 50000
	}
	if c.MaxConnsPerIP <= 0 {
		c.MaxConnsPerIP = 2000
	}
	if c.QueueBytes <= 0 {
		c.QueueBytes = collab.DefaultQueueBytes
	}
	if c.PingInterval <= 0 {
		c.PingInterval = 20 * time.Second
	}
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = 45 * time.Second
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = 10 * time.Second
	}
	if c.AuthTimeout <= 0 {
		c.AuthTimeout = 5 * time.Second
	}
	if c.PollTimeout <= 0 {
		c.PollTimeout = 25 * time.Second
	}
	if c.PollGrace <= 0 {
		c.PollGrace = 10 * time.Second
	}
	if c.CloseTimeout <= 0 {
		c.CloseTimeout = time.Second
	}
	if c.Ready == nil {
		c.Ready = func() bool { return true }
	}
	if c.Metrics == nil {
		c.Metrics = NewMetrics()
	}
	if c.NATSReconnects == nil {
		c.NATSReconnects = func() uint64 { return 0 }
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// Server is the HTTP side of one collabd instance.
type Server struct {
	cfg     Config
	hub     *collab.Hub
	auth    *authenticator
	origins map[string]bool
	limits  *connLimits
	metrics *Metrics
	log     *slog.Logger
	app     *fiber.App

	// handlers counts the owners of connections that the Fiber shutdown does not wait for:
	// poll sessions, and WebSocket and SSE handlers on hijacked connections, counted from
	// the hijack (handOver) on, since fasthttp starts them only after the request ended.
	handlers atomic.Int64
	// unready makes /readyz answer 503 while clients are still served: see Unready.
	unready atomic.Bool

	connsMu  sync.Mutex
	conns    map[*conn]struct{} // guarded by connsMu: every open connection
	stopping bool               // guarded by connsMu: Shutdown began; new connections close at once

	sessMu   sync.Mutex
	sessions map[string]*httpSession // guarded by sessMu: SSE and poll sessions by sid, and recently ended ones

	pendingMu sync.Mutex
	pending   map[net.Conn]*slot // guarded by pendingMu: slots of hijacks not yet started
}

// New builds the Fiber app for hub.
func New(hub *collab.Hub, cfg Config) *Server {
	cfg = cfg.withDefaults()
	s := &Server{
		cfg:      cfg,
		hub:      hub,
		auth:     newAuthenticator(cfg.JWTSecret),
		limits:   newConnLimits(cfg.MaxConns, cfg.MaxConnsPerIP),
		log:      cfg.Logger,
		pending:  map[net.Conn]*slot{},
		conns:    map[*conn]struct{}{},
		sessions: map[string]*httpSession{},
	}
	if len(cfg.Origins) > 0 {
		s.origins = map[string]bool{}
		for _, o := range cfg.Origins {
			s.origins[strings.TrimRight(strings.TrimSpace(o), "/")] = true
		}
	}
	s.metrics = cfg.Metrics
	s.metrics.bind(s)
	s.app = fiber.New(fiber.Config{
		AppName:               "collabd",
		DisableStartupMessage: true,
		ReadTimeout:           30 * time.Second,
		IdleTimeout:           2 * time.Minute,
		// Connection buffers go back to their pool while a connection waits, and a request
		// read in full is not handed on in its 4 KiB read buffer when the connection is
		// hijacked: every WebSocket and SSE connection holds 4 KiB less for its life.
		ReduceMemoryUsage: true,
		ErrorHandler:      s.errorHandler,
		// With no trusted proxy the check trusts nobody: c.IP() is the peer address.
		EnableTrustedProxyCheck: true,
		TrustedProxies:          cfg.TrustedProxies,
		ProxyHeader:             fiber.HeaderXForwardedFor,
		EnableIPValidation:      true,
	})
	s.app.Server().ConnState = s.connState
	s.routes()
	return s
}

func (s *Server) routes() {
	s.app.Get("/healthz", func(c *fiber.Ctx) error { return c.SendString("ok\n") })
	s.app.Get("/readyz", s.readyz)
	s.app.Get("/metrics", s.metrics.handler())
	s.app.Get("/ws/:doc", s.upgradeNative, s.nativeHandler())
	for _, prefix := range []string{"/sse", "/poll", "/api/docs"} {
		s.app.Use(prefix, s.cors)
	}
	s.app.Get("/sse/:doc", s.sseOpen)
	s.app.Post("/sse/:doc", s.postFrames(transportSSE))
	s.app.Get("/poll/:doc", s.pollGet)
	s.app.Post("/poll/:doc", s.postFrames(transportPoll))
	s.app.Get("/api/docs/:doc/presence", s.apiPresence)
	s.app.Post("/api/docs/:doc/broadcast", s.apiBroadcast)
	phx := s.phoenixHandler()
	for _, path := range []string{"/realtime/v1/websocket", "/socket/websocket"} {
		s.app.Get(path, s.upgradePhoenix, phx)
	}
	for _, path := range []string{"/realtime/v1/api/broadcast", "/api/broadcast"} {
		s.app.Post(path, s.restBroadcast)
		s.app.Post(path+"/:topic/events/:event", s.restBroadcastEvent)
	}
	if s.cfg.Static != nil {
		s.app.Use("/", filesystem.New(filesystem.Config{Root: http.FS(s.cfg.Static), Index: "index.html"}))
	}
}

// App is the Fiber app, for tests and for mounting.
func (s *Server) App() *fiber.App { return s.app }

// Serve accepts connections on ln until Shutdown.
func (s *Server) Serve(ln net.Listener) error { return s.app.Listener(ln) }

// Shutdown drains the hub (its sessions close with 1012 and the other instances drop its
// members at once), closes every other connection with 1012 too (one still
// authenticating, a Phoenix socket without a channel, a join waiting for the document, an
// SSE stream, a poll session), stops accepting, and waits for the connections to end, up
// to timeout.
func (s *Server) Shutdown(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	s.hub.Drain()
	s.closeAll(collab.ErrShutdown)
	if err := s.app.ShutdownWithTimeout(timeout); err != nil {
		return err
	}
	for s.handlers.Load() > 0 {
		if time.Now().After(deadline) {
			return fmt.Errorf("web: %d connections still open at the shutdown deadline", s.handlers.Load())
		}
		time.Sleep(10 * time.Millisecond)
	}
	return nil
}

// register adds a connection; once Shutdown began, it closes at once.
func (s *Server) register(c *conn) {
	s.connsMu.Lock()
	s.conns[c] = struct{}{}
	stopping := s.stopping
	s.connsMu.Unlock()
	if stopping {
		c.out.Close(collab.ErrShutdown)
	}
}

func (s *Server) unregister(c *conn) {
	s.connsMu.Lock()
	delete(s.conns, c)
	s.connsMu.Unlock()
}

// isStopping reports whether Shutdown began.
func (s *Server) isStopping() bool {
	s.connsMu.Lock()
	defer s.connsMu.Unlock()
	return s.stopping
}

// closeAll closes every connection with cerr, now and from now on.
func (s *Server) closeAll(cerr *collab.CloseError) {
	s.connsMu.Lock()
	s.stopping = true
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.connsMu.Unlock()
	for _, c := range conns {
		c.out.Close(cerr)
	}
}

// Ready reports whether /readyz answers 200: the instance accepts clients and has not
// been told to look unready.
func (s *Server) Ready() bool { return !s.unready.Load() && s.accepting() }

// accepting reports whether new clients are taken: the hub is not draining and the bus
// is connected.
func (s *Server) accepting() bool { return !s.hub.Draining() && s.cfg.Ready() }

// Unready makes /readyz answer 503 from now on while the server goes on accepting and
// serving clients: the first step of a graceful shutdown, so that load balancers stop
// sending new clients before the drain closes the existing ones.
func (s *Server) Unready() { s.unready.Store(true) }

// originAllowed reports whether a request may come from its browser origin: any when no
// list is set, and requests without an Origin header (not from a browser page) always.
func (s *Server) originAllowed(c *fiber.Ctx) bool {
	if s.origins == nil {
		return true
	}
	o := c.Get(fiber.HeaderOrigin)
	return o == "" || s.origins[o]
}

// cors lets pages of allowed origins use the HTTP endpoints (SSE, long polling, REST)
// from another origin, and answers their preflight requests.
func (s *Server) cors(c *fiber.Ctx) error {
	if o := c.Get(fiber.HeaderOrigin); o != "" && s.originAllowed(c) {
		c.Set(fiber.HeaderAccessControlAllowOrigin, o)
		c.Vary(fiber.HeaderOrigin)
	}
	if c.Method() == fiber.MethodOptions {
		c.Set(fiber.HeaderAccessControlAllowMethods, "GET, POST")
		c.Set(fiber.HeaderAccessControlAllowHeaders, "Authorization, Content-Type")
		c.Set(fiber.HeaderAccessControlMaxAge, "600")
		return c.SendStatus(fiber.StatusNoContent)
	}
	return c.Next()
}

func (s *Server) readyz(c *fiber.Ctx) error {
	if !s.Ready() {
		return c.Status(fiber.StatusServiceUnavailable).SendString("not ready\n")
	}
	return c.SendString("ready\n")
}

func (s *Server) errorHandler(c *fiber.Ctx, err error) error {
	code := fiber.StatusInternalServerError
	var fe *fiber.Error
	if errors.As(err, &fe) {
		code = fe.Code
	}
	if code >= 500 {
		s.log.Error("http error", "path", c.Path(), "err", err)
		return c.Status(code).SendString("internal error\n")
	}
	return c.Status(code).SendString(err.Error() + "\n")
}
