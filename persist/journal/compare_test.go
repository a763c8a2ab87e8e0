package journal

import (
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/record"
)

// The journal's append path against Pebble's WAL writer (record.LogWriter,
// the block-framed, checksummed log of LevelDB's format), each called as
// the cache calls it: under a mutex, from every core at once, with the
// file written behind by a goroutine. BENCHMARKS.md has the figures
// (go test -run '^$' -bench 'Append|LogWriter' ./persist/journal/).

func BenchmarkLogWriter(b *testing.B) {
	f, err := os.Create(filepath.Join(b.TempDir(), "wal"))
	if err != nil {
		b.Fatal(err)
	}
	w := record.NewLogWriter(f, 0, record.LogWriterConfig{
		WALMinSyncInterval: func() time.Duration { return time.Second },
		QueueSemChan:       make(chan struct{}, 4096),
	})
	defer w.Close()
	var mu sync.Mutex
	b.ReportAllocs()
	b.SetBytes(recordLen)
	b.RunParallel(func(pb *testing.PB) {
		var buf []byte
		i := 0
		for pb.Next() {
			buf = encode(buf[:0], rec(i)) // the same 40 bytes
			mu.Lock()
			_, err := w.WriteRecord(buf)
			mu.Unlock()
			if err != nil {
				b.Error(err)
				return
			}
			i++
		}
	})
}
