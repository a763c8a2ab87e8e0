package persist

import (
	"context"
	"errors"

	"github.com/readstates/readstates/cache"
)

// ErrWouldBlock is returned by the operations of the NoWait view that would
// have to wait: a read-through to the Store. Nothing was changed; the
// caller may run the same operation on the Engine itself, where it can
// wait.
var ErrWouldBlock = errors.New("read state operation would block")

// noWait is the view of an Engine whose operations never wait: they do what
// the cache alone can do, or fail with ErrWouldBlock having changed
// nothing. An event loop serving many connections on one goroutine runs
// commands on it and hands the few that fail to a goroutine of its own,
// which runs them on the Engine. (Under the journal's always policy a
// change still waits for its fsync, as Redis's event loop does.)
type noWait struct{ e *Engine }

// ReadStates is the read-state operations of the Engine and of its NoWait
// view.
type ReadStates interface {
	Incr(ctx context.Context, k cache.Key, delta int64) (int32, error)
	Reset(ctx context.Context, k cache.Key, msgID int64, setMsg bool) (int32, error)
	Get(ctx context.Context, k cache.Key) (cache.State, error)
	GetMany(ctx context.Context, user int64, channels []int64, out []cache.State) error
	// Atomically runs fn on a view of the read states of keys whose
	// operations run as one unit: no other operation on those read
	// states interleaves with them (MULTI/EXEC). The read states are
	// loaded first; fn runs once, after every one is cached, and must use
	// only its view, on read states among keys, and not block.
	Atomically(ctx context.Context, keys []cache.Key, fn func(ReadStates)) error
}

// NoWait returns the engine's view that never waits.
func (e *Engine) NoWait() ReadStates { return noWait{e} }

// Incr is Engine.Incr, or ErrWouldBlock on a miss.
func (n noWait) Incr(ctx context.Context, k cache.Key, delta int64) (int32, error) {
	return n.e.incr(ctx, k, delta, noWaitView)
}

// Reset is Engine.Reset, or ErrWouldBlock on a miss.
func (n noWait) Reset(ctx context.Context, k cache.Key, msgID int64, setMsg bool) (int32, error) {
	return n.e.reset(ctx, k, msgID, setMsg, noWaitView)
}

// Get is Engine.Get, or ErrWouldBlock on a miss.
func (n noWait) Get(ctx context.Context, k cache.Key) (cache.State, error) {
	return n.e.get(ctx, k, noWaitView)
}

// GetMany is Engine.GetMany, or ErrWouldBlock if any channel misses.
func (n noWait) GetMany(ctx context.Context, user int64, channels []int64, out []cache.State) error {
	return n.e.getMany(ctx, user, channels, out, noWaitView)
}

// Atomically is Engine.Atomically, or ErrWouldBlock, before fn runs, if a
// read state of keys is not cached.
func (n noWait) Atomically(ctx context.Context, keys []cache.Key, fn func(ReadStates)) error {
	return n.e.atomically(ctx, keys, fn, noWaitView)
}

// rerun is the view of an Engine for an operation its NoWait view tried
// first: the Engine's operations, whose lookups of the cache count
// nothing, since the try counted them (Stats.Hits, Misses).
type rerun struct{ e *Engine }

// Rerun returns the engine's view for the operations its NoWait view
// failed with ErrWouldBlock: an event loop's deferred commands run on it.
func (e *Engine) Rerun() ReadStates { return rerun{e} }

// Incr is Engine.Incr, counting no lookup.
func (r rerun) Incr(ctx context.Context, k cache.Key, delta int64) (int32, error) {
	return r.e.incr(ctx, k, delta, rerunView)
}

// Reset is Engine.Reset, counting no lookup.
func (r rerun) Reset(ctx context.Context, k cache.Key, msgID int64, setMsg bool) (int32, error) {
	return r.e.reset(ctx, k, msgID, setMsg, rerunView)
}

// Get is Engine.Get, counting no lookup.
func (r rerun) Get(ctx context.Context, k cache.Key) (cache.State, error) {
	return r.e.get(ctx, k, rerunView)
}

// GetMany is Engine.GetMany, counting no lookup.
func (r rerun) GetMany(ctx context.Context, user int64, channels []int64, out []cache.State) error {
	return r.e.getMany(ctx, user, channels, out, rerunView)
}

// Atomically is Engine.Atomically, counting no lookup.
func (r rerun) Atomically(ctx context.Context, keys []cache.Key, fn func(ReadStates)) error {
	return r.e.atomically(ctx, keys, fn, rerunView)
}
