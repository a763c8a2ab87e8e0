package persist

import (
	"context"
	"fmt"

	"github.com/readstates/readstates/cache"
)

// Release makes every change durable (Sync) and then drops from the cache
// the read states of the users it is given, which the caller has stopped
// serving: a cluster node handing them to another. When Release returns
// nil, the Store holds their newest states and this engine holds none of
// them, so a later read of one (the users came back) reads the Store.
//
// REQUIRES: no operation on those users runs, or starts before Release
// returns.
func (e *Engine) Release(ctx context.Context, users func(user int64) bool) error {
	if err := e.Sync(ctx); err != nil {
		return fmt.Errorf("release: %w", err)
	}
	e.forgetComplete(users)
	if _, kept := e.table.Drop(func(k cache.Key) bool { return users(k.User) }, false); kept > 0 {
		return fmt.Errorf("release: %d read states changed or loading while they were released", kept)
	}
	return nil
}

// Discard drops from the cache the read states of the users it is given,
// written or not: a cluster node whose lease lapsed no longer owns them,
// and what it had not written is lost (the new owner stamps its own
// changes above it; see package cluster). Their records still in the
// write queue stay there and are written, but read-through no longer
// trusts them over the Store: it takes the newer of the two, as for
// records replayed from the journal. It returns how many read states it
// dropped from the cache.
//
// No operation on those users should run, or start before Discard
// returns. A load that does (one that outlived a cluster node's lease)
// fills nothing if it was under way when Discard began: its operation
// reads through again. One that such an operation starts later may fill
// the cache; the Discard a cluster node makes before it serves the users
// again drops it, or abandons it if it is still under way.
func (e *Engine) Discard(users func(user int64) bool) int {
	// Before Drop, so no read-through trusts them meanwhile; and after,
	// for those a flush or an eviction handed over during Drop.
	e.distrustPending(users)
	e.forgetComplete(users)
	dropped, _ := e.table.Drop(func(k cache.Key) bool { return users(k.User) }, true)
	e.distrustPending(users)
	return dropped
}

// distrustPending marks the users' queued records as replayed: a
// read-through takes the newer of such a record and the Store's.
func (e *Engine) distrustPending(users func(user int64) bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for k, rec := range e.mu.pending {
		if users(k.User) && !rec.replayed {
			rec.replayed = true
			e.mu.pending[k] = rec
		}
	}
}

// Fence makes every later stamp greater than stamp (see
// EngineConfig.LogicalStamps).
func (e *Engine) Fence(stamp int64) { e.table.Observe(stamp) }

// HighStamp returns the highest stamp issued, loaded or fenced so far.
func (e *Engine) HighStamp() int64 { return e.table.HighStamp() }
