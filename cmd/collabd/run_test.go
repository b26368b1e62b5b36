package main

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// runEnv returns a getenv that reads only env.
func runEnv(env map[string]string) func(string) string {
	return func(name string) string { return env[name] }
}

// TestRunEndToEnd runs the whole binary in-process on loopback with the embedded NATS kept
// in-process: health, readiness, metrics, the demo page, a native join, then a graceful
// shutdown that closes the client with 1012.
func TestRunEndToEnd(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	logs := &procLogBuf{}
	done := make(chan error, 1)
	go func() { // ends when ctx does
		done <- run(ctx, []string{"-addr", "127.0.0.1:0", "-nats-listen", "off"}, runEnv(nil), logs)
	}()
	returned := false
	t.Cleanup(func() {
		cancel()
		if !returned {
			select {
			case <-done:
			case <-time.After(15 * time.Second):
				t.Errorf("run did not return after cancel")
			}
		}
		if t.Failed() {
			t.Logf("run's log:\n%s", logs)
		}
	})

	procPoll(t, 10*time.Second, "collabd listening log line", func() bool {
		select {
		case err := <-done:
			returned = true
			t.Fatalf("run returned early: %v", err)
		default:
		}
		return logs.listenAddr() != ""
	})
	addr := logs.listenAddr()
	if host, _, err := net.SplitHostPort(addr); err != nil || host != "127.0.0.1" {
		t.Fatalf("listening on %q, want 127.0.0.1:<port>", addr)
	}
	base := "http://" + addr

	for _, c := range []struct {
		path, contains string
	}{
		{"/healthz", ""},
		{"/readyz", ""},
		{"/metrics", "collabd_connections"},
		{"/", "collab.js"},
	} {
		code, body, err := procGet(base + c.path)
		if err != nil {
			t.Fatalf("GET %s: %v", c.path, err)
		}
		if code != http.StatusOK {
			t.Errorf("GET %s: got status %d, want 200 (body %q)", c.path, code, body)
		}
		if !strings.Contains(body, c.contains) {
			t.Errorf("GET %s: body does not contain %q:\n%.300s", c.path, c.contains, body)
		}
	}
	if code, body, _ := procGet(base + "/"); !strings.Contains(strings.ToLower(body), "<html") {
		t.Errorf("GET /: got status %d and no HTML page:\n%.300s", code, body)
	}

	alice := ndial(t, base, "doc", "alice")
	procPoll(t, 5*time.Second, "presence.state after welcome", func() bool { return alice.first() != nil })
	if got := alice.types(); len(got) < 2 || got[0] != "welcome" || got[1] != "presence.state" {
		t.Errorf("first frames %q, want welcome then presence.state", got)
	}
	if e, ok := alice.first()[alice.ID()]; !ok || e.User != "alice" {
		t.Errorf("presence.state %v does not hold alice as %s", alice.first(), alice.ID())
	}
	_, metrics, _ := procGet(base + "/metrics")
	if !strings.Contains(metrics, "collabd_connections 1") {
		t.Errorf("metrics do not count alice's connection:\n%s", grepLines(metrics, "collabd_connections"))
	}

	cancelled := time.Now()
	cancel()
	procPoll(t, 5*time.Second, "alice closed by the shutdown", alice.closed)
	if code, _ := alice.closeCode(); code != 1012 {
		t.Errorf("alice's close: got %v, want close code 1012", alice.err())
	}
	select {
	case err := <-done:
		returned = true
		if err != nil {
			t.Errorf("run returned %v, want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("run did not return within 5s of cancel")
	}
	t.Logf("run returned %s after cancel", time.Since(cancelled).Round(time.Millisecond))
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Errorf("%s still accepts connections after run returned", addr)
	}
}

func grepLines(text, substr string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestRunConfigError: run reports a bad setting before it starts anything.
func TestRunConfigError(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := run(ctx, []string{"-addr", "127.0.0.1:0", "-nats-listen", "off", "-heartbeat", "2s", "-down-after", "1s"}, runEnv(nil), io.Discard)
	if err == nil || !strings.Contains(err.Error(), "-down-after") {
		t.Fatalf("run: got %v, want an error about -down-after", err)
	}
}

func TestRunListenError(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = run(ctx, []string{"-addr", ln.Addr().String(), "-nats-listen", "off"}, runEnv(nil), io.Discard)
	if err == nil || !strings.Contains(err.Error(), ln.Addr().String()) {
		t.Fatalf("run on a taken port: got %v, want an error naming %s", err, ln.Addr())
	}
}

// TestRunParseConfig checks the configuration contract (DESIGN.md section 8).
func TestRunParseConfig(t *testing.T) {
	defaults := config{
		addr: ":8080", natsListen: "127.0.0.1:4222", heartbeat: time.Second, downAfter: 3 * time.Second,
		logLevel: slog.LevelInfo, logFormat: "text", maxConnsPerIP: 2000, shutdownTimeout: 10 * time.Second,
		cursorTick: 10 * time.Millisecond,
	}
	with := func(f func(*config)) config {
		c := defaults
		f(&c)
		return c
	}
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		want    config
		wantErr []string // substrings of the error; nil: no error
	}{
		{name: "defaults", want: defaults},
		{name: "env", env: map[string]string{
			"COLLABD_ADDR": "127.0.0.1:9001", "NATS_URL": "nats://n1:4222,nats://n2:4222", "COLLABD_NATS_LISTEN": "off",
			"COLLABD_HEARTBEAT": "250ms", "COLLABD_DOWN_AFTER": "1s", "COLLABD_JWT_SECRET": "s3cret",
			"COLLABD_ALLOWED_ORIGINS": "https://a.example, https://b.example", "COLLABD_LOG_LEVEL": "debug",
		}, want: with(func(c *config) {
			c.addr, c.natsURL, c.natsListen = "127.0.0.1:9001", "nats://n1:4222,nats://n2:4222", "off"
			c.heartbeat, c.downAfter, c.jwtSecret = 250*time.Millisecond, time.Second, "s3cret"
			c.origins, c.logLevel = []string{"https://a.example", "https://b.example"}, slog.LevelDebug
		})},
		{name: "flags win over env", args: []string{
			"-addr", ":7000", "-nats", "nats://flag:4222", "-heartbeat", "200ms", "-down-after", "900ms",
			"-log-level", "warn", "-origins", "https://flag.example", "-jwt-secret", "flag",
		}, env: map[string]string{
			"COLLABD_ADDR": ":9001", "PORT": "9002", "NATS_URL": "nats://env:4222", "COLLABD_HEARTBEAT": "5s",
			"COLLABD_DOWN_AFTER": "10s", "COLLABD_LOG_LEVEL": "debug", "COLLABD_ALLOWED_ORIGINS": "https://env.example",
			"COLLABD_JWT_SECRET": "env",
		}, want: with(func(c *config) {
			c.addr, c.natsURL, c.heartbeat, c.downAfter = ":7000", "nats://flag:4222", 200*time.Millisecond, 900*time.Millisecond
			c.logLevel, c.origins, c.jwtSecret = slog.LevelWarn, []string{"https://flag.example"}, "flag"
		})},
		{name: "PORT", env: map[string]string{"PORT": "9002"}, want: with(func(c *config) { c.addr = ":9002" })},
		{name: "COLLABD_ADDR wins over PORT", env: map[string]string{"PORT": "9002", "COLLABD_ADDR": "127.0.0.1:9001"},
			want: with(func(c *config) { c.addr = "127.0.0.1:9001" })},
		{name: "-addr wins over PORT", args: []string{"-addr", "127.0.0.1:0"}, env: map[string]string{"PORT": "9002"},
			want: with(func(c *config) { c.addr = "127.0.0.1:0" })},
		{name: "env heartbeat within default down-after", env: map[string]string{"COLLABD_HEARTBEAT": "2s"},
			want: with(func(c *config) { c.heartbeat = 2 * time.Second })},
		{name: "bad env duration", env: map[string]string{"COLLABD_HEARTBEAT": "fast"},
			wantErr: []string{"COLLABD_HEARTBEAT", `"fast"`, "duration"}},
		{name: "bad env down-after", env: map[string]string{"COLLABD_DOWN_AFTER": "3"},
			wantErr: []string{"COLLABD_DOWN_AFTER", `"3"`, "duration"}},
		{name: "bad flag duration", args: []string{"-heartbeat", "fast"},
			wantErr: []string{"-heartbeat", `"fast"`}},
		{name: "bad flag down-after", args: []string{"-down-after", "10"},
			wantErr: []string{"-down-after", `"10"`}},
		{name: "down-after equal to heartbeat", args: []string{"-heartbeat", "1s", "-down-after", "1s"},
			wantErr: []string{"-down-after", "longer than -heartbeat"}},
		{name: "down-after shorter than heartbeat", args: []string{"-heartbeat", "2s", "-down-after", "1s"},
			wantErr: []string{"-down-after (1s)", "-heartbeat (2s)"}},
		{name: "env down-after shorter than default heartbeat", env: map[string]string{"COLLABD_DOWN_AFTER": "500ms"},
			wantErr: []string{"-down-after (500ms)", "-heartbeat (1s)"}},
		{name: "drain delay from env", env: map[string]string{"COLLABD_DRAIN_DELAY": "15s"},
			want: with(func(c *config) { c.drainDelay = 15 * time.Second })},
		{name: "-drain-delay wins over env", args: []string{"-drain-delay", "2s"}, env: map[string]string{"COLLABD_DRAIN_DELAY": "15s"},
			want: with(func(c *config) { c.drainDelay = 2 * time.Second })},
		{name: "bad env drain delay", env: map[string]string{"COLLABD_DRAIN_DELAY": "10"},
			wantErr: []string{"COLLABD_DRAIN_DELAY", `"10"`, "duration"}},
		{name: "negative drain delay", args: []string{"-drain-delay", "-1s"}, wantErr: []string{"-drain-delay", "zero or more"}},
		{name: "cursor tick from env", env: map[string]string{"COLLABD_CURSOR_TICK": "16ms"},
			want: with(func(c *config) { c.cursorTick = 16 * time.Millisecond })},
		{name: "-cursor-tick wins over env", args: []string{"-cursor-tick", "5ms"}, env: map[string]string{"COLLABD_CURSOR_TICK": "16ms"},
			want: with(func(c *config) { c.cursorTick = 5 * time.Millisecond })},
		{name: "cursor tick too long", args: []string{"-cursor-tick", "50ms"}, wantErr: []string{"-cursor-tick 50ms", "1ms to 30ms"}},
		{name: "cursor tick too short", args: []string{"-cursor-tick", "0s"}, wantErr: []string{"-cursor-tick 0s", "1ms to 30ms"}},
		{name: "zero heartbeat", args: []string{"-heartbeat", "0s"}, wantErr: []string{"positive"}},
		{name: "negative heartbeat", args: []string{"-heartbeat", "-1s"}, wantErr: []string{"positive"}},
		{name: "bad log level", args: []string{"-log-level", "loud"}, wantErr: []string{"-log-level", "loud"}},
		{name: "bad log format", args: []string{"-log-format", "xml"}, wantErr: []string{"-log-format", "xml"}},
		{name: "unknown flag", args: []string{"-prot", "1"}, wantErr: []string{"-prot"}},
		{name: "stray argument", args: []string{"serve"}, wantErr: []string{"serve"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseConfig(tc.args, runEnv(tc.env), io.Discard)
			if tc.wantErr != nil {
				if err == nil {
					t.Fatalf("got config %+v, want an error containing %q", got, tc.wantErr)
				}
				for _, s := range tc.wantErr {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("got error %q, want it to contain %q", err, s)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("got error %v, want none", err)
			}
			if !configEqual(got, tc.want) {
				t.Errorf("got  %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func configEqual(a, b config) bool {
	eq := slices.Equal(a.origins, b.origins)
	a.origins, b.origins = nil, nil
	return eq && reflect.DeepEqual(a, b)
}

// TestRunParseConfigUsageGoesToStderr: flag errors are written where run's caller said.
func TestRunParseConfigUsageGoesToStderr(t *testing.T) {
	var stderr strings.Builder
	_, err := parseConfig([]string{"-heartbeat", "fast"}, runEnv(nil), &stderr)
	if err == nil {
		t.Fatal("got no error for -heartbeat fast")
	}
	if !strings.Contains(stderr.String(), "-down-after") {
		t.Errorf("usage on stderr does not list -down-after:\n%s", stderr.String())
	}
}
