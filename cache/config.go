package cache

// What both implementations of Table share: the configuration, the shard
// layout, the key hash, the snapshot and its stamp clock, the stats, and
// the lookups (Lookups: each implementation's get, incr, reset and
// atomically, and what is built on them).
// The arena table (table.go, the default) and the pointer-rich LRU
// (ptrtable.go, built with -tags ptrcache) differ only in how a shard
// stores its read states.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"time"

	"github.com/cespare/xxhash/v2"
)

// Config configures a Table.
type Config struct {
	// Entries is the capacity: the table never holds more read states.
	Entries int
	// Shards is the number of independently locked shards, a power of
	// two no larger than Entries. Zero picks up to 64 shards of at least
	// 256 entries, and more for large tables so that a shard holds at most
	// ~16K entries, which keeps a walk of one shard under its lock in the
	// tens of microseconds.
	Shards int
	// WriteBack takes over unwritten changes. It is called, with the
	// shard's lock held, with the snapshot of a dirty entry that is being
	// evicted or flushed. If it takes s (Taken, TakenFull), the callee
	// owns writing s and must serve s to read-through until it is
	// written; the entry is then removed (eviction) or marked clean
	// (Flush). If it refuses (Refused) the entry stays dirty: it is
	// pinned until a later call takes it. Refused and TakenFull also say
	// that it would refuse a key it does not hold (its backlog is full),
	// and eviction then spares the entries in use (see Table's
	// evictLocked). It must not call the Table. Nil drops evicted changes
	// (tests only).
	WriteBack func(s Snapshot) Handoff
	// OnChange, if set, is called with the shard's lock held after every
	// operation that alters a read state, with the state after it and a
	// stamp of its own (a journal records it). Stamps of one key's changes
	// and snapshots all come from one clock, so they are ordered as the
	// changes were. It must not block for long (it delays every operation
	// on the shard) and must not call the Table.
	OnChange func(s Snapshot)
	// OnRemove, if set, is called with the shard's lock held with the key
	// of every read state that leaves the table (eviction, clean or
	// dirty, and Drop) and of every loading placeholder removed (Abort,
	// or a Fill its check refused):
	// Insert counts a placeholder as the key being there. A reader of the
	// store that fills the table behind its own back (Insert) uses it to
	// tell that what it read may have been overtaken. It must not block or
	// call the Table.
	OnRemove func(k Key)
	// Now is the wall clock that stamps follow (default time.Now).
	Now func() time.Time
}

// Snapshot is a copy of one read state, taken under its shard's lock.
type Snapshot struct {
	Key   Key
	State State
	// Stamp is the write timestamp, in microseconds since the Unix epoch.
	// Stamps of one key strictly increase in the order its states were
	// snapshotted, so a store that keeps the highest stamp keeps the
	// newest state.
	Stamp int64
}

// Handoff is Config.WriteBack's answer to a snapshot offered to it.
type Handoff uint8

const (
	// Refused: the snapshot stays the table's, its entry dirty and
	// pinned; the callee takes no key it does not hold.
	Refused Handoff = iota
	// Taken: the callee owns the snapshot, and would take more.
	Taken
	// TakenFull: the callee owns the snapshot, and is now full: it would
	// refuse a key it does not hold. The snapshot took its last place,
	// or it replaced an older one of the same key: a full queue still
	// takes a newer state of a key it holds, since that needs no room.
	TakenFull
)

func (h Handoff) taken() bool { return h != Refused }

// Stats are counters summed over all shards.
type Stats struct {
	Entries   int64 // read states held, including loading placeholders
	Capacity  int64
	Dirty     int64
	Hits      uint64
	Misses    uint64
	Evictions uint64 // entries removed to make room, clean or dirty
	Pinned    uint64 // dirty entries WriteBack refused
}

// ErrReserved is returned by Reserve when k already has a loading
// placeholder: the caller must serialize loads of one key.
var ErrReserved = errors.New("cache: read state is already being loaded")

