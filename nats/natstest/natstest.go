// Package natstest starts real nats-servers for tests: in-process, on a loopback port.
package natstest

import (
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Server is a nats-server on 127.0.0.1 that a test can stop and start again on its port.
type Server struct {
	t    testing.TB
	port int
	srv  *server.Server // nil while stopped
}

// NewServer starts a nats-server on a free loopback port; it stops when the test ends.
func NewServer(t testing.TB) *Server {
	t.Helper()
	s := &Server{t: t, port: server.RANDOM_PORT}
	s.Start()
	s.port = s.srv.Addr().(*net.TCPAddr).Port
	t.Cleanup(s.Stop)
	return s
}

// URL is the client URL of the server, stable across Stop and Start.
func (s *Server) URL() string { return "nats://127.0.0.1:" + strconv.Itoa(s.port) }

// NATS is the running server, for what a test reads of it (Connz: each connection's
// counters); nil while stopped.
func (s *Server) NATS() *server.Server { return s.srv }

// Start starts the server (again) on its port.
func (s *Server) Start() {
	s.t.Helper()
	if s.srv != nil {
		return
	}
	srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: s.port, NoSigs: true, NoLog: true})
	if err != nil {
		s.t.Fatalf("natstest: %v", err)
	}
	go srv.Start() // stopped by Stop
	if !srv.ReadyForConnections(10 * time.Second) {
		srv.Shutdown()
		s.t.Fatalf("natstest: server on port %d not ready", s.port)
	}
	s.srv = srv
}

// Stop shuts the server down; clients see their connection drop.
func (s *Server) Stop() {
	if s.srv == nil {
		return
	}
	s.srv.Shutdown()
	s.srv.WaitForShutdown()
	s.srv = nil
}

// WaitFor polls cond until it holds, failing the test after timeout: the way tests wait
// for something another goroutine, instance or process does, instead of sleeping.
func WaitFor(t testing.TB, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %s", timeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
