package nats_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"collabd/nats"
	"collabd/nats/natstest"
)

func TestEmbeddedBeyondLoopbackNeedsCredential(t *testing.T) {
	_, err := nats.Open(context.Background(), nats.Options{Listen: "0.0.0.0:0", Logger: quiet()})
	if err == nil || !strings.Contains(err.Error(), "-nats-token") {
		t.Fatalf("embedded server on 0.0.0.0 without a credential: got %v, want a refusal naming -nats-token", err)
	}
	b := open(t, nats.Options{Listen: "0.0.0.0:0", Token: "s3cret"})
	if !b.Connected() {
		t.Fatal("embedded server with a token: not connected")
	}
	_, err = nats.Open(context.Background(), nats.Options{Listen: "off", CredsFile: "x.creds", Logger: quiet()})
	if err == nil || !strings.Contains(err.Error(), "NATS_URL") {
		t.Fatalf("embedded server with a creds file: got %v, want a refusal naming NATS_URL", err)
	}
	_, err = nats.Open(context.Background(), nats.Options{Listen: "off", Token: "a", User: "b", Logger: quiet()})
	if err == nil || !strings.Contains(err.Error(), "give one credential") {
		t.Fatalf("token and user: got %v, want a refusal", err)
	}
	_, err = nats.Open(context.Background(), nats.Options{Listen: "off", CAFile: "ca.pem", Logger: quiet()})
	if err == nil || !strings.Contains(err.Error(), "-nats-cert") {
		t.Fatalf("embedded server with a CA and no certificate: got %v, want a refusal naming -nats-cert", err)
	}
}

// TestEmbeddedEnforcesCredential: a client without the credential cannot connect to an
// embedded server configured with one, and a second instance with it can, and hears the
// first.
func TestEmbeddedEnforcesCredential(t *testing.T) {
	seed := nkeySeed(t)
	for _, tc := range []struct {
		name string
		opts nats.Options
	}{
		{"token", nats.Options{Token: "s3cret"}},
		{"user and password", nats.Options{User: "collabd", Password: "pw"}},
		{"nkey", nats.Options{NKeyFile: seed}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := tc.opts
			o.Listen = "127.0.0.1:0"
			first := open(t, o)
			url := first.ListenURL()
			if nc, err := natsgo.Connect(url, natsgo.NoReconnect()); err == nil {
				nc.Close()
				t.Fatalf("a client without the credential connected to %s", url)
			} else if !strings.Contains(strings.ToLower(err.Error()), "authorization") {
				t.Fatalf("unauthenticated connect: %v, want an authorization violation", err)
			}
			o.Listen, o.URL = "", url
			second := open(t, o)
			natstest.WaitFor(t, 5*time.Second, second.Connected)
			assertHears(t, first, second)
		})
	}
}

// assertHears checks that a publish on from reaches a subscription on to.
func assertHears(t *testing.T, to, from *nats.Bus) {
	t.Helper()
	got := make(chan string, 1)
	unsub, err := to.Subscribe("collab.test", func(_ string, data []byte) {
		select {
		case got <- string(data):
		default:
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer unsub()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := to.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if err := from.Publish("collab.test", []byte("hello")); err != nil {
		t.Fatal(err)
	}
	select {
	case s := <-got:
		if s != "hello" {
			t.Fatalf("got %q, want hello", s)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("message not delivered between the instances")
	}
}

func nkeySeed(t *testing.T) string {
	t.Helper()
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	seed, err := kp.Seed()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "collabd.nk")
	if err := os.WriteFile(path, seed, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestTLSToExternalServer connects over TLS to a nats-server that requires client
// certificates, verifying it with the test CA.
func TestTLSToExternalServer(t *testing.T) {
	certs := natstest.NewCerts(t)
	tc, err := server.GenTLSConfig(&server.TLSConfigOpts{CertFile: certs.ServerCert, KeyFile: certs.ServerKey, CaFile: certs.CA, Verify: true})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, NoSigs: true, NoLog: true,
		TLSConfig: tc, TLS: true, TLSVerify: true, TLSTimeout: 2})
	if err != nil {
		t.Fatal(err)
	}
	go srv.Start() // stopped at cleanup
	t.Cleanup(srv.Shutdown)
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("TLS nats-server not ready")
	}
	url := "tls://" + srv.Addr().String()
	if nc, err := natsgo.Connect(url, natsgo.NoReconnect(), natsgo.RootCAs(certs.CA)); err == nil {
		nc.Close()
		t.Fatal("connected without a client certificate")
	}
	o := nats.Options{URL: url, CAFile: certs.CA, CertFile: certs.ClientCert, KeyFile: certs.ClientKey}
	a, b := open(t, o), open(t, o)
	natstest.WaitFor(t, 5*time.Second, func() bool { return a.Connected() && b.Connected() })
	assertHears(t, a, b)
}

// TestEmbeddedTLS: with a certificate the embedded server accepts only TLS, and a second
// instance joins it with the CA.
func TestEmbeddedTLS(t *testing.T) {
	certs := natstest.NewCerts(t)
	first := open(t, nats.Options{Listen: "127.0.0.1:0", Token: "s3cret", CertFile: certs.ServerCert, KeyFile: certs.ServerKey})
	url := first.ListenURL()
	if !strings.HasPrefix(url, "tls://") {
		t.Fatalf("ListenURL %q, want tls://", url)
	}
	if nc, err := natsgo.Connect(strings.Replace(url, "tls://", "nats://", 1), natsgo.NoReconnect(), natsgo.Token("s3cret")); err == nil {
		nc.Close()
		t.Fatal("a client that cannot verify the certificate was accepted by a TLS embedded server")
	}
	second := open(t, nats.Options{URL: url, Token: "s3cret", CAFile: certs.CA})
	natstest.WaitFor(t, 5*time.Second, second.Connected)
	assertHears(t, first, second)
}