// shardCount validates cfg and returns its number of shards.
func shardCount(cfg Config) (int, error) {
	if cfg.Entries <= 0 {
		return 0, fmt.Errorf("cache: capacity must be positive, got %d", cfg.Entries)
	}
	shards := cfg.Shards
	if shards == 0 {
		shards = 1
		for shards < 64 && cfg.Entries/(2*shards) >= 256 {
			shards *= 2
		}
		for shards < 1<<16 && cfg.Entries/shards > 16<<10 {
			shards *= 2
		}
	}
	if shards < 1 || shards&(shards-1) != 0 || shards > 1<<16 {
		return 0, fmt.Errorf("cache: shards must be a power of two up to 65536, got %d", shards)
	}
	if shards > cfg.Entries {
		return 0, fmt.Errorf("cache: %d shards for %d entries: a shard needs room for one", shards, cfg.Entries)
	}
	return shards, nil
}

// shardLimit is the capacity of shard i of shards: the limits add up to
// entries exactly, and none is zero when shards <= entries.
func shardLimit(entries, shards, i int) int {
	limit := entries / shards
	if i < entries%shards {
		limit++
	}
	return limit
}

// shardOf returns the index of user's shard among 1<<shardBits. Every
// read state of a user is in one shard: a flush hands the user's changes
// over together (the store writes a user's partition in one request), a
// multi-get or a transaction of one user takes one lock, and the slot
// within the shard still comes from hashKey, so a user with many channels
// does not lengthen probe runs.
func shardOf(user int64, shardBits uint) int {
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], uint64(user))
	return int(xxhash.Sum64(b[:]) >> (64 - shardBits) & (1<<shardBits - 1))
}

func hashKey(k Key) uint64 {
	var b [16]byte
	binary.LittleEndian.PutUint64(b[:8], uint64(k.User))
	binary.LittleEndian.PutUint64(b[8:], uint64(k.Channel))
	return xxhash.Sum64(b[:])
}

// stampClock issues the stamps of snapshots: a hybrid clock that follows
// the wall clock while it moves forward, and otherwise counts up from the
// highest stamp it has issued or observed. Correctness never depends on the
// wall clock: a stamp is above every stamp observed before it (the stored
// stamps of loaded read states, see Table.Fill and Table.Observe), so a
// change is written above what the store holds even after a restart on a
// clock that is behind.
type stampClock struct {
	now       func() time.Time
	lastStamp atomic.Int64
}

// stamp returns a timestamp in microseconds, greater than any it returned
// or observed before, so two snapshots are ordered even within one
// microsecond.
func (c *stampClock) stamp() int64 {
	now := c.now().UnixMicro()
	for {
		last := c.lastStamp.Load()
		next := max(now, last+1)
		if c.lastStamp.CompareAndSwap(last, next) {
			return next
		}
	}
}

// HighStamp returns the highest stamp issued or observed so far: every
// later stamp is above it.
func (c *stampClock) HighStamp() int64 { return c.lastStamp.Load() }

// observe raises the clock so that every later stamp is above stamp.
func (c *stampClock) observe(stamp int64) {
	for {
		last := c.lastStamp.Load()
		if stamp <= last || c.lastStamp.CompareAndSwap(last, stamp) {
			return
		}
	}
}

// Observe makes every stamp the table issues from now on greater than
// stamp: the caller has seen a read state stored with it (a journal
// replayed at start, say).
func (t *Table) Observe(stamp int64) { t.observe(stamp) }

// Lookups are the operations of a Table that look read states up, and
// whether they count their lookups in Stats.Hits and Misses. Redis counts
// one lookup for each key a command names; a caller that looks at a read
// state again for the same command (after reading it through, say)
// looks without counting, so the counts need no correction afterwards.
type Lookups struct {
	t     *Table
	count bool
}

// Lookups returns t's lookups, which count a hit or a miss for each read
// state they look up if count is true, and nothing otherwise.
func (t *Table) Lookups(count bool) Lookups { return Lookups{t: t, count: count} }

