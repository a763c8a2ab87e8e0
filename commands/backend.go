package commands

import (
	"context"

	"github.com/readstates/readstates/cache"
	"github.com/readstates/readstates/persist"
)

// ReadStates is what the read-state commands need of the engine that keeps
// the read states (persist.Engine). Implementations are safe for
// concurrent use, and each call is atomic for its read state.
type ReadStates interface {
	// Incr adds delta to the mention_count (a result below 0 is stored as
	// 0) and returns the new value; cache.ErrOverflow if the result would
	// exceed math.MaxInt32.
	Incr(ctx context.Context, k cache.Key, delta int64) (int32, error)
	// Reset sets the mention_count to 0 and, if setMsg, last_message_id to
	// msgID; it returns the mention_count before the reset.
	Reset(ctx context.Context, k cache.Key, msgID int64, setMsg bool) (int32, error)
	// Get returns the read state (the zero State if never written).
	Get(ctx context.Context, k cache.Key) (cache.State, error)
	// GetMany sets out[i] to the read state of (user, channels[i]); out is
	// at least as long as channels. On error out is incomplete.
	GetMany(ctx context.Context, user int64, channels []int64, out []cache.State) error
}

// StatsSource reports the engine's counters for INFO and DBSIZE.
type StatsSource interface {
	Stats() EngineStats
}

// EngineStats is a snapshot of the engine's counters.
type EngineStats = persist.Stats
