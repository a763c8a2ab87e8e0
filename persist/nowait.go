package persist

import (
	"context"
	"errors"
)

// ErrWouldBlock is returned, under a context from WithoutWaiting, by an
// operation that would have to wait: a read-through to the Store, or for
// room in a full cache. Nothing was changed; the caller may run the same
// operation again where it can wait.
var ErrWouldBlock = errors.New("read state operation would block")

type noWaitKey struct{}

// WithoutWaiting returns a context under which the Engine's operations
// never wait: they do what the cache alone can do, or fail with
// ErrWouldBlock. An event loop serving many connections on one goroutine
// runs commands this way and hands the few that fail to a goroutine of
// their own. Make it once, not per operation: it allocates.
func WithoutWaiting(ctx context.Context) context.Context {
	return context.WithValue(ctx, noWaitKey{}, true)
}

// MayWait reports whether ctx allows an operation to wait (it is not from
// WithoutWaiting). The Engine asks it only on a cache miss, so hits pay
// nothing for it; other implementations of the same contract (test fakes)
// ask it too.
func MayWait(ctx context.Context) bool {
	return ctx.Value(noWaitKey{}) == nil
}
