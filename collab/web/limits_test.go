package web_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"collabd/nats/natstest"
)

// metric reads one unlabelled sample of the instance's /metrics.
func metric(t *testing.T, in *instance, name string) float64 {
	t.Helper()
	resp, err := http.Get(in.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("metric %s: %v", name, err)
			}
			return f
		}
	}
	t.Fatalf("metric %s not in /metrics", name)
	return 0
}

// badHandshake sends one WebSocket upgrade request over a new TCP connection: a wrong
// version, no key, or a valid one that the client resets at once.
func badHandshake(addr, path, kind string) error {
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer nc.Close()
	req := "GET " + path + " HTTP/1.1\r\nHost: " + addr + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
	switch kind {
	case "version":
		req += "Sec-WebSocket-Version: 12\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
	case "nokey":
		req += "Sec-WebSocket-Version: 13\r\n"
	case "reset":
		req += "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
	}
	if _, err := io.WriteString(nc, req+"\r\n"); err != nil {
		return err
	}
	if kind == "reset" {
		nc.(*net.TCPConn).SetLinger(0) // close sends RST
		return nil
	}
	nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(nc), nil)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode < 400 {
		return fmt.Errorf("%s handshake answered %d", kind, resp.StatusCode)
	}
	return nil
}

// Failed upgrades and clients that reset right after the request keep no connection slot:
// one address cannot lock itself (or everyone behind its proxy) out.
func TestFailedUpgradesReleaseSlots(t *testing.T) {
	in := startCluster(t, 1, instanceOpts{})[0]
	addr := strings.TrimPrefix(in.url, "http://")
	const n = 2000 // the default per-address limit
	kinds := []string{"version", "nokey", "reset"}
	paths := []string{"/ws/slots", "/realtime/v1/websocket?vsn=2.0.0"}
	var wg sync.WaitGroup
	errs := make(chan error, n)
	next := make(chan int)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if err := badHandshake(addr, paths[i%2], kinds[i%3]); err != nil {
					errs <- err
				}
			}
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	natstest.WaitFor(t, 10*time.Second, func() bool { return metric(t, in, "collabd_connections") == 0 })

	// Refused upgrades on a connection that stays open free their slot at once.
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	br := bufio.NewReader(nc)
	for range 50 {
		io.WriteString(nc, "GET /ws/slots HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 12\r\n\r\n")
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusUpgradeRequired {
			t.Fatalf("bad version on a kept-alive connection: HTTP %d, want 426", resp.StatusCode)
		}
	}
	if got := metric(t, in, "collabd_connections"); got != 0 {
		t.Fatalf("collabd_connections = %v after refused upgrades on an open connection, want 0", got)
	}

	c := join(t, in, "slots", "ann")
	c.expect("presence.state")
	if got := metric(t, in, "collabd_connections"); got != 1 {
		t.Fatalf("collabd_connections = %v with one client, want 1", got)
	}
}
