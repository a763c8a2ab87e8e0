package pebblestore

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/readstates/readstates/cache"
	"github.com/readstates/readstates/persist"
)

// BenchmarkMiss measures what a cache miss costs the engine over a real
// Pebble store, in time and in garbage: the garbage of the misses is what
// the collector runs for, the read states themselves being off the heap.
// Every op is a user's first miss (a read of its partition, 100 read
// states), the read-through of a cold Get; "prefetch-cached" is a
// pipeline's prefetch that finds its 16 read states cached, which a
// deferred command pays for every request pipelined behind it.
func BenchmarkMiss(b *testing.B) {
	const (
		users    = 20000
		channels = 100
	)
	p, err := Open(b.TempDir(), slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	ctx := context.Background()
	recs := make([]persist.Record, 0, channels*100)
	for u := range users {
		for c := range channels {
			recs = append(recs, persist.Record{Key: cache.Key{User: int64(u), Channel: int64(c)}, State: cache.State{LastMessageID: int64(c)}, Stamp: 1})
		}
		if len(recs) == cap(recs) || u == users-1 {
			if err := p.Write(ctx, recs); err != nil {
				b.Fatal(err)
			}
			recs = recs[:0]
		}
	}
	e, err := persist.NewEngine(persist.EngineConfig{Store: p, CacheEntries: 64 * channels, FlushInterval: time.Hour, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	defer e.Close(ctx)

	b.Run("partition", func(b *testing.B) {
		b.ReportAllocs()
		before := e.Stats()
		u := 0
		for b.Loop() {
			// The cache holds 6,400 read states of 20,000 users: every user's
			// read states have been evicted since its last read.
			if _, err := e.Get(ctx, cache.Key{User: int64(u % users), Channel: int64(u % channels)}); err != nil {
				b.Fatal(err)
			}
			u++
		}
		after := e.Stats()
		// What the op measures: each Get a miss that reads its user's
		// partition (1 and 1 per op).
		b.ReportMetric(float64(after.Misses-before.Misses)/float64(u), "misses/op")
		b.ReportMetric(float64(after.UserLoads-before.UserLoads)/float64(u), "partitions/op")
	})
	b.Run("prefetch-cached", func(b *testing.B) {
		keys := make([]cache.Key, 16)
		for i := range keys {
			keys[i] = cache.Key{User: int64(i % 4), Channel: int64(i)}
			if _, err := e.Get(ctx, keys[i]); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportAllocs()
		for b.Loop() {
			e.Prefetch(ctx, keys)
		}
	})
}
