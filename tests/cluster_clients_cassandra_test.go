//go:build cassandra

package tests

import (
	"os/exec"
	"strings"
	"testing"
	"time"
)

// The cluster driven by the cluster clients of other languages, unmodified
// and with their default options: redis-py's RedisCluster
// (clients/redispy_cluster.py) and the JVM's JedisCluster and Lettuce's
// RedisClusterClient (clients/jvm, ClusterCheck.java). Each test starts
// three nodes in a keyspace of its own, waits until they serve every slot
// with one map, and runs the client program with every node as a startup
// node; the program checks the map as the client parses it (CLUSTER
// SLOTS/NODES/SHARDS/INFO), the four read-state commands singly and in
// pipelines, MOVED, and a churn over thousands of users whose every reply
// and, at the end, every read state is compared with a model. It exits
// non-zero on any failure. The map must not change while it runs.

// clusterClientsCheckSrc is the JVM cluster check, run from source like
// jedisCheckSrc.
const clusterClientsCheckSrc = "clients/jvm/src/main/java/readstates/jedischeck/ClusterCheck.java"

// startClientCluster starts three nodes in a keyspace of their own and
// waits for one map; it returns the nodes, their addresses and the map.
func startClientCluster(t *testing.T) ([]*serverProc, []string, string) {
	t.Helper()
	requireCassandra(t)
	ks := cassandraKeyspace(t)
	start := time.Now()
	nodes := []*serverProc{startClusterNode(t, ks), startClusterNode(t, ks), startClusterNode(t, ks)}
	started := time.Since(start)
	took := waitClusterOK(t, nodes, 60*time.Second)
	t.Logf("3 nodes started in %v; every slot served with one map %v later",
		started.Round(time.Millisecond), took.Round(time.Millisecond))
	var addrs []string
	for _, n := range nodes {
		addrs = append(addrs, n.addr)
	}
	m, err := clusterMap(testCtx(t), nodes[0].addr)
	if err != nil {
		t.Fatalf("CLUSTER SLOTS: %v", err)
	}
	return nodes, addrs, m
}

// sameClusterMap checks that every node still gives the map before.
func sameClusterMap(t *testing.T, nodes []*serverProc, before string) {
	t.Helper()
	for _, n := range nodes {
		m, err := clusterMap(testCtx(t), n.addr)
		if err != nil || m != before {
			t.Errorf("the map of %s changed while the client ran: %q (%v), was %q", n.addr, m, err, before)
		}
	}
}

// reportClientRun fails the test unless the program exited 0 and printed
// its ", 0 failed" summary; it logs the output either way.
func reportClientRun(t *testing.T, name string, out []byte, err error, took time.Duration) {
	t.Helper()
	text := strings.TrimSpace(string(out))
	if err != nil {
		t.Fatalf("%s: %v after %v\n%s", name, err, took.Round(time.Millisecond), text)
	}
	if !strings.Contains(text, ", 0 failed") {
		t.Fatalf("%s exited 0 but did not report success:\n%s", name, text)
	}
	t.Logf("%s ran in %v:\n%s", name, took.Round(time.Millisecond), text)
}

// TestClusterRedisPy runs redis-py's RedisCluster (defaults: RESP2; a
// RESP3 pass too) against three nodes: the map, the commands,
// ClusterPipeline and a MULTI/EXEC pipeline, and a churn of 60,000
// commands from 4 threads over 6,000 users, checked exactly.
func TestClusterRedisPy(t *testing.T) {
	py := requireTool(t, "python3")
	if out, err := exec.Command(py, "-c", "import redis.cluster").CombinedOutput(); err != nil {
		missingClient(t, "python3 cannot import redis.cluster (pip install redis): "+strings.TrimSpace(string(out)))
	}
	nodes, addrs, m := startClientCluster(t)
	ctx, cancel := boundedCtx(t, 10*time.Minute)
	defer cancel()
	start := time.Now()
	out, err := exec.CommandContext(ctx, py, append([]string{"clients/redispy_cluster.py"}, addrs...)...).CombinedOutput()
	reportClientRun(t, "redispy_cluster.py", out, err, time.Since(start))
	sameClusterMap(t, nodes, m)
}

// TestClusterJVM runs Jedis's JedisCluster and Lettuce's
// RedisClusterClient (defaults: RESP2 for Jedis, RESP3 for Lettuce; the
// other protocol of each too) against three nodes: the map as each parses
// it, the commands, MOVED and a stale map followed, ClusterPipeline and
// Lettuce's pipelining, and a churn of 80,000 commands per client from 4
// threads over 6,000 users, checked exactly and read back by the other
// client.
func TestClusterJVM(t *testing.T) {
	java, cp := jvmClasspath(t)

	nodes, addrs, m := startClientCluster(t)
	ctx, cancel := boundedCtx(t, 10*time.Minute)
	defer cancel()
	start := time.Now()
	args := append([]string{"-Dorg.slf4j.simpleLogger.defaultLogLevel=warn",
		"-cp", cp, clusterClientsCheckSrc}, addrs...)
	out, err := exec.CommandContext(ctx, java, args...).CombinedOutput()
	reportClientRun(t, "ClusterCheck", out, err, time.Since(start))
	sameClusterMap(t, nodes, m)
}
