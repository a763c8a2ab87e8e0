package tests

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// jedisCheckSrc is the Jedis check, run from source by Java's launcher.
const jedisCheckSrc = "clients/jvm/src/main/java/readstates/jedischeck/JedisCheck.java"

// TestJedis runs tests/clients/jvm (Jedis, the JVM client, with its default
// options: RESP2 and RESP3, pooled, a pipeline of 1,000,000 commands
// written before any reply is read, MULTI/EXEC, client-side caching)
// against a live server; the check exits non-zero on any failure.
//
// Maven only resolves Jedis and prints the classpath (the first run
// downloads it from Maven Central into ~/.m2); the check then runs as a
// single source file (java File.java), so nothing is built in the tree.
func TestJedis(t *testing.T) {
	java, cp := jvmClasspath(t)

	sp := startServer(t)
	host, port := splitAddr(t, sp.addr)
	ctx, cancel := boundedCtx(t, 10*time.Minute)
	defer cancel()
	start := time.Now()
	// 2 GiB: the 1,000,000 pipelined replies are held until checked.
	out, err := exec.CommandContext(ctx, java, "-Xmx2g", "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn",
		"-cp", cp, jedisCheckSrc, host, port).CombinedOutput()
	if err != nil {
		t.Fatalf("JedisCheck: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), ", 0 failed") {
		t.Fatalf("JedisCheck exited 0 but did not report success:\n%s", out)
	}
	t.Logf("JedisCheck ran in %v:\n%s", time.Since(start).Round(time.Millisecond), strings.TrimSpace(string(out)))
}

// boundedCtx is a context that ends after d, or 30 s before the test's
// deadline (go test -timeout) if that comes first, so that a hung child is
// killed and reported rather than the whole test binary panicking.
func boundedCtx(t *testing.T, d time.Duration) (context.Context, context.CancelFunc) {
	end := time.Now().Add(d)
	if dl, ok := t.Deadline(); ok && dl.Add(-30*time.Second).Before(end) {
		end = dl.Add(-30 * time.Second)
	}
	return context.WithDeadline(context.Background(), end)
}

// jvmClasspath resolves tests/clients/jvm's dependencies (Jedis, Lettuce)
// with Maven, which downloads them from Maven Central at the first run,
// and returns the java command and the classpath to run a check of that
// project as a single source file.
func jvmClasspath(t *testing.T) (java, cp string) {
	t.Helper()
	mvn := requireTool(t, "mvn")
	java = requireTool(t, "java")
	cpFile := filepath.Join(t.TempDir(), "classpath.txt")
	ctx, cancel := boundedCtx(t, 10*time.Minute)
	defer cancel()
	start := time.Now()
	out, err := exec.CommandContext(ctx, mvn, "-q", "-B", "-Dstyle.color=never",
		"-f", "clients/jvm/pom.xml", "dependency:build-classpath", "-Dmdep.outputFile="+cpFile).CombinedOutput()
	if err != nil {
		missingClient(t, "mvn could not resolve the JVM clients (clients/jvm/pom.xml): "+err.Error()+"\n"+strings.TrimSpace(string(out)))
	}
	b, err := os.ReadFile(cpFile)
	if cp = strings.TrimSpace(string(b)); err != nil || cp == "" {
		t.Fatalf("mvn dependency:build-classpath wrote no classpath (%v):\n%s", err, out)
	}
	t.Logf("maven: classpath resolved in %v", time.Since(start).Round(time.Millisecond))
	return java, cp
}
