package tests

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestRedisPyTracking runs tests/clients/redispy_tracking.py against a
// live server: redis-py's own client-side cache (RESP3) serving RSGET and
// RSMGET from memory and dropping them on the server's invalidation, and
// CLIENT TRACKING by hand (default, OPTIN, OPTOUT, the refused options,
// replies in step with pushes). The script exits non-zero on any failure;
// its NOTE lines (redis-py's own limitations) are logged.
func TestRedisPyTracking(t *testing.T) {
	py := requireTool(t, "python3")
	if out, err := exec.Command(py, "-c", "import redis, redis.cache").CombinedOutput(); err != nil {
		missingClient(t, "python3 cannot import redis.cache (pip install 'redis>=5.1'): "+strings.TrimSpace(string(out)))
	}
	sp := startServer(t)
	host, port := splitAddr(t, sp.addr)
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, py, "clients/redispy_tracking.py", port, host).CombinedOutput()
	if err != nil {
		t.Fatalf("redispy_tracking.py: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), ", 0 failed") {
		t.Fatalf("redispy_tracking.py exited 0 but did not report success:\n%s", out)
	}
	t.Logf("%s", strings.TrimSpace(string(out)))
}
