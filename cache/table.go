//go:build !ptrcache

package cache

import (
	"fmt"
	"math"
	"math/bits"
	"runtime"
	"sync"
	"time"
	"unsafe"

	"github.com/readstates/readstates/internal/latency"
)

// entry is one slot of a shard's open-addressing table. It holds no
// pointers, so an arena of entries is invisible to the garbage collector.
type entry struct {
	user     int64
	channel  int64
	lastMsg  int64
	mentions int32
	meta     uint32 // flags
}

// The size is part of the memory budget: 32 bytes per slot, two slots per
// cache line.
var _ [32]struct{} = [unsafe.Sizeof(entry{})]struct{}{}

const (
	metaUsed    = 1 << 0 // the slot holds a read state (or a loading placeholder)
	metaDirty   = 1 << 1 // changed since it was last known to be written
	metaRef     = 1 << 2 // touched since the CLOCK hand last passed
	metaLoading = 1 << 3 // placeholder reserved by Reserve, not yet filled
	// metaEpoch is the shard's flush epoch when the entry last became
	// dirty (see shard.epoch); meaningless while it is clean.
	metaEpoch = 1 << 4
)

// A flush holds a shard's lock for at most flushSliceSlots slots and
// flushSliceHanded hand-overs at a time, so that no command waits behind
// a whole shard's scan (issue 15: no lock held for longer than a bounded
// slice of work).
const (
	flushSliceSlots  = 1024
	flushSliceHanded = 128
)

// maxLoad is the highest fraction of a shard's slots that may be in use.
// Linear probing stays short below it (a hit reads 1-2 adjacent cache
// lines), and it sets the memory cost: 32 / 0.85 ≈ 37.6 bytes per read state.
const maxLoad = 0.85

// Implementation names the Table built in: this arena table, or the
// pointer-rich LRU baseline built with -tags ptrcache.
const Implementation = "arena"

// Table is a fixed-capacity map from Key to State with CLOCK eviction,
// built for write-behind. All methods are safe for concurrent use.
type Table struct {
	shards    []shard
	shardBits uint
	writeBack func(Snapshot) Handoff
	onChange  func(Snapshot)
	onRemove  func(Key)
	release   func() error
	flushHold latency.Peak
	// The bounds of a flush slice (flushSliceSlots, flushSliceHanded),
	// and a hook run between two slices with the lock held: tests make a
	// slice small and move entries behind the scan.
	sliceSlots, sliceHanded int
	betweenSlices           func(s *shard, next int)
	stampClock
}

// shard is one lock's worth of the table: an open-addressing (linear
// probing) array of slots over a slice of the arena.
//
// Invariants, with mu held:
//   - every used slot is reachable from its home slot by probing forward
//     through used slots only (deletion shifts entries back to keep this);
//   - count <= limit < len(slots), so a probe always meets an empty slot;
//   - dirty counts used slots with metaDirty; loading those with metaLoading;
//     a slot is never both;
//   - dirtyIn[b] counts the dirty slots whose metaEpoch bit is b: an
//     entry that becomes dirty takes the bit of epoch, and a flush pass
//     is over when no dirty entry has the other bit (the pass began by
//     flipping epoch, so those are the entries dirty when it began);
//   - epoch flips (passes++) only when no dirty entry has the other bit:
//     at a flip, every dirty entry belongs to the pass it begins.
type shard struct {
	mu      sync.Mutex
	slots   []entry
	n       uint64 // len(slots)
	count   int
	limit   int
	dirty   int
	dirtyIn [2]int
	epoch   uint32 // 0 or 1
	passes  uint64 // flush passes begun (epoch flips)
	// refusing: WriteBack would refuse a key it does not hold, as its last
	// answer in this shard said (Refused, TakenFull); cleared by a Taken,
	// or when no entry is dirty (see evictLocked).
	refusing bool
	loading  int
	// The CLOCK hand visits every slot once a turn, stride slots apart
	// (stride and n coprime): see sweepLocked.
	hand, stride uint64

	hits, misses, evictions, pinned uint64

	_ [64]byte // keeps neighbouring shards' locks off one cache line
}

