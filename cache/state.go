package cache

import "errors"

// Key identifies one read state: a user in a channel. Both ids are
// snowflakes in 0..math.MaxInt64.
type Key struct {
	User    int64
	Channel int64
}

// State is the value of one read state. The zero State is the state of a
// read state that was never written.
type State struct {
	// MentionCount is the number of unread @mentions, 0..math.MaxInt32.
	MentionCount int32
	// LastMessageID is the last message the user has read.
	LastMessageID int64
}

var (
	// ErrOverflow is returned by an increment whose result would exceed
	// math.MaxInt32; the read state is unchanged.
	ErrOverflow = errors.New("mention_count overflow")
	// ErrFull is returned when a read state must be inserted but no entry
	// can make room: every one is pinned (dirty, and WriteBack refuses
	// it) or, while WriteBack is full, in use since the CLOCK hand last
	// passed it. Nothing was changed.
	ErrFull = errors.New("cache full: no evictable read state")
	// ErrMiss is returned by operations on a read state that is not in the
	// table (or is still being loaded); the caller loads it and retries.
	ErrMiss = errors.New("read state not cached")
)
