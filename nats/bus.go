// Package nats connects collabd instances through NATS: it opens a connection to an external
// server or cluster, or starts an embedded nats-server when no URL is given, and names the
// subjects instances talk on. It imports nothing of collabd; *Bus satisfies collab.Bus.
package nats

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	natsgo "github.com/nats-io/nats.go"
)

// Options configures Open. The zero value starts an embedded server on 127.0.0.1:4222.
type Options struct {
	// URL lists external NATS servers, comma-separated; empty starts an embedded server.
	URL string
	// Listen is where the embedded server accepts other instances ("host:port"); "off"
	// keeps it in-process only. Default "127.0.0.1:4222". Ignored with URL.
	Listen string
	// Prefix starts every subject. Default "collab".
	Prefix string
	// Name names the connection in the server's monitoring. Default "collabd".
	Name string
	// Logger receives connection events. Default slog.Default().
	Logger *slog.Logger
}

func (o Options) withDefaults() Options {
	if o.Listen == "" {
		o.Listen = "127.0.0.1:4222"
	}
	if o.Prefix == "" {
		o.Prefix = "collab"
	}
	if o.Name == "" {
		o.Name = "collabd"
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o
}

// Bus is a NATS connection, plus the embedded server when it runs one.
type Bus struct {
	nc     *natsgo.Conn
	srv    *server.Server // nil with an external URL
	prefix string
	log    *slog.Logger

	mu          sync.Mutex
	onReconnect []func() // guarded by mu
}

// Open connects to NATS, starting an embedded server first when opts.URL is empty. With an
// external URL it keeps retrying in the background: the Bus reports Connected false until
// a server answers, and reconnects for ever after a loss.
func Open(ctx context.Context, opts Options) (*Bus, error) {
	opts = opts.withDefaults()
	b := &Bus{prefix: opts.Prefix, log: opts.Logger}
	conn := []natsgo.Option{
		natsgo.Name(opts.Name),
		natsgo.NoEcho(),
		natsgo.MaxReconnects(-1),
		natsgo.ReconnectWait(250 * time.Millisecond),
		natsgo.ReconnectJitter(100*time.Millisecond, time.Second),
		natsgo.PingInterval(5 * time.Second),
		natsgo.MaxPingsOutstanding(2),
		natsgo.DisconnectErrHandler(func(_ *natsgo.Conn, err error) {
			if err != nil { // nil: a deliberate close or drain
				b.log.Warn("nats disconnected", "err", err)
			}
		}),
		natsgo.ReconnectHandler(func(nc *natsgo.Conn) {
			b.log.Info("nats reconnected", "server", nc.ConnectedUrlRedacted())
			b.reconnected()
		}),
		// With RetryOnFailedConnect, a first connection made in the background is reported
		// here, not as a reconnection; it needs the same re-sync.
		natsgo.ConnectHandler(func(nc *natsgo.Conn) {
			b.log.Info("nats connected", "server", nc.ConnectedUrlRedacted())
			b.reconnected()
		}),
		natsgo.ErrorHandler(func(_ *natsgo.Conn, sub *natsgo.Subscription, err error) {
			subject := ""
			if sub != nil {
				subject = sub.Subject
			}
			b.log.Error("nats async error", "subject", subject, "err", err)
		}),
	}
	url := opts.URL
	if url == "" {
		srv, err := startEmbedded(opts.Listen)
		if err != nil {
			return nil, err
		}
		b.srv = srv
		conn = append(conn, natsgo.InProcessServer(srv))
		b.log.Info("embedded nats-server started", "listen", b.ListenURL())
	} else {
		conn = append(conn, natsgo.RetryOnFailedConnect(true))
	}
	nc, err := natsgo.Connect(url, conn...)
	if err != nil {
		b.stopEmbedded()
		return nil, fmt.Errorf("nats: connect %s: %w", redact(url), err)
	}
	b.nc = nc
	if url != "" && !nc.IsConnected() {
		b.log.Warn("nats not reachable yet, retrying in the background", "url", redact(url))
	}
	return b, nil
}

func startEmbedded(listen string) (*server.Server, error) {
	sopts := &server.Options{NoSigs: true, NoLog: true, MaxPayload: 1 << 20}
	if listen == "off" {
		sopts.DontListen = true
	} else {
		host, port, err := net.SplitHostPort(listen)
		if err != nil {
			return nil, fmt.Errorf("nats: embedded listen address %q: %w", listen, err)
		}
		p, err := strconv.Atoi(port)
		if err != nil {
			return nil, fmt.Errorf("nats: embedded listen port %q: %w", port, err)
		}
		if p == 0 {
			p = server.RANDOM_PORT
		} else if ln, err := net.Listen("tcp", listen); err != nil {
			// Found out at once rather than after the server's start timeout.
			return nil, fmt.Errorf("nats: embedded server cannot listen on %s (port in use? set -nats-listen, or NATS_URL to join the server already there): %w", listen, err)
		} else {
			ln.Close()
		}
		sopts.Host, sopts.Port = host, p
	}
	srv, err := server.NewServer(sopts)
	if err != nil {
		return nil, fmt.Errorf("nats: embedded server: %w", err)
	}
	go srv.Start() // owned by the Bus: stopped by stopEmbedded
	if !srv.ReadyForConnections(10 * time.Second) {
		srv.Shutdown()
		return nil, fmt.Errorf("nats: embedded server did not start listening on %s (port in use? set -nats-listen or NATS_URL)", listen)
	}
	return srv, nil
}

func redact(url string) string {
	parts := strings.Split(url, ",")
	for i, p := range parts {
		if at := strings.LastIndex(p, "@"); at >= 0 {
			if scheme := strings.Index(p, "://"); scheme >= 0 && scheme < at {
				parts[i] = p[:scheme+3] + "***" + p[at:]
			}
		}
	}
	return strings.Join(parts, ",")
}

func (b *Bus) reconnected() {
	b.mu.Lock()
	fns := append([]func(){}, b.onReconnect...)
	b.mu.Unlock()
	for _, fn := range fns {
		fn()
	}
}

// ListenURL is the URL other instances use to join the embedded server, or "" when there is
// none (external NATS, or an embedded server that does not listen).
func (b *Bus) ListenURL() string {
	if b.srv == nil || b.srv.Addr() == nil {
		return ""
	}
	return "nats://" + b.srv.Addr().String()
}

// Publish sends data on subject. While disconnected it is buffered by the client.
func (b *Bus) Publish(subject string, data []byte) error { return b.nc.Publish(subject, data) }

// Subscribe calls fn with every message on subject (wildcards allowed), one at a time and in
// order, until the returned function unsubscribes.
func (b *Bus) Subscribe(subject string, fn func(subject string, data []byte)) (func() error, error) {
	sub, err := b.nc.Subscribe(subject, func(m *natsgo.Msg) { fn(m.Subject, m.Data) })
	if err != nil {
		return nil, fmt.Errorf("nats: subscribe %s: %w", subject, err)
	}
	// A busy document must not be cut off by the client's default pending limits.
	if err := sub.SetPendingLimits(1<<16, 64<<20); err != nil {
		return nil, errors.Join(err, sub.Unsubscribe())
	}
	return sub.Unsubscribe, nil
}

// flushTimeout bounds a Flush whose context has no deadline.
const flushTimeout = 5 * time.Second

// Flush returns once the server has processed everything sent so far, subscriptions
// included.
func (b *Bus) Flush(ctx context.Context) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, flushTimeout)
		defer cancel()
	}
	return b.nc.FlushWithContext(ctx)
}

