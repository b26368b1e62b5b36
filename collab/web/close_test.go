package web_test

import (
	"errors"
	"io"
	"testing"
	"time"

	"github.com/fasthttp/websocket"

	"collabd/collab/web"
)

// closedByServer reads ws like a browser after a close the server started: the library
// answers the close frame, then the client waits for the server to end the TCP connection
// without ending it itself. It returns the close code and how long after start the close
// frame and the end of the connection arrived; it fails the test when the server does not
// end the connection within wait.
func closedByServer(t *testing.T, ws *websocket.Conn, start time.Time, wait time.Duration) (int, time.Duration, time.Duration) {
	t.Helper()
	ws.SetReadDeadline(time.Now().Add(wait))
	var code int
	for {
		_, _, err := ws.ReadMessage()
		var ce *websocket.CloseError
		if errors.As(err, &ce) {
			code = ce.Code
			break
		}
		if err != nil {
			t.Fatalf("no close frame: %v", err)
		}
	}
	gotFrame := time.Since(start)
	nc := ws.NetConn()
	nc.SetReadDeadline(time.Now().Add(wait))
	if _, err := io.Copy(io.Discard, nc); err != nil {
		t.Fatalf("the server did not end the TCP connection after the close handshake: %v", err)
	}
	return code, gotFrame, time.Since(start)
}

func dialRaw(t *testing.T, in *instance, path string) *websocket.Conn {
	t.Helper()
	ws, _, err := websocket.DefaultDialer.Dial(in.wsURL(path), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ws.Close() })
	if _, _, err := ws.ReadMessage(); err != nil { // welcome
		t.Fatal(err)
	}
	return ws
}

// A close the server starts reaches the client at once, and the TCP connection ends as
// soon as the client answered the close frame (RFC 6455 7.1.1), not after CloseTimeout
// (here a minute, so that waiting for it fails the test).
func TestServerCloseEndsConnectionOnAnswer(t *testing.T) {
	in := startCluster(t, 1, instanceOpts{web: web.Config{CloseTimeout: time.Minute}})[0]

	t.Run("reader decides (4000)", func(t *testing.T) {
		ws := dialRaw(t, in, "/ws/close-a?user=u")
		for range 20 {
			ws.WriteMessage(websocket.TextMessage, []byte("nonsense"))
		}
		start := time.Now()
		ws.WriteMessage(websocket.TextMessage, []byte("nonsense")) // one too many
		code, frame, end := closedByServer(t, ws, start, 10*time.Second)
		if code != 4000 {
			t.Fatalf("close %d, want 4000", code)
		}
		t.Logf("close frame after %s, connection ended after %s", frame, end)
	})

	t.Run("writer decides (1012)", func(t *testing.T) {
		ws := dialRaw(t, in, "/ws/close-b?user=u")
		start := time.Now()
		go in.hub.Drain()
		code, frame, end := closedByServer(t, ws, start, 10*time.Second)
		if code != 1012 {
			t.Fatalf("close %d, want 1012", code)
		}
		t.Logf("close frame after %s, connection ended after %s", frame, end)
	})
}

// A client that never answers the close frame is cut off after CloseTimeout.
func TestServerCloseBoundedWhenClientSilent(t *testing.T) {
	in := startCluster(t, 1, instanceOpts{web: web.Config{CloseTimeout: 200 * time.Millisecond}})[0]
	ws := dialRaw(t, in, "/ws/close-c?user=u")
	ws.SetCloseHandler(func(int, string) error { return nil }) // no answer
	for range 21 {
		ws.WriteMessage(websocket.TextMessage, []byte("nonsense"))
	}
	code, _, _ := closedByServer(t, ws, time.Now(), 10*time.Second)
	if code != 4000 {
		t.Fatalf("close %d, want 4000", code)
	}
}