// New returns a table with room for cfg.Entries read states. Its arena is
// allocated at once (mapped outside the Go heap where the OS allows) and
// never grows; Close releases it.
func New(cfg Config) (*Table, error) {
	shards, err := shardCount(cfg)
	if err != nil {
		return nil, err
	}
	limit := (cfg.Entries + shards - 1) / shards
	perShard := int(math.Ceil(float64(limit)/maxLoad)) + 1
	if perShard >= math.MaxUint32 {
		return nil, fmt.Errorf("cache: %d entries need more shards than %d", cfg.Entries, shards)
	}
	arena, release, err := allocEntries(perShard * shards)
	if err != nil {
		return nil, fmt.Errorf("cache: %w", err)
	}
	t := &Table{
		shards:    make([]shard, shards),
		shardBits: uint(bits.TrailingZeros(uint(shards))),
		writeBack: cfg.WriteBack,
		onChange:  cfg.OnChange,
		onRemove:  cfg.OnRemove,
		release:   release,

		sliceSlots:  flushSliceSlots,
		sliceHanded: flushSliceHanded,
	}
	t.now = cfg.Now
	if t.now == nil {
		t.now = time.Now
	}
	for i := range t.shards {
		s := &t.shards[i]
		s.slots = arena[i*perShard : (i+1)*perShard : (i+1)*perShard]
		s.n = uint64(perShard)
		s.stride = handStride(s.n)
		// The limits add up to Entries exactly; none is zero.
		s.limit = shardLimit(cfg.Entries, shards, i)
	}
	return t, nil
}

// Close releases the arena. No method may be called during or after Close.
func (t *Table) Close() error {
	for i := range t.shards {
		t.shards[i].slots = nil
	}
	return t.release()
}

// locate returns the key's shard, its user's (see shardOf), and its home
// slot, from the key's own hash.
func (t *Table) locate(k Key) (*shard, uint64) {
	s := &t.shards[shardOf(k.User, t.shardBits)]
	return s, s.home(hashKey(k))
}

func (s *shard) home(h uint64) uint64 { return (h & math.MaxUint32) * s.n >> 32 }

// findLocked returns the slot of k, or the empty slot where the probe
// ended and false.
func (s *shard) findLocked(k Key, i uint64) (uint64, bool) {
	for {
		e := &s.slots[i]
		if e.meta&metaUsed == 0 {
			return i, false
		}
		if e.user == k.User && e.channel == k.Channel {
			return i, true
		}
		if i++; i == s.n {
			i = 0
		}
	}
}

// lookupLocked returns the ready entry of k, counting the hit or miss if
// count.
func (s *shard) lookupLocked(k Key, home uint64, count bool) *entry {
	i, ok := s.findLocked(k, home)
	if !ok || s.slots[i].meta&metaLoading != 0 {
		if count {
			s.misses++
		}
		return nil
	}
	if count {
		s.hits++
	}
	e := &s.slots[i]
	e.meta |= metaRef
	return e
}

// changedLocked marks e dirty and reports the change to OnChange.
func (t *Table) changedLocked(s *shard, e *entry) {
	if e.meta&metaDirty == 0 {
		s.dirty++
		s.dirtyIn[s.epoch]++
		e.meta = e.meta&^metaEpoch | metaDirty | s.epoch*metaEpoch
	}
	if t.onChange != nil {
		t.onChange(t.snapshotLocked(e))
	}
}

func (t *Table) get(k Key, count bool) (State, error) {
	s, home := t.locate(k)
	s.mu.Lock()
	st, err := s.getLocked(k, home, count)
	s.mu.Unlock()
	return st, err
}

func (s *shard) getLocked(k Key, home uint64, count bool) (State, error) {
	e := s.lookupLocked(k, home, count)
	if e == nil {
		return State{}, ErrMiss
	}
	return State{MentionCount: e.mentions, LastMessageID: e.lastMsg}, nil
}

