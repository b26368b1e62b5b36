package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/fasthttp/websocket"

	"collabd/nats/natstest"
)

// TestRunParseSecurityConfig: the TLS, NATS credential and proxy settings, env and flags.
func TestRunParseSecurityConfig(t *testing.T) {
	env := map[string]string{
		"COLLABD_TLS_CERT": "c.pem", "COLLABD_TLS_KEY": "k.pem", "COLLABD_TRUSTED_PROXIES": "10.0.0.0/8, 192.0.2.7",
		"NATS_CA": "ca.pem", "NATS_CERT": "nc.pem", "NATS_KEY": "nk.pem", "NATS_USER": "u", "NATS_PASSWORD": "p",
	}
	c, err := parseConfig(nil, runEnv(env), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.tlsCert != "c.pem" || c.tlsKey != "k.pem" || strings.Join(c.trustedProxies, "|") != "10.0.0.0/8|192.0.2.7" ||
		c.natsCA != "ca.pem" || c.natsCert != "nc.pem" || c.natsKey != "nk.pem" || c.natsUser != "u" || c.natsPassword != "p" {
		t.Errorf("from the environment: got %+v", c)
	}
	c, err = parseConfig([]string{"-tls-cert", "fc.pem", "-tls-key", "fk.pem", "-trusted-proxies", "::1", "-nats-token", "t",
		"-nats-creds", "x.creds", "-nats-nkey", "x.nk"}, runEnv(env), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.tlsCert != "fc.pem" || c.tlsKey != "fk.pem" || strings.Join(c.trustedProxies, "|") != "::1" ||
		c.natsToken != "t" || c.natsCreds != "x.creds" || c.natsNKey != "x.nk" {
		t.Errorf("flags over the environment: got %+v", c)
	}
	for _, tc := range []struct {
		args    []string
		wantErr string
	}{
		{[]string{"-tls-cert", "c.pem"}, "-tls-cert and -tls-key go together"},
		{[]string{"-trusted-proxies", "10.0.0.0/33"}, `"10.0.0.0/33" is neither`},
		{[]string{"-trusted-proxies", "lb.example"}, `"lb.example" is neither`},
	} {
		if _, err := parseConfig(tc.args, runEnv(nil), io.Discard); err == nil || !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("%q: got %v, want an error containing %q", tc.args, err, tc.wantErr)
		}
	}
}

// TestRunTLS serves wss with a generated certificate: a client that trusts its CA joins a
// document over real TLS, and a plain WebSocket client gets no upgrade.
func TestRunTLS(t *testing.T) {
	certs := natstest.NewCerts(t)
	ctx, cancel := context.WithCancel(context.Background())
	logs := &procLogBuf{}
	done := make(chan error, 1)
	go func() { // ends when ctx does
		done <- run(ctx, []string{"-addr", "127.0.0.1:0", "-nats-listen", "off", "-tls-cert", certs.ServerCert, "-tls-key", certs.ServerKey}, runEnv(nil), logs)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			t.Errorf("run did not return after cancel")
		}
	})
	procPoll(t, 10*time.Second, "collabd listening log line", func() bool { return logs.listenAddr() != "" })
	addr := logs.listenAddr()

	pem, err := os.ReadFile(certs.CA)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pem)
	d := websocket.Dialer{HandshakeTimeout: 5 * time.Second, TLSClientConfig: &tls.Config{RootCAs: roots}}
	ws, _, err := d.Dial("wss://"+addr+"/ws/doc?user=ann", nil)
	if err != nil {
		t.Fatalf("wss dial: %v", err)
	}
	defer ws.Close()
	ws.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, msg, err := ws.ReadMessage()
	if err != nil || !strings.Contains(string(msg), `"type":"welcome"`) {
		t.Fatalf("first frame over wss: %q %v, want welcome", msg, err)
	}
	if ws, _, err := (&websocket.Dialer{HandshakeTimeout: 2 * time.Second}).Dial("ws://"+addr+"/ws/doc?user=bob", nil); err == nil {
		ws.Close()
		t.Fatal("a plain ws:// client was upgraded on the TLS listener")
	}
}
