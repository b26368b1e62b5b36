// Package nats connects collabd instances through NATS: it opens a connection to an external
// server or cluster, or starts an embedded nats-server when no URL is given, and names the
// subjects instances talk on. It imports nothing of collabd; *Bus satisfies collab.Bus.
package nats

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
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
	// PingInterval is how often the client pings its server; two unanswered pings drop the
	// connection and it reconnects to another server. It bounds how long a hung (not
	// crashed) NATS server goes unnoticed: collabd keeps it at 1s, or a third of the
	// instances' down-after when that is shorter. Too short, and a connection congested for
	// a moment (a pong waits behind everything sent before the ping) is taken for a hung
	// server. Default 5s.
	PingInterval time.Duration

	// TLS, as PEM files. With URL: CAFile verifies the servers (default: the system roots
	// when a URL is tls://), CertFile and KeyFile are the client certificate for servers that
	// verify clients. With the embedded server: CertFile and KeyFile are its certificate, so
	// that it accepts only TLS, and CAFile, when set, makes it require client certificates
	// that CA signed. Default: none.
	CAFile, CertFile, KeyFile string

	// Credentials, at most one kind: CredsFile (a .creds file: user JWT and nkey seed),
	// NKeyFile (a file holding an nkey seed, "SU..."), Token, or User and Password. With
	// URL they authenticate the connection. With the embedded server (not CredsFile, which
	// needs an operator-configured server) they are also what the server requires of every
	// client. Default: none.
	CredsFile, NKeyFile, Token, User, Password string
}

// hasCredential reports whether a credential is configured.
func (o Options) hasCredential() bool {
	return o.CredsFile != "" || o.NKeyFile != "" || o.Token != "" || o.User != ""
}

// checkCredentials refuses ambiguous or half-given credentials.
func (o Options) checkCredentials() error {
	n := 0
	for _, set := range []bool{o.CredsFile != "", o.NKeyFile != "", o.Token != "", o.User != ""} {
		if set {
			n++
		}
	}
	switch {
	case n > 1:
		return errors.New("nats: give one credential: a creds file, an nkey seed, a token, or a user and password")
	case o.Password != "" && o.User == "":
		return errors.New("nats: a password needs a user")
	case (o.CertFile == "") != (o.KeyFile == ""):
		return errors.New("nats: a TLS certificate needs its key, and a key its certificate")
	}
	return nil
}