// Contains reports whether k is cached or being loaded. It is not a use of
// k: it counts no hit or miss and leaves k's reference bit alone.
func (t *Table) Contains(k Key) bool {
	s, home := t.locate(k)
	s.mu.Lock()
	_, ok := s.findLocked(k, home)
	s.mu.Unlock()
	return ok
}

func (t *Table) incr(k Key, delta int64, count bool) (int32, error) {
	s, home := t.locate(k)
	s.mu.Lock()
	n, err := t.incrLocked(s, k, home, delta, count)
	s.mu.Unlock()
	return n, err
}

func (t *Table) incrLocked(s *shard, k Key, home uint64, delta int64, count bool) (int32, error) {
	e := s.lookupLocked(k, home, count)
	if e == nil {
		return 0, ErrMiss
	}
	cur := int64(e.mentions)
	var next int64
	switch {
	case delta > math.MaxInt32-cur:
		return e.mentions, ErrOverflow
	case delta <= -cur:
		next = 0
	default:
		next = cur + delta
	}
	if next != cur {
		e.mentions = int32(next)
		t.changedLocked(s, e)
	}
	return int32(next), nil
}

func (t *Table) reset(k Key, msgID int64, setMsg, count bool) (int32, error) {
	s, home := t.locate(k)
	s.mu.Lock()
	prev, err := t.resetLocked(s, k, home, msgID, setMsg, count)
	s.mu.Unlock()
	return prev, err
}

func (t *Table) resetLocked(s *shard, k Key, home uint64, msgID int64, setMsg, count bool) (int32, error) {
	e := s.lookupLocked(k, home, count)
	if e == nil {
		return 0, ErrMiss
	}
	prev := e.mentions
	if prev != 0 || (setMsg && e.lastMsg != msgID) {
		e.mentions = 0
		if setMsg {
			e.lastMsg = msgID
		}
		t.changedLocked(s, e)
	}
	return prev, nil
}

// Reserve prepares the read-through of k. If k is cached it returns false
// (retry the operation). Otherwise it inserts a loading placeholder and
// returns true: the caller now loads k and must call Fill or Abort.
//
// While the placeholder exists, k's operations return ErrMiss, it is never
// evicted, and nothing else can insert k. Since k was absent, its newest
// state is wherever WriteBack sent it, so the caller reads that (its
// unwritten snapshots, then the database) and Fills it; no newer state can
// appear in between.
//
// Making room may evict other entries; if none can be evicted Reserve
// returns ErrFull.
func (t *Table) Reserve(k Key) (bool, error) {
	s, home := t.locate(k)
	s.mu.Lock()
	defer s.mu.Unlock()
	i, ok := s.findLocked(k, home)
	if ok {
		if s.slots[i].meta&metaLoading != 0 {
			return false, ErrReserved
		}
		return false, nil
	}
	if s.count >= s.limit {
		if !t.evictLocked(s) {
			return false, ErrFull
		}
		// Eviction shifts entries: the probe must be redone.
		i, _ = s.findLocked(k, home)
	}
	s.slots[i] = entry{user: k.User, channel: k.Channel, meta: metaUsed | metaLoading}
	s.count++
	s.loading++
	return true, nil
}

// Fill turns k's loading placeholder into a clean entry holding st, which
// the caller read with the given stamp (0: never written): every later
// stamp of the table is above it. It does nothing if k has no placeholder.
// If ok is not nil it is called under k's shard lock, and if it says no
// the placeholder is removed as by Abort: the read is known stale (its
// user was dropped while it ran, and another node may have written since);
// the caller's operation then misses again and learns why.
func (t *Table) Fill(k Key, st State, stamp int64, ok func() bool) {
	t.observe(stamp)
	s, home := t.locate(k)
	s.mu.Lock()
	defer s.mu.Unlock()
	i, found := s.findLocked(k, home)
	if !found || s.slots[i].meta&metaLoading == 0 {
		return
	}
	s.loading--
	if ok != nil && !ok() {
		if t.onRemove != nil {
			t.onRemove(k)
		}
		s.deleteLocked(i)
		return
	}
	e := &s.slots[i]
	e.mentions, e.lastMsg = st.MentionCount, st.LastMessageID
	e.meta = e.meta&^metaLoading | metaRef
}

