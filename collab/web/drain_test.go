package web_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/fasthttp/websocket"

	"collabd/collab"
	"collabd/collab/web"
	"collabd/nats"
	"collabd/nats/natstest"
)

// Shutdown reaches every connection, not only joined sessions: a connection still
// authenticating, a Phoenix socket without a channel, joins waiting for another
// instance's presence, SSE streams and poll sessions all get 1012 at once, and Shutdown
// finds no connection left.
func TestShutdownClosesEveryConnection(t *testing.T) {
	ns := natstest.NewServer(t)
	in := startInstance(t, ns.URL(), instanceOpts{
		web: web.Config{JWTSecret: testSecret},
		// The join that opens the document waits for the mute instance up to SyncTimeout
		// (then fails, the hub draining); its client is told at once all the same.
		hub: collab.Config{SyncTimeout: 3 * time.Second, Heartbeat: 100 * time.Millisecond, DownAfter: time.Minute},
	})
	// SSE and long-polling sessions, joined (before the mute instance below appears).
	sse, _ := openSSE(t, in, "drain-http?token="+token(t, "sam", time.Hour, nil), nil)
	sse.expect("welcome")
	p := &poller{t: t, base: in.url + "/poll/drain-http"}
	status, a, err := getPoll(t, context.Background(), p.base+"?token="+token(t, "pat", time.Hour, nil))
	if err != nil || status != 200 {
		t.Fatalf("open poll: %d %s %v", status, a.Raw, err)
	}
	p.sid = a.Sid
	polled := make(chan pollAnswer, 1)
	go func() {
		_, a, _ := getPoll(t, context.Background(), p.base+"?sid="+p.sid)
		polled <- a
	}()

	// An instance that heartbeats but never answers sync requests keeps joins waiting.
	mute, err := nats.Open(context.Background(), nats.Options{URL: ns.URL(), Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer mute.Close(context.Background())
	natstest.WaitFor(t, 5*time.Second, func() bool {
		_ = mute.Publish(mute.NodeSubject("hb"), []byte(`{"n":"mute"}`))
		return len(in.hub.Peers()) == 1
	})

	authenticating, _, err := dial(t, in, "/ws/drain-auth", nil)
	if err != nil {
		t.Fatal(err)
	}
	phx, _, err := websocket.DefaultDialer.Dial(in.wsURL("/realtime/v1/websocket?vsn=2.0.0"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer phx.Close()
	opener, _, err := dial(t, in, "/ws/drain-wait?token="+token(t, "ann", time.Hour, nil), nil)
	if err != nil {
		t.Fatal(err)
	}
	natstest.WaitFor(t, 5*time.Second, func() bool { return in.hub.Docs() == 2 }) // drain-http, drain-wait
	second, _, err := dial(t, in, "/ws/drain-wait?token="+token(t, "bob", time.Hour, nil), nil)
	if err != nil {
		t.Fatal(err)
	}
	natstest.WaitFor(t, 5*time.Second, func() bool { return metric(t, in, "collabd_connections") == 6 })

	start := time.Now()
	done := make(chan error, 1)
	go func() { done <- in.srv.Shutdown(5 * time.Second) }()
	for name, c := range map[string]*client{"authenticating": authenticating, "opening the document": opener, "joining": second} {
		if ce := c.waitClose(5 * time.Second); ce == nil || ce.Code != 1012 {
			t.Errorf("%s: close %v, want 1012", name, ce)
		}
	}
	phx.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		_, _, err := phx.ReadMessage()
		var ce *websocket.CloseError
		if errors.As(err, &ce) {
			if ce.Code != 1012 {
				t.Errorf("phoenix socket without channel: close %v, want 1012", ce)
			}
			break
		}
		if err != nil {
			t.Fatalf("phoenix socket without channel: %v, want close 1012", err)
		}
	}
	if ci := sse.waitEnd(5 * time.Second); ci == nil || ci.Code != 1012 {
		t.Errorf("SSE stream: close %+v, want 1012", ci)
	}
	select {
	case a := <-polled:
		if a.Close == nil || a.Close.Code != 1012 {
			t.Errorf("outstanding poll: %s, want close 1012", a.Raw)
		}
	case <-time.After(5 * time.Second):
		t.Error("outstanding poll not answered")
	}
	if err := <-done; err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	t.Logf("every connection closed and shutdown done in %s", time.Since(start).Round(time.Millisecond))
}
