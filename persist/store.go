package persist

import (
	"context"
	"errors"

	"github.com/readstates/readstates/cache"
)

// Record is one read state as written to a Store.
type Record struct {
	Key   cache.Key
	State cache.State
	// Stamp orders writes of the same key: microseconds since the Unix
	// epoch, strictly increasing per key across the life of the data (the
	// write-behind engine takes it from a monotonic clock when it
	// snapshots a state). A store keeps, per key, the record with the
	// highest Stamp, whatever order writes arrive in: a late or retried
	// older write never replaces a newer one.
	Stamp int64
}

// Store is the durable home of read states.
//
// Implementations are safe for concurrent use. Write is idempotent (the same
// records may be written again after a timeout). Load returns the State of
// the record kept for the key and its Stamp, or the zero State and stamp 0
// for a key that was never written. Load after a successful Write of a key
// returns that write or a newer one (read-your-writes), which the
// read-through path relies on. The stamp is what keeps the next write of
// the key above the stored one whatever the wall clock says (see
// cache.Table.Fill).
//
// LoadUser returns the records stored for user, at most limit of them
// (limit > 0), each with its stamp as Load would return it; fewer than
// limit means they are all the user has. Which records a truncated answer
// holds is the store's order. It is read-your-writes as Load is. A user's
// read states are one partition of every store, so this is one query: the
// read-through of a user's first miss (see Engine).
type Store interface {
	Load(ctx context.Context, k cache.Key) (st cache.State, stamp int64, err error)
	LoadUser(ctx context.Context, user int64, limit int) ([]Record, error)
	Write(ctx context.Context, recs []Record) error
	Close() error
}

// ErrUnavailable wraps store errors that mean "try again later": the
// database could not be reached or did not answer in time.
var ErrUnavailable = errors.New("read state store unavailable")
