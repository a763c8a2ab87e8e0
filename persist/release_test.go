package persist

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/readstates/readstates/cache"
)

// TestServesAfterReadThrough: an operation that waited for the database
// changes nothing if, once it answered, the engine no longer serves the
// user (a cluster node whose lease ended meanwhile).
func TestServesAfterReadThrough(t *testing.T) {
	st := newFakeStore()
	k := cache.Key{User: 7, Channel: 1}
	st.rows[k] = Record{Key: k, State: cache.State{MentionCount: 5}, Stamp: 1}
	st.loadGate = make(chan struct{})
	e := startEngine(t, EngineConfig{Store: st, CacheEntries: 100, FlushInterval: time.Hour})
	var serving atomic.Bool
	serving.Store(true)
	e.SetServes(func(int64) bool { return serving.Load() })
	done := make(chan error, 1)
	go func() {
		_, err := e.Incr(context.Background(), k, 1)
		done <- err
	}()
	for st.loads.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	serving.Store(false) // the lease ends while the database answers
	close(st.loadGate)
	if err := <-done; !errors.Is(err, ErrNotServed) {
		t.Fatalf("Incr after losing the user: %v, want ErrNotServed", err)
	}
	serving.Store(true)
	if got, err := e.Get(context.Background(), k); err != nil || got.MentionCount != 5 {
		t.Fatalf("the read state after the refused Incr: %+v %v, want 5, unchanged", got, err)
	}
}
