//go:build cassandra

package tests

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// runFailingServer runs the server with args, which must make it exit
// with an error, and returns its output and how long it took.
func runFailingServer(t *testing.T, args ...string) (string, time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	args = append(args, "--addr", "127.0.0.1:0", "--data-dir", t.TempDir())
	cmd := exec.CommandContext(ctx, serverBin, args...)
	cmd.Env = serverEnv()
	start := time.Now()
	out, err := cmd.CombinedOutput()
	took := time.Since(start)
	if err == nil {
		t.Fatalf("the server started with %q:\n%s", args, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	t.Logf("the server's last words, after %v: %s", took.Round(time.Millisecond), lines[len(lines)-1])
	return string(out), took
}

// TestCassandraStartupRefusals: a configuration that cannot work stops
// the server at once with a message that says why, however long
// --cassandra-startup-wait is: keyspace options the nodes refuse, and a
// consistency whose reads need not see the newest write for the
// keyspace's replication factor (ONE with 3 replicas), unless the
// operator accepts that with --cassandra-allow-stale-reads.
func TestCassandraStartupRefusals(t *testing.T) {
	requireCassandra(t)
	base := func(ks string) []string {
		return []string{"--cassandra-hosts", cassandraHosts(), "--cassandra-keyspace", ks, "--cassandra-startup-wait", "60s"}
	}
	t.Run("bad keyspace options", func(t *testing.T) {
		out, took := runFailingServer(t, append(base(cassandraKeyspace(t)),
			"--cassandra-replication", "{'class': 'NoSuchStrategy', 'replication_factor': 1}")...)
		if !strings.Contains(out, "NoSuchStrategy") || !strings.Contains(out, "CREATE KEYSPACE") {
			t.Errorf("the error does not name the refused keyspace options:\n%s", out)
		}
		if took > 20*time.Second {
			t.Errorf("took %v to give up on keyspace options the nodes refuse: it must stop at once", took)
		}
	})
	rf3 := "{'class': 'SimpleStrategy', 'replication_factor': 3}"
	t.Run("ONE with three replicas", func(t *testing.T) {
		out, took := runFailingServer(t, append(base(cassandraKeyspace(t)),
			"--cassandra-replication", rf3, "--cassandra-consistency", "ONE")...)
		for _, want := range []string{"consistency ONE reads 1 and writes 1 of the 3 replicas", "--cassandra-allow-stale-reads"} {
			if !strings.Contains(out, want) {
				t.Errorf("the error does not say %q:\n%s", want, out)
			}
		}
		if took > 20*time.Second {
			t.Errorf("took %v to refuse a consistency: it must stop at once", took)
		}
	})
	t.Run("accepted with the override", func(t *testing.T) {
		// One node holds all three "replicas"' worth: writes at ONE work.
		sp := startCassandraServer(t, cassandraKeyspace(t),
			"--cassandra-replication", rf3, "--cassandra-consistency", "ONE", "--cassandra-allow-stale-reads")
		c := sp.goRedis(t, 3)
		ctx := testCtx(t)
		if n, err := c.Do(ctx, "RSINCR", 5, 6, 7).Int64(); err != nil || n != 7 {
			t.Fatalf("RSINCR with the override: %d, %v", n, err)
		}
	})
	t.Run("ONE with one replica", func(t *testing.T) {
		sp := startCassandraServer(t, cassandraKeyspace(t), "--cassandra-consistency", "ONE")
		if n, err := sp.goRedis(t, 3).Do(testCtx(t), "RSINCR", 5, 6, 7).Int64(); err != nil || n != 7 {
			t.Fatalf("RSINCR at ONE with one replica: %d, %v", n, err)
		}
	})
}