// Connected reports whether the connection is up now.
func (b *Bus) Connected() bool { return b.nc.IsConnected() }

// OnReconnect registers fn to run after every reconnection, on the client's event goroutine.
func (b *Bus) OnReconnect(fn func()) {
	b.mu.Lock()
	b.onReconnect = append(b.onReconnect, fn)
	b.mu.Unlock()
}

// Close drains the connection (pending messages are delivered and sent), then stops the
// embedded server; ctx bounds the drain.
func (b *Bus) Close(ctx context.Context) error {
	closed := make(chan struct{})
	b.nc.SetClosedHandler(func(*natsgo.Conn) { close(closed) })
	var err error
	if b.nc.IsClosed() {
		close(closed)
	} else if err = b.nc.Drain(); err != nil {
		b.nc.Close()
	}
	select {
	case <-closed:
	case <-ctx.Done():
		b.nc.Close()
		err = errors.Join(err, fmt.Errorf("nats: drain: %w", ctx.Err()))
	}
	b.stopEmbedded()
	return err
}

func (b *Bus) stopEmbedded() {
	if b.srv != nil {
		b.srv.Shutdown()
		b.srv.WaitForShutdown()
	}
}

// AnyDoc in DocSubject stands for every document (a subscription wildcard).
const AnyDoc = "*"

// DocSubject is the subject of kind ("cursor", "bcast", "presence", "sync") for document
// doc. The id is encoded (unpadded base64url) so that it never puts '.', '*', '>' or
// white space into the subject.
func (b *Bus) DocSubject(doc, kind string) string {
	t := AnyDoc
	if doc != AnyDoc {
		t = base64.RawURLEncoding.EncodeToString([]byte(doc))
	}
	return b.prefix + ".doc." + t + "." + kind
}

// DocFromSubject returns the document id a DocSubject subject names.
func (b *Bus) DocFromSubject(subject string) (string, bool) {
	rest, ok := strings.CutPrefix(subject, b.prefix+".doc.")
	if !ok {
		return "", false
	}
	t, _, ok := strings.Cut(rest, ".")
	if !ok {
		return "", false
	}
	doc, err := base64.RawURLEncoding.DecodeString(t)
	return string(doc), err == nil
}

// NodeSubject is the subject of instance-wide messages of kind ("hb", "bye").
func (b *Bus) NodeSubject(kind string) string { return b.prefix + ".node." + kind }
