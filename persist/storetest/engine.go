package storetest

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/readstates/readstates/cache"
	"github.com/readstates/readstates/persist"
)

// EngineClockStepBack is the clock scenario of a process restarted on a
// clock behind the stamps already stored (an NTP step back, a VM restored
// from a snapshot, a move to another host): each change must still be
// written above the stored stamp, through restart, eviction and reload.
// newStore opens the same store again for each run and returns how to
// close it.
func EngineClockStepBack(t *testing.T, newStore func(t *testing.T) (persist.Store, func())) {
	true0 := time.Now()
	k := cache.Key{User: 42, Channel: 7}
	ctx := context.Background()
	run := func(name string, offset time.Duration, entries int, body func(e *persist.Engine)) {
		t.Helper()
		now := true0.Add(offset)
		store, closeStore := newStore(t)
		defer closeStore()
		e, err := persist.NewEngine(persist.EngineConfig{Store: store, CacheEntries: entries, FlushInterval: time.Hour,
			Logger: slog.New(slog.DiscardHandler), Now: func() time.Time { return now }})
		if err != nil {
			t.Fatal(err)
		}
		stop := runEngine(e)
		body(e)
		stop()
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		if err := e.Close(cctx); err != nil {
			t.Fatalf("%s: close: %v", name, err)
		}
	}
	get := func(e *persist.Engine, k cache.Key) cache.State {
		t.Helper()
		st, err := e.Get(ctx, k)
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	run("clock an hour ahead", time.Hour, 1024, func(e *persist.Engine) {
		if n, err := e.Incr(ctx, k, 5); err != nil || n != 5 {
			t.Fatalf("RSINCR 42 7 5: %d %v", n, err)
		}
	})
	run("true clock", 0, 1024, func(e *persist.Engine) {
		if n, err := e.Reset(ctx, k, 1100, true); err != nil || n != 5 {
			t.Fatalf("RSRESET 42 7 1100: %d %v", n, err)
		}
		if st := get(e, k); st != (cache.State{LastMessageID: 1100}) {
			t.Fatalf("read back %+v", st)
		}
		if n := e.Stats().StampsAhead; n != 1 {
			t.Errorf("a stamp an hour ahead was read from the store once, and counted %d times", n)
		}
	})
	run("third run", 0, 1024, func(e *persist.Engine) {
		if st := get(e, k); st != (cache.State{LastMessageID: 1100}) {
			t.Fatalf("after restart: got %+v, want {0 1100}: the reset was written below the stored stamp and lost", st)
		}
	})
	// Eviction and reload in one run, clock behind: a one-entry cache
	// evicts k (written back) whenever another key is loaded.
	run("eviction", -time.Hour, 1, func(e *persist.Engine) {
		other := cache.Key{User: 1, Channel: 1}
		for i := range 3 {
			if _, err := e.Incr(ctx, k, 2); err != nil {
				t.Fatal(err)
			}
			if err := e.Sync(ctx); err != nil { // k written: its stamp is stored
				t.Fatal(err)
			}
			get(e, other) // evicts k
			if st := get(e, k); st.MentionCount != int32(2*(i+1)) {
				t.Fatalf("reload %d: got %+v, want count %d", i, st, 2*(i+1))
			}
		}
	})
	run("after eviction", -2*time.Hour, 1024, func(e *persist.Engine) {
		if st := get(e, k); st != (cache.State{MentionCount: 6, LastMessageID: 1100}) {
			t.Fatalf("got %+v, want {6 1100}", st)
		}
	})
}

func runEngine(e *persist.Engine) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); e.Run(ctx) }()
	return func() { cancel(); <-done }
}
