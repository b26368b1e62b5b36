package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"time"

	"collabd/collab"
)

// config is every setting of collabd (DESIGN.md section 8). Flags win over environment
// variables; every setting has a working default.
type config struct {
	addr            string
	natsURL         string
	natsListen      string
	heartbeat       time.Duration
	downAfter       time.Duration
	jwtSecret       string
	origins         []string
	logLevel        slog.Level
	logFormat       string
	maxConnsPerIP   int
	shutdownTimeout time.Duration
	drainDelay      time.Duration
	cursorTick      time.Duration

	tlsCert, tlsKey string   // PEM files: serve HTTPS and wss on addr
	trustedProxies  []string // addresses and CIDRs whose X-Forwarded-For is believed

	// The NATS connection's TLS (PEM files) and its one credential; with the embedded
	// server, its certificate and the credential it requires.
	natsCA, natsCert, natsKey                              string
	natsCreds, natsNKey, natsToken, natsUser, natsPassword string
}

// parseConfig reads the environment through getenv, then args.
func parseConfig(args []string, getenv func(string) string, stderr io.Writer) (config, error) {
	env := func(name, def string) string {
		if v := getenv(name); v != "" {
			return v
		}
		return def
	}
	addr := env("COLLABD_ADDR", "")
	if addr == "" {
		if port := getenv("PORT"); port != "" {
			addr = ":" + port
		} else {
			addr = ":8080"
		}
	}
	fs := flag.NewFlagSet("collabd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c config
	var origins, level, proxies string
	fs.StringVar(&c.addr, "addr", addr, "HTTP/WebSocket listen address (env COLLABD_ADDR or PORT)")
	fs.StringVar(&c.natsURL, "nats", env("NATS_URL", ""), "external NATS URL(s), comma-separated; empty starts an embedded server (env NATS_URL)")
	fs.StringVar(&c.natsListen, "nats-listen", env("COLLABD_NATS_LISTEN", "127.0.0.1:4222"), `where the embedded nats-server listens for other instances; "off" for in-process only (env COLLABD_NATS_LISTEN)`)
	heartbeat, err1 := envDuration(getenv, "COLLABD_HEARTBEAT", time.Second)
	downAfter, err2 := envDuration(getenv, "COLLABD_DOWN_AFTER", 3*time.Second)
	shutdown, err3 := envDuration(getenv, "COLLABD_SHUTDOWN_TIMEOUT", 10*time.Second)
	maxPerIP, err4 := envInt(getenv, "COLLABD_MAX_CONNS_PER_IP", 2000)
	drainDelay, err5 := envDuration(getenv, "COLLABD_DRAIN_DELAY", 0)
	cursorTick, err6 := envDuration(getenv, "COLLABD_CURSOR_TICK", collab.DefaultCursorTick)
	if err := errors.Join(err1, err2, err3, err4, err5, err6); err != nil {
		return c, err
	}
	fs.DurationVar(&c.heartbeat, "heartbeat", heartbeat, "instance heartbeat interval (env COLLABD_HEARTBEAT)")
	fs.DurationVar(&c.downAfter, "down-after", downAfter, "silence after which an instance counts as dead (env COLLABD_DOWN_AFTER)")
	fs.StringVar(&c.jwtSecret, "jwt-secret", env("COLLABD_JWT_SECRET", ""), "HS256 secret; when set, every connection needs a valid token (env COLLABD_JWT_SECRET)")
	fs.StringVar(&origins, "origins", env("COLLABD_ALLOWED_ORIGINS", ""), "comma-separated browser origins allowed to connect; empty allows any (env COLLABD_ALLOWED_ORIGINS)")
	fs.StringVar(&level, "log-level", env("COLLABD_LOG_LEVEL", "info"), "debug, info, warn or error (env COLLABD_LOG_LEVEL)")
	fs.StringVar(&c.logFormat, "log-format", env("COLLABD_LOG_FORMAT", "text"), "text or json (env COLLABD_LOG_FORMAT)")
	fs.IntVar(&c.maxConnsPerIP, "max-conns-per-ip", maxPerIP, "connections (WebSocket, SSE, long polling) allowed from one address (env COLLABD_MAX_CONNS_PER_IP)")
	fs.DurationVar(&c.shutdownTimeout, "shutdown-timeout", shutdown, "how long a graceful shutdown may take (env COLLABD_SHUTDOWN_TIMEOUT)")
	fs.StringVar(&c.tlsCert, "tls-cert", env("COLLABD_TLS_CERT", ""), "PEM certificate (chain) file: serve HTTPS and wss with it and -tls-key (env COLLABD_TLS_CERT)")
	fs.StringVar(&c.tlsKey, "tls-key", env("COLLABD_TLS_KEY", ""), "PEM private key file of -tls-cert (env COLLABD_TLS_KEY)")
	fs.StringVar(&proxies, "trusted-proxies", env("COLLABD_TRUSTED_PROXIES", ""), "comma-separated addresses or CIDRs of load balancers whose X-Forwarded-For gives the client address (env COLLABD_TRUSTED_PROXIES)")
	fs.StringVar(&c.natsCA, "nats-ca", env("NATS_CA", ""), "PEM CA file that verifies the NATS servers (env NATS_CA)")
	fs.StringVar(&c.natsCert, "nats-cert", env("NATS_CERT", ""), "PEM client certificate for NATS; with the embedded server, its certificate (env NATS_CERT)")
	fs.StringVar(&c.natsKey, "nats-key", env("NATS_KEY", ""), "PEM private key of -nats-cert (env NATS_KEY)")
	fs.StringVar(&c.natsCreds, "nats-creds", env("NATS_CREDS", ""), "NATS .creds file (user JWT and nkey seed); external NATS only (env NATS_CREDS)")
	fs.StringVar(&c.natsNKey, "nats-nkey", env("NATS_NKEY", ""), "file holding a NATS nkey seed (env NATS_NKEY)")
	fs.StringVar(&c.natsToken, "nats-token", env("NATS_TOKEN", ""), "NATS token; prefer the environment, flags show in ps (env NATS_TOKEN)")
	fs.StringVar(&c.natsUser, "nats-user", env("NATS_USER", ""), "NATS user, with -nats-password (env NATS_USER)")
	fs.StringVar(&c.natsPassword, "nats-password", env("NATS_PASSWORD", ""), "NATS password; prefer the environment (env NATS_PASSWORD)")
	fs.DurationVar(&c.drainDelay, "drain-delay", drainDelay, "on SIGTERM, how long /readyz answers 503 while clients are still served, before they are closed with 1012; a second signal cuts it short (env COLLABD_DRAIN_DELAY)")
	fs.DurationVar(&c.cursorTick, "cursor-tick", cursorTick, "how often a document sends the cursors that changed, one frame per member: longer costs less CPU per cursor and adds latency (env COLLABD_CURSOR_TICK)")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	if err := c.logLevel.UnmarshalText([]byte(level)); err != nil {
		return c, fmt.Errorf("-log-level %q: want debug, info, warn or error", level)
	}
	if c.logFormat != "text" && c.logFormat != "json" {
		return c, fmt.Errorf("-log-format %q: want text or json", c.logFormat)
	}
	for _, o := range strings.Split(origins, ",") {
		if o = strings.TrimSpace(o); o != "" {
			c.origins = append(c.origins, o)
		}
	}
	if (c.tlsCert == "") != (c.tlsKey == "") {
		return c, errors.New("-tls-cert and -tls-key go together: give both to serve TLS, or neither")
	}
	for _, p := range strings.Split(proxies, ",") {
		if p = strings.TrimSpace(p); p == "" {
			continue
		}
		if _, _, err := net.ParseCIDR(p); err != nil && net.ParseIP(p) == nil {
			return c, fmt.Errorf("-trusted-proxies: %q is neither an IP address nor a CIDR such as 10.0.0.0/8", p)
		}
		c.trustedProxies = append(c.trustedProxies, p)
	}
	if c.cursorTick < time.Millisecond || c.cursorTick > 30*time.Millisecond {
		return c, fmt.Errorf("-cursor-tick %s: want 1ms to 30ms (a 30 Hz sender's positions must not merge)", c.cursorTick)
	}
	if c.drainDelay < 0 {
		return c, fmt.Errorf("-drain-delay %s: want zero or more", c.drainDelay)
	}
	if c.heartbeat <= 0 || c.downAfter <= c.heartbeat {
		return c, fmt.Errorf("-down-after (%s) must be longer than -heartbeat (%s), and both positive", c.downAfter, c.heartbeat)
	}
	return c, nil
}

func envDuration(getenv func(string) string, name string, def time.Duration) (time.Duration, error) {
	v := getenv(name)
	if v == "" {
		return def, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return 0, fmt.Errorf("%s=%q: want a duration such as 1s or 250ms", name, v)
	}
	return d, nil
}

func envInt(getenv func(string) string, name string, def int) (int, error) {
	v := getenv(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return 0, fmt.Errorf("%s=%q: want a whole number", name, v)
	}
	return n, nil
}

func (c config) logger(w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: c.logLevel}
	if c.logFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