// clientOptions are the TLS and credential options of the connection.
func (o Options) clientOptions() ([]natsgo.Option, error) {
	var opts []natsgo.Option
	if o.URL != "" { // the in-process connection to the embedded server needs no TLS
		if o.CAFile != "" {
			opts = append(opts, natsgo.RootCAs(o.CAFile))
		}
		if o.CertFile != "" {
			opts = append(opts, natsgo.ClientCert(o.CertFile, o.KeyFile))
		}
	}
	switch {
	case o.CredsFile != "":
		opts = append(opts, natsgo.UserCredentials(o.CredsFile))
	case o.NKeyFile != "":
		opt, err := natsgo.NkeyOptionFromSeed(o.NKeyFile)
		if err != nil {
			return nil, fmt.Errorf("nats: nkey seed %s: %w", o.NKeyFile, err)
		}
		opts = append(opts, opt)
	case o.Token != "":
		opts = append(opts, natsgo.Token(o.Token))
	case o.User != "":
		opts = append(opts, natsgo.UserInfo(o.User, o.Password))
	}
	return opts, nil
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
	if o.PingInterval <= 0 {
		o.PingInterval = 5 * time.Second
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

	reconnects atomic.Uint64 // connections regained after a loss, for Reconnects
}

// Open connects to NATS, starting an embedded server first when opts.URL is empty. With an
// external URL it keeps retrying in the background: the Bus reports Connected false until
// a server answers, and reconnects for ever after a loss.
func Open(ctx context.Context, opts Options) (*Bus, error) {
	opts = opts.withDefaults()
	if err := opts.checkCredentials(); err != nil {
		return nil, err
	}
	b := &Bus{prefix: opts.Prefix, log: opts.Logger}
	conn := []natsgo.Option{
		natsgo.Name(opts.Name),
		natsgo.NoEcho(),
		natsgo.MaxReconnects(-1),
		natsgo.ReconnectWait(250 * time.Millisecond),
		natsgo.ReconnectJitter(100*time.Millisecond, time.Second),
		natsgo.PingInterval(opts.PingInterval),
		natsgo.MaxPingsOutstanding(2),
		natsgo.DisconnectErrHandler(func(_ *natsgo.Conn, err error) {
			if err != nil { // nil: a deliberate close or drain
				b.log.Warn("nats disconnected", "err", err)
			}
		}),
		natsgo.ReconnectHandler(func(nc *natsgo.Conn) {
			b.reconnects.Add(1)
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
	secure, err := opts.clientOptions()
	if err != nil {
		return nil, err
	}
	conn = append(conn, secure...)
	url := opts.URL
	if url == "" {
		srv, err := startEmbedded(opts)
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

// startEmbedded starts the embedded server. It refuses to listen beyond loopback without a
// credential: anyone who can connect to the bus can inject members and broadcasts.
func startEmbedded(o Options) (*server.Server, error) {
	listen := o.Listen
	sopts := &server.Options{NoSigs: true, NoLog: true, MaxPayload: 1 << 20}
	if err := embeddedSecurity(o, sopts); err != nil {
		return nil, err
	}
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
		if !isLoopback(host) && !o.hasCredential() {
			return nil, fmt.Errorf("nats: the embedded server would listen on %s, beyond loopback, without a credential, and anyone who reaches it could inject members and broadcasts: set -nats-token (or -nats-user and -nats-password, or -nats-nkey) on every instance, or listen on loopback (-nats-listen 127.0.0.1:4222)", listen)
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

// embeddedSecurity sets the embedded server's authentication and TLS from o.
func embeddedSecurity(o Options, sopts *server.Options) error {
	switch {
	case o.CredsFile != "":
		return errors.New("nats: a creds file needs an external NATS server configured with its operator (set NATS_URL); the embedded server takes -nats-token, -nats-user/-nats-password or -nats-nkey")
	case o.NKeyFile != "":
		pub, err := nkeyPublic(o.NKeyFile)
		if err != nil {
			return err
		}
		sopts.Nkeys = []*server.NkeyUser{{Nkey: pub}}
	case o.Token != "":
		sopts.Authorization = o.Token
	case o.User != "":
		sopts.Username, sopts.Password = o.User, o.Password
	}
	if o.CAFile != "" && o.CertFile == "" {
		return errors.New("nats: -nats-ca with the embedded server verifies client certificates and needs the server's own -nats-cert and -nats-key")
	}
	if o.CertFile != "" {
		tc, err := server.GenTLSConfig(&server.TLSConfigOpts{CertFile: o.CertFile, KeyFile: o.KeyFile, CaFile: o.CAFile, Verify: o.CAFile != ""})
		if err != nil {
			return fmt.Errorf("nats: embedded server TLS: %w", err)
		}
		sopts.TLSConfig, sopts.TLS, sopts.TLSVerify, sopts.TLSTimeout = tc, true, o.CAFile != "", 2
	}
	return nil
}

// nkeyPublic reads an nkey seed file and returns its public key.
func nkeyPublic(file string) (string, error) {
	seed, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("nats: nkey seed: %w", err)
	}
	kp, err := nkeys.FromSeed(bytes.TrimSpace(seed))
	if err != nil {
		return "", fmt.Errorf("nats: nkey seed %s: %w", file, err)
	}
	defer kp.Wipe()
	return kp.PublicKey()
}

// isLoopback reports whether host names only this machine.
func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
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
	scheme, _, _ := strings.Cut(b.srv.ClientURL(), "://") // tls when the server requires TLS
	return scheme + "://" + b.srv.Addr().String()
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

// Reconnects is how many times the connection came back after a loss (a late first
// connection does not count), for the metrics.
func (b *Bus) Reconnects() uint64 { return b.reconnects.Load() }

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