// Abort removes k's loading placeholder, after a failed load.
func (t *Table) Abort(k Key) {
	s, home := t.locate(k)
	s.mu.Lock()
	if i, ok := s.findLocked(k, home); ok && s.slots[i].meta&metaLoading != 0 {
		if t.onRemove != nil {
			t.onRemove(k) // a reader may have counted the placeholder as k being here
		}
		s.loading--
		s.deleteLocked(i)
	}
	s.mu.Unlock()
}

// evictLocked removes one entry by CLOCK: the hand sweeps the slots,
// clearing reference bits, and takes the first unreferenced entry that is
// not loading and, if dirty, is taken by WriteBack. It reports false if
// no entry could be evicted.
//
// While WriteBack refuses (its backlog is full: the store is down or
// behind; s.refusing), dirty entries are pinned and only clean ones can
// go. The hand then leaves reference bits alone and makes one sweep: an
// insert takes an entry that nobody used since the hand last cleared it,
// or fails. Otherwise each insert, finding little to evict, would sweep
// the shard clean of references and evict an entry in use: the read
// states the cache still serves while the store is down. Each insert
// offers WriteBack one dirty entry first, to learn that it takes more
// again: only Taken says so, since a full queue still takes a newer
// state of a key it holds (TakenFull), and the hand that took that for
// room would clear the reference bits of a whole turn.
func (t *Table) evictLocked(s *shard) bool {
	if s.refusing && !t.retryWriteBackLocked(s) {
		return t.sweepLocked(s, false)
	}
	return t.sweepLocked(s, true)
}

// sweepLocked is evictLocked's CLOCK sweep: two turns of the hand if it
// clears reference bits, one if not; it stops clearing them when
// WriteBack refuses.
func (t *Table) sweepLocked(s *shard, clearRefs bool) bool {
	hookRefused := !clearRefs // WriteBack was just asked
	steps := 2 * s.n
	if !clearRefs {
		steps = s.n
	}
	for ; steps > 0; steps-- {
		if hookRefused && s.count-s.dirty-s.loading == 0 {
			return false // only dirty entries are left, and WriteBack is full
		}
		e := &s.slots[s.hand]
		switch {
		case e.meta&metaUsed == 0, e.meta&metaLoading != 0:
		case e.meta&metaRef != 0:
			if clearRefs {
				e.meta &^= metaRef
			}
		case e.meta&metaDirty == 0:
			t.removeLocked(s, s.hand)
			return true
		case hookRefused:
		case t.handOverLocked(s, e):
			t.removeLocked(s, s.hand)
			return true
		default:
			hookRefused = true
			if clearRefs {
				clearRefs = false
				steps = min(steps, s.n)
			}
		}
		if s.hand += s.stride; s.hand >= s.n {
			s.hand -= s.n
		}
	}
	return false
}

// handStride returns the step of a shard's CLOCK hand over its n slots:
// the first odd integer from ⌊n/φ⌋ up that is coprime with n, so that the
// hand visits every slot once a turn and any run of visits is spread
// evenly over the shard. A hand that walked the slots in order evicted a
// region of them at a time: the region just swept was emptier than the
// table and the one ahead of the hand, filled by a whole turn of inserts,
// was near full, and in a linear-probing table a near-full region is one
// long probe run that every lookup, insert and deletion there walks.
func handStride(n uint64) uint64 {
	if n <= 2 {
		return 1
	}
	st := uint64(float64(n)*0.6180339887498949) | 1
	for gcd(st, n) != 1 {
		st++
	}
	return st
}

