//go:build ptrcache

package cache

import (
	"runtime"
	"runtime/metrics"
	"testing"
)

// TestGCScansEveryEntry checks that the baseline is what the benchmark
// needs it to be: with read states cached, a GC cycle scans heap in
// proportion to their number (the arena table's GC cost stays flat).
func TestGCScansEveryEntry(t *testing.T) {
	const n = 200_000
	scan := func() uint64 {
		runtime.GC()
		s := []metrics.Sample{{Name: "/gc/scan/heap:bytes"}}
		metrics.Read(s)
		return s[0].Value.Uint64()
	}
	base := scan()
	tb := newTable(t, Config{Entries: n})
	for i := range n {
		load(t, tb, Key{User: int64(i), Channel: int64(i) * 31}, State{MentionCount: 1})
	}
	full := scan()
	runtime.KeepAlive(tb)
	// Each entry is a list element and an item, at least 48 bytes traced.
	if full < base+n*48 {
		t.Fatalf("GC scanned %d bytes with %d entries, %d with none", full, n, base)
	}
	t.Logf("GC scan: %d bytes with %d entries (%.0f per entry), %d with none", full, n, float64(full-base)/n, base)
}

func TestImplementation(t *testing.T) {
	if Implementation != "pointer-lru" {
		t.Fatalf("Implementation = %q", Implementation)
	}
}