// Get returns the state of k, or ErrMiss.
func (l Lookups) Get(k Key) (State, error) { return l.t.get(k, l.count) }

// Incr adds delta to the mention count of k and returns the new count. A
// result below zero is stored as zero; a result above math.MaxInt32 is
// refused with ErrOverflow. It returns ErrMiss if k is not cached.
func (l Lookups) Incr(k Key, delta int64) (int32, error) { return l.t.incr(k, delta, l.count) }

// Reset sets the mention count of k to zero and, if setMsg, its last
// message id to msgID. It returns the count before the reset, or ErrMiss
// if k is not cached.
func (l Lookups) Reset(k Key, msgID int64, setMsg bool) (int32, error) {
	return l.t.reset(k, msgID, setMsg, l.count)
}

// GetMany looks up the read states of one user in several channels. For
// each channels[i] not found yet (found[i] false) it sets out[i] and
// found[i] (out and found must be at least as long as channels); it
// returns how many are still not found. A caller looking again after a
// read-through passes found as the first call left it, so that only the
// channels that missed are looked up again.
func (l Lookups) GetMany(user int64, channels []int64, out []State, found []bool) int {
	missing := 0
	for i, c := range channels {
		if found[i] {
			continue
		}
		st, err := l.Get(Key{User: user, Channel: c})
		out[i], found[i] = st, err == nil
		if err != nil {
			missing++
		}
	}
	return missing
}

// Atomically runs fn with the shards of keys locked, if every key is
// cached; otherwise it runs nothing and returns a key that is not (ok
// false), for the caller to load before it tries again. The operations fn
// makes through its Locked view run as one unit: no other operation on
// those keys interleaves with them (a transaction, Redis's MULTI/EXEC).
//
// If it runs fn and counts, it counts a hit for each of keys (so a
// caller that wants one per read state passes each once); the Locked
// view's lookups count nothing. If it does not run fn it counts nothing:
// the caller learns what is missing by looking up each key.
//
// Shards are locked in index order, and every other operation holds one
// shard lock at a time, so concurrent calls cannot deadlock. fn must use
// only its Locked view, on keys among keys, and must not block: every
// operation on those shards waits for it.
func (l Lookups) Atomically(keys []Key, fn func(Locked)) (missing Key, ok bool) {
	return l.t.atomically(keys, fn, l.count)
}

// lockOrder returns the indexes of the shards of keys, sorted and without
// duplicates: the order in which Atomically locks them.
func lockOrder(keys []Key, shardBits uint) []int {
	idx := make([]int, 0, len(keys))
	for _, k := range keys {
		idx = append(idx, shardOf(k.User, shardBits))
	}
	slices.Sort(idx)
	return slices.Compact(idx)
}

// Locked is the view of a Table inside Atomically: its operations on the
// keys whose shards are locked. A key of a shard that is not locked is a
// bug of the caller: its operations return ErrMiss and touch nothing.
type Locked struct {
	locked    []int // the shards locked, as lockOrder returns them
	shardBits uint
	get       func(Key) (State, error)
	incr      func(Key, int64) (int32, error)
	reset     func(Key, int64, bool) (int32, error)
}

// holds reports whether k's shard is locked.
func (l Locked) holds(k Key) bool {
	_, ok := slices.BinarySearch(l.locked, shardOf(k.User, l.shardBits))
	return ok
}

// Get is Lookups.Get on a locked key, counting nothing.
func (l Locked) Get(k Key) (State, error) {
	if !l.holds(k) {
		return State{}, ErrMiss
	}
	return l.get(k)
}

// Incr is Lookups.Incr on a locked key, counting nothing.
func (l Locked) Incr(k Key, delta int64) (int32, error) {
	if !l.holds(k) {
		return 0, ErrMiss
	}
	return l.incr(k, delta)
}

// Reset is Lookups.Reset on a locked key, counting nothing.
func (l Locked) Reset(k Key, msgID int64, setMsg bool) (int32, error) {
	if !l.holds(k) {
		return 0, ErrMiss
	}
	return l.reset(k, msgID, setMsg)
}
