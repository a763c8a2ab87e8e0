package tests

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestRedisPy runs tests/clients/redispy_check.py (redis-py, RESP2 and
// RESP3) against a live server; the script exits non-zero on any failure.
func TestRedisPy(t *testing.T) {
	py := requireTool(t, "python3")
	if out, err := exec.Command(py, "-c", "import redis").CombinedOutput(); err != nil {
		missingClient(t, "python3 cannot import redis (pip install redis): "+strings.TrimSpace(string(out)))
	}
	sp := startServer(t)
	host, port := splitAddr(t, sp.addr)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, py, "clients/redispy_check.py", port, host).CombinedOutput()
	if err != nil {
		t.Fatalf("redispy_check.py: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), ", 0 failed") {
		t.Fatalf("redispy_check.py exited 0 but did not report success:\n%s", out)
	}
	t.Logf("%s", strings.TrimSpace(string(out)))
}