func gcd(a, b uint64) uint64 {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// retryWriteBackLocked offers the first dirty entry in slot order from
// the hand on to WriteBack, and reports whether WriteBack takes more
// (s.refusing is then false). An entry it takes is clean, even if it
// takes no more: a full queue takes a newer state of a key it holds.
func (t *Table) retryWriteBackLocked(s *shard) bool {
	if s.dirty == 0 {
		s.refusing = false
		return true
	}
	for i, j := uint64(0), s.hand; i < s.n; i++ {
		if e := &s.slots[j]; e.meta&metaDirty != 0 {
			t.handOverLocked(s, e)
			return !s.refusing
		}
		if j++; j == s.n {
			j = 0
		}
	}
	return false
}

// handOverLocked offers dirty entry e to WriteBack. If it is taken, e is
// marked clean; if not, it stays dirty and is counted pinned. s.refusing
// records whether WriteBack would refuse a key it does not hold.
func (t *Table) handOverLocked(s *shard, e *entry) bool {
	h := Taken
	if t.writeBack != nil {
		h = t.writeBack(t.snapshotLocked(e))
	}
	s.refusing = h != Taken
	if !h.taken() {
		s.pinned++
		return false
	}
	s.cleanLocked(e)
	return true
}

// removeLocked evicts the entry in slot i.
func (t *Table) removeLocked(s *shard, i uint64) {
	if t.onRemove != nil {
		e := &s.slots[i]
		t.onRemove(Key{User: e.user, Channel: e.channel})
	}
	s.evictions++
	s.deleteLocked(i)
}

// Insert adds k as a clean entry holding st, read from the store with
// stamp, unless k is in the table already or ok(), called under k's shard
// lock, says no. It evicts to make room, and reports false only if it
// could not: k is then missing although ok() held. The entry is not marked
// referenced, so if nothing uses it, it is the first to be evicted. It is
// how a read of a user's whole partition fills the table: ok is the
// caller's check that nothing newer of k can exist outside the table (see
// OnRemove).
func (t *Table) Insert(k Key, st State, stamp int64, ok func() bool) bool {
	s, home := t.locate(k)
	s.mu.Lock()
	defer s.mu.Unlock()
	i, found := s.findLocked(k, home)
	if found || !ok() {
		return true
	}
	if s.count >= s.limit {
		if !t.evictLocked(s) {
			return false
		}
		i, _ = s.findLocked(k, home)
	}
	t.observe(stamp)
	s.slots[i] = entry{user: k.User, channel: k.Channel, lastMsg: st.LastMessageID, mentions: st.MentionCount, meta: metaUsed}
	s.count++
	return true
}

// deleteLocked empties slot i and shifts later entries of its probe run
// back, so no tombstones are needed (Knuth's algorithm R).
func (s *shard) deleteLocked(i uint64) {
	s.count--
	j := i
	for {
		if j++; j == s.n {
			j = 0
		}
		e := &s.slots[j]
		if e.meta&metaUsed == 0 {
			break
		}
		h := s.home(hashKey(Key{User: e.user, Channel: e.channel}))
		// e may move to i only if its home is not cyclically in (i, j].
		if (i <= j && (h <= i || h > j)) || (i > j && h <= i && h > j) {
			s.slots[i] = *e
			i = j
		}
	}
	s.slots[i] = entry{}
}

func (t *Table) snapshotLocked(e *entry) Snapshot {
	return Snapshot{
		Key:   Key{User: e.user, Channel: e.channel},
		State: State{MentionCount: e.mentions, LastMessageID: e.lastMsg},
		Stamp: t.stamp(),
	}
}

// Shards returns the number of shards, the unit of Flush.
func (t *Table) Shards() int { return len(t.shards) }

// ShardOf returns the shard that holds user's read states, in [0, Shards()).
func (t *Table) ShardOf(user int64) int { return shardOf(user, t.shardBits) }

// cleanLocked clears e's dirty mark, in the counts too. REQUIRES: e is
// dirty.
func (s *shard) cleanLocked(e *entry) {
	s.dirty--
	s.dirtyIn[e.meta&metaEpoch/metaEpoch]--
	e.meta &^= metaDirty
}

// Flush offers the snapshot of every entry of shard i that is dirty when
// it begins to WriteBack, and marks clean those it takes (it may hand
// over entries dirtied since, too). It stops at the first refusal and
// reports whether the shard was done. Without WriteBack it does nothing.
//
// It takes the shard's lock for a bounded slice of slots at a time,
// yielding between slices. Passes are counted (shard.passes): a call is
// done when a pass begun after it began is over, whoever ran it, so a
// call that finds a pass open (one refused and not resumed, or another
// flusher's) finishes it and then makes one of its own. Between two
// slices a deletion can shift an entry back across the slice boundary,
// behind the scan: the epoch counts notice the entry missed, and the scan
// goes round again.
func (t *Table) Flush(i int) (handed int, done bool) {
	if t.writeBack == nil {
		return 0, true
	}
	s := &t.shards[i]
	s.mu.Lock()
	began := s.passes
	s.mu.Unlock()
	return t.flush(s, began)
}

// flush is Flush of s for a call that began when s.passes was began.
func (t *Table) flush(s *shard, began uint64) (handed int, done bool) {
	for pos := 0; ; {
		n, next, done, refused := t.flushSlice(s, pos, began)
		handed += n
		if done || refused {
			return handed, done
		}
		pos = next
		if t.betweenSlices != nil {
			s.mu.Lock()
			t.betweenSlices(s, pos)
			s.mu.Unlock()
		}
		runtime.Gosched() // a command waiting for the lock takes it now
	}
}

// flushSlice is one lock hold of a Flush that began when s.passes was
// began, from slot pos: it returns what it handed over and the slot to go
// on from.
func (t *Table) flushSlice(s *shard, pos int, began uint64) (handed, next int, done, refused bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	start := time.Now()
	defer func() { t.flushHold.Record(time.Since(start)) }()
	old := s.epoch ^ 1
	if s.dirtyIn[old] == 0 {
		if s.passes != began {
			return 0, 0, true, false // a pass begun since the call began is over
		}
		// A new pass: what is dirty now is what it must hand over, from
		// the first slot.
		s.epoch, old = old, s.epoch
		s.passes++
		pos = 0
	}
	end := min(pos+t.sliceSlots, len(s.slots))
	for j := pos; j < end && s.dirtyIn[old] > 0 && handed < t.sliceHanded; j++ {
		e := &s.slots[j]
		if e.meta&metaDirty == 0 {
			continue
		}
		if !t.handOverLocked(s, e) {
			return handed, j, false, true
		}
		handed++
		next = j + 1
	}
	if s.dirtyIn[old] == 0 {
		// The pass is over; if it began before the call, the next slice
		// begins the call's own.
		return handed, 0, s.passes != began, false
	}
	if next < end && handed < t.sliceHanded {
		next = end
	}
	if next >= len(s.slots) {
		next = 0 // round again: an entry was shifted behind the scan
	}
	return handed, next, false, false
}

// TakeFlushHold returns the longest Flush held a shard's lock at a time
// since the last call.
func (t *Table) TakeFlushHold() time.Duration { return t.flushHold.Take() }

// RecordDirty reports the state of every dirty entry of shard i to
// OnChange again, with a fresh stamp, and leaves it dirty. A journal that
// must drop old records while the dirty entries cannot be handed over (the
// write-behind is full) records them so. It returns how many it reported.
func (t *Table) RecordDirty(i int) int {
	if t.onChange == nil {
		return 0
	}
	s := &t.shards[i]
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for j := 0; j < len(s.slots) && n < s.dirty; j++ {
		if e := &s.slots[j]; e.meta&metaDirty != 0 {
			t.onChange(t.snapshotLocked(e))
			n++
		}
	}
	return n
}

// Stats returns counters summed over the shards; each shard is read under
// its lock, so the sum is not one instant's.
func (t *Table) Stats() Stats {
	var st Stats
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.Lock()
		st.Entries += int64(s.count)
		st.Capacity += int64(s.limit)
		st.Dirty += int64(s.dirty)
		st.Hits += s.hits
		st.Misses += s.misses
		st.Evictions += s.evictions
		st.Pinned += s.pinned
		s.mu.Unlock()
	}
	return st
}
