package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"golang.org/x/sync/errgroup"

	"collabd/collab"
	"collabd/collab/web"
	"collabd/frontend"
	"collabd/nats"
)

var _ collab.Bus = (*nats.Bus)(nil)

// run wires bus, hub and web server, serves until ctx ends, then shuts them down in
// reverse order: /readyz answers 503 for the drain delay while clients are still served
// (so that load balancers stop sending new ones), then stop accepting and close clients
// with 1012 (their leaves go out at once), drain NATS, stop the embedded server.
func run(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) error {
	cfg, err := parseConfig(args, getenv, stderr)
	if err != nil {
		return err
	}
	log := cfg.logger(stderr)

	bus, err := nats.Open(ctx, nats.Options{
		URL: cfg.natsURL, Listen: cfg.natsListen, Logger: log,
		// A hung NATS server is noticed after two unanswered pings: well within down-after,
		// so the instance has moved to another server before its peers count it dead.
		PingInterval: min(time.Second, cfg.downAfter/3),
		CAFile:       cfg.natsCA, CertFile: cfg.natsCert, KeyFile: cfg.natsKey,
		CredsFile: cfg.natsCreds, NKeyFile: cfg.natsNKey, Token: cfg.natsToken, User: cfg.natsUser, Password: cfg.natsPassword,
	})
	if err != nil {
		return err
	}
	defer func() {
		closeCtx, cancel := context.WithTimeout(context.Background(), cfg.shutdownTimeout)
		defer cancel()
		if err := bus.Close(closeCtx); err != nil {
			log.Warn("nats close", "err", err)
		}
	}()

	metrics := web.NewMetrics()
	hub, err := collab.NewHub(ctx, bus, collab.Config{
		Heartbeat:  cfg.heartbeat,
		DownAfter:  cfg.downAfter,
		CursorTick: cfg.cursorTick,
		Logger:     log,
		OnSnapshot: metrics.Snapshot,
		OnSync:     metrics.Sync,
	})
	if err != nil {
		return err
	}
	defer hub.Close()
	bus.OnReconnect(hub.Resync)

	srv := web.New(hub, web.Config{
		JWTSecret:      cfg.jwtSecret,
		Origins:        cfg.origins,
		MaxConnsPerIP:  cfg.maxConnsPerIP,
		TrustedProxies: cfg.trustedProxies,
		Ready:          bus.Connected,
		Metrics:        metrics,
		NATSReconnects: bus.Reconnects,
		Static:         frontend.FS(),
		Logger:         log,
	})
	ln, err := listen(cfg)
	if err != nil {
		return err
	}
	attrs := []any{"addr", ln.Addr().String(), "node", hub.Node(), "tls", cfg.tlsCert != ""}
	if u := bus.ListenURL(); u != "" {
		attrs = append(attrs, "nats", u)
	} else if cfg.natsURL != "" {
		attrs = append(attrs, "nats", "external")
	}
	log.Info("collabd listening", attrs...)

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return srv.Serve(ln) })
	g.Go(func() error {
		<-gctx.Done()
		srv.Unready()
		if cfg.drainDelay > 0 && ctx.Err() != nil { // a shutdown, not a failed listener
			log.Info("shutting down: /readyz answers 503, still serving", "drain_delay", cfg.drainDelay)
			delay := time.NewTimer(cfg.drainDelay)
			select {
			case <-delay.C:
			case <-skipDelay(ctx):
				delay.Stop()
				log.Info("second signal: drain delay cut short")
			}
		}
		start := time.Now()
		log.Info("shutting down: closing clients with 1012")
		err := srv.Shutdown(cfg.shutdownTimeout) // drains the hub first
		log.Info("clients closed", "took", time.Since(start).Round(time.Millisecond))
		return err
	})
	if err := g.Wait(); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

// listen opens the HTTP listener: TLS (HTTPS and wss) with -tls-cert and -tls-key.
func listen(cfg config) (net.Listener, error) {
	var tc *tls.Config
	if cfg.tlsCert != "" {
		cert, err := tls.LoadX509KeyPair(cfg.tlsCert, cfg.tlsKey)
		if err != nil {
			return nil, fmt.Errorf("-tls-cert/-tls-key: %w", err)
		}
		tc = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	ln, err := net.Listen("tcp", cfg.addr)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", cfg.addr, err)
	}
	if tc != nil {
		ln = tls.NewListener(ln, tc)
	}
	return ln, nil
}
