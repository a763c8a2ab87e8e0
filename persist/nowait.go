package persist

import (
	"context"
	"errors"

	"github.com/readstates/readstates/cache"
)

// ErrWouldBlock is returned by the operations of the NoWait view that would
// have to wait: a read-through to the Store. Nothing was changed; the
// caller may run the same operation on the Rerun view, where it can wait
// (or on the Engine itself, which counts its lookups again).
var ErrWouldBlock = errors.New("read state operation would block")

// ReadStates is the read-state operations of the Engine and of its NoWait
// and Rerun views.
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

// NoWait returns the engine's view whose operations never wait: they do
// what the cache alone can do, or fail with ErrWouldBlock having changed
// nothing. An event loop serving many connections on one goroutine runs
// commands on it and hands the few that fail to a goroutine of its own,
// which runs them on the Rerun view. (Under the journal's always policy
// a change still waits for its fsync, as Redis's event loop does.)
func (e *Engine) NoWait() ReadStates { return engineAs{e, noWaitView} }

// Rerun returns the engine's view for the operations its NoWait view
// failed with ErrWouldBlock: the Engine's operations, whose lookups of the
// cache count nothing, since the NoWait try counted them (Stats.Hits,
// Misses). An event loop's deferred commands run on it.
func (e *Engine) Rerun() ReadStates { return engineAs{e, rerunView} }

// engineAs is the Engine's operations, run as v says.
type engineAs struct {
	e *Engine
	v view
}

func (a engineAs) Incr(ctx context.Context, k cache.Key, delta int64) (int32, error) {
	return a.e.incr(ctx, k, delta, a.v)
}

func (a engineAs) Reset(ctx context.Context, k cache.Key, msgID int64, setMsg bool) (int32, error) {
	return a.e.reset(ctx, k, msgID, setMsg, a.v)
}

func (a engineAs) Get(ctx context.Context, k cache.Key) (cache.State, error) {
	return a.e.get(ctx, k, a.v)
}

func (a engineAs) GetMany(ctx context.Context, user int64, channels []int64, out []cache.State) error {
	return a.e.getMany(ctx, user, channels, out, a.v)
}

// Atomically is Engine.Atomically, or on NoWait ErrWouldBlock, before fn
// runs, if a read state of keys is not cached.
func (a engineAs) Atomically(ctx context.Context, keys []cache.Key, fn func(ReadStates)) error {
	return a.e.atomically(ctx, keys, fn, a.v)
}
