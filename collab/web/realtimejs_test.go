package web_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// TestRealtimeJS runs the real @supabase/realtime-js client (testdata/realtimejs, pinned
// in its package-lock.json) under Node against two instances sharing one NATS. It needs
// `npm ci` in that folder; without it the test skips, except in CI, where it fails.
func TestRealtimeJS(t *testing.T) {
	if testing.Short() {
		t.Skip("runs Node; skipped with -short")
	}
	dir := filepath.Join("testdata", "realtimejs")
	node, err := exec.LookPath("node")
	_, modErr := os.Stat(filepath.Join(dir, "node_modules", "@supabase", "realtime-js"))
	if err != nil || modErr != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("node or testdata/realtimejs/node_modules missing (run npm ci there): %v %v", err, modErr)
		}
		t.Skip("node or testdata/realtimejs/node_modules missing; run npm ci in collab/web/testdata/realtimejs")
	}
	ins := startCluster(t, 2, instanceOpts{})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "--test", "--test-reporter=spec", "e2e.test.mjs")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "COLLABD_URL_A="+ins[0].url, "COLLABD_URL_B="+ins[1].url)
	out, err := cmd.CombinedOutput()
	t.Logf("node --test e2e.test.mjs:\n%s", out)
	if err != nil {
		t.Fatalf("realtime-js end-to-end tests failed: %v", err)
	}
}
