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

// TestRedisRs builds tests/clients/rust (redis-rs, the Rust client: the
// `redis` crate's sync API, pinned by its Cargo.lock) and runs it against
// a live server, in RESP2 and RESP3: the basic commands and their errors,
// pipelines of 1,000,000 RSGET and 100,000 RSMGET written whole before
// any reply is read, MULTI/EXEC through pipe().atomic() with EXECABORT,
// and CLIENT TRACKING's invalidation pushes. The program exits non-zero
// on any failure.
//
// Cargo's target directory is kept outside the repository, under the
// user's cache directory (CARGO_TARGET_DIR, if set, wins), so that later
// runs reuse the build; the first one downloads the crates and compiles
// them (about a minute).
func TestRedisRs(t *testing.T) {
	cargo := cargoPath(t)
	sp := startServer(t)
	host, port := splitAddr(t, sp.addr)

	target := os.Getenv("CARGO_TARGET_DIR")
	if target == "" {
		base, err := os.UserCacheDir()
		if err != nil {
			base = os.TempDir()
		}
		target = filepath.Join(base, "readstates", "redisrs-target")
	}
	env := append(os.Environ(), "CARGO_TARGET_DIR="+target)
	// A cargo found outside PATH (~/.cargo/bin) needs its rustc beside it.
	env = append(env, "PATH="+filepath.Dir(cargo)+string(os.PathListSeparator)+os.Getenv("PATH"))

	buildCtx, cancelBuild := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancelBuild()
	start := time.Now()
	build := exec.CommandContext(buildCtx, cargo, "build", "--release", "--quiet", "--manifest-path", "clients/rust/Cargo.toml")
	build.Env = env
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("cargo build (tests/clients/rust): %v\n%s", err, out)
	}
	t.Logf("cargo build: %v (target dir %s)", time.Since(start).Round(time.Millisecond), target)

	// A race-built server is several times slower on the big pipelines.
	runCtx, cancelRun := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancelRun()
	start = time.Now()
	bin := filepath.Join(target, "release", "redisrs_check")
	out, err := exec.CommandContext(runCtx, bin, host, port).CombinedOutput()
	if err != nil {
		t.Fatalf("redisrs_check: %v (after %v)\n%s", err, time.Since(start).Round(time.Millisecond), out)
	}
	if !strings.Contains(string(out), ", 0 failed") {
		t.Fatalf("redisrs_check exited 0 but did not report success:\n%s", out)
	}
	t.Logf("%s", strings.TrimSpace(string(out)))
}

// cargoPath finds cargo on PATH or where rustup puts it ($CARGO_HOME/bin,
// ~/.cargo/bin); otherwise the test is skipped (failed with
// READSTATES_REQUIRE_CLIENTS=1).
func cargoPath(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("cargo"); err == nil {
		return p
	}
	var dirs []string
	if h := os.Getenv("CARGO_HOME"); h != "" {
		dirs = append(dirs, filepath.Join(h, "bin"))
	}
	if h, err := os.UserHomeDir(); err == nil {
		dirs = append(dirs, filepath.Join(h, ".cargo", "bin"))
	}
	for _, d := range dirs {
		p := filepath.Join(d, "cargo")
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p
		}
	}
	return requireTool(t, "cargo")
}
