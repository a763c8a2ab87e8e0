package slowtrace

import (
	"bytes"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func start(t *testing.T, cfg Config) *Recorder {
	t.Helper()
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	r, err := Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func traces(t *testing.T, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "slow-*.trace"))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestSlowCommandTraced: a command under the threshold writes nothing;
// one over it writes the recorder's window, a Go execution trace; more
// within MinGap write nothing more.
func TestSlowCommandTraced(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "traces")
	r := start(t, Config{Dir: dir, Threshold: time.Millisecond, MinGap: time.Hour})
	for range 1000 {
		r.Observe(999 * time.Microsecond)
	}
	r.wg.Wait()
	if got := traces(t, dir); len(got) != 0 {
		t.Fatalf("traces under the threshold: %v", got)
	}
	r.Observe(5 * time.Millisecond)
	r.Observe(6 * time.Millisecond)
	r.Close()
	got := traces(t, dir)
	if len(got) != 1 {
		t.Fatalf("%d traces after two slow commands within MinGap, want 1", len(got))
	}
	b, err := os.ReadFile(got[0])
	if err != nil {
		t.Fatal(err)
	}
	// A Go execution trace begins "go 1.NN trace".
	if !bytes.HasPrefix(b, []byte("go 1.")) || !bytes.Contains(b[:16], []byte(" trace")) || len(b) < 1000 {
		t.Fatalf("not an execution trace: %d bytes, %q", len(b), b[:min(len(b), 16)])
	}
}

// TestKeep: only the newest Keep traces stay.
func TestKeep(t *testing.T) {
	dir := t.TempDir()
	r := start(t, Config{Dir: dir, Threshold: time.Millisecond, MinGap: time.Nanosecond, Keep: 2})
	for range 4 {
		r.Observe(time.Second)
		r.wg.Wait()
		time.Sleep(time.Millisecond) // distinct names
	}
	r.Close()
	if got := traces(t, dir); len(got) != 2 {
		t.Fatalf("%d traces kept, want 2: %v", len(got), got)
	}
}

// TestObserveAllocs: the hot path allocates nothing.
func TestObserveAllocs(t *testing.T) {
	r := start(t, Config{Dir: t.TempDir(), Threshold: time.Second})
	defer r.Close()
	if n := testing.AllocsPerRun(1000, func() { r.Observe(time.Microsecond) }); n != 0 {
		t.Fatalf("Observe: %v allocs, want 0", n)
	}
}
