//go:build !ptrcache

package cache

// Tests of the arena table's own properties, which the pointer-rich
// baseline (ptrtable.go, -tags ptrcache) does not have by design. The
// tests of the API both share are in table_test.go.

import (
	"errors"
	"reflect"
	"runtime"
	"runtime/metrics"
	"slices"
	"testing"
)

func TestStoredTypesHoldNoPointers(t *testing.T) {
	for _, v := range []any{entry{}, Key{}, State{}, Snapshot{}} {
		if typ := reflect.TypeOf(v); hasPointers(typ) {
			t.Errorf("%v contains pointers", typ)
		}
	}
}

func hasPointers(t reflect.Type) bool {
	switch t.Kind() {
	case reflect.Bool, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64,
		reflect.Float32, reflect.Float64, reflect.Complex64, reflect.Complex128:
		return false
	case reflect.Array:
		return t.Len() > 0 && hasPointers(t.Elem())
	case reflect.Struct:
		for i := range t.NumField() {
			if hasPointers(t.Field(i).Type) {
				return true
			}
		}
		return false
	default:
		return true
	}
}

// TestGCDoesNotScanTheArena: with two million read states cached, a GC
// cycle scans about as much heap as with none.
func TestGCDoesNotScanTheArena(t *testing.T) {
	if testing.Short() {
		t.Skip("fills 2M entries")
	}
	base := gcScanBytes()
	tb := newTable(t, Config{Entries: 2_000_000})
	fill(tb, 2_000_000)
	full := gcScanBytes()
	runtime.KeepAlive(tb)
	// The arena is 75 MB; the table's own heap objects are a few KB.
	if full > base+1<<20 {
		t.Fatalf("GC scanned %d bytes with 2M entries, %d with none", full, base)
	}
}

func gcScanBytes() uint64 {
	runtime.GC()
	s := []metrics.Sample{{Name: "/gc/scan/heap:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// fill loads n distinct read states into the arena table or the
// pointer-LRU baseline (BenchmarkTable).
func fill(tb interface {
	Reserve(Key) (bool, error)
	Fill(Key, State, int64, func() bool)
}, n int) {
	for i := range n {
		fill1(tb, Key{User: int64(i), Channel: int64(i) * 31})
	}
}

// fill1 loads k as a read-through does.
func fill1(tb interface {
	Reserve(Key) (bool, error)
	Fill(Key, State, int64, func() bool)
}, k Key) {
	if ok, _ := tb.Reserve(k); ok {
		tb.Fill(k, State{MentionCount: 1, LastMessageID: k.User}, 0, nil)
	}
}

// TestFlushRescansAnEntryShiftedBehindIt: between two slices of a flush, a
// deletion shifts a dirty entry of the pass back into a slot the flush has
// scanned; the flush goes round again and hands it over.
func TestFlushRescansAnEntryShiftedBehindIt(t *testing.T) {
	var handed []Key
	tb := newTable(t, Config{Entries: 1000, Shards: 1, WriteBack: func(s Snapshot) Handoff {
		handed = append(handed, s.Key)
		return Taken
	}})
	tb.sliceSlots = 1 // a slice per slot
	for i := range 1000 {
		k := Key{User: 1, Channel: int64(i)}
		load(t, tb, k, State{})
		tb.Lookups(true).Incr(k, 1)
	}
	var moved *Key
	tb.betweenSlices = func(s *shard, next int) {
		if moved != nil || next == 0 || next >= len(s.slots) {
			return
		}
		// next is dirty, displaced from its home, and follows a used slot
		// in its probe run: deleting that slot shifts it back, behind the
		// scan.
		e, prev := &s.slots[next], &s.slots[next-1]
		if e.meta&metaDirty == 0 || prev.meta&metaUsed == 0 || prev.meta&metaDirty != 0 {
			return
		}
		if s.home(hashKey(Key{e.user, e.channel})) == uint64(next) {
			return
		}
		moved = &Key{e.user, e.channel}
		tb.removeLocked(s, uint64(next-1))
		if got := s.slots[next-1]; got.user != moved.User || got.channel != moved.Channel {
			t.Fatalf("the deletion did not shift %v back", *moved)
		}
	}
	if _, done := tb.Flush(0); !done {
		t.Fatal("Flush not done")
	}
	if moved == nil {
		t.Fatal("test bug: no displaced entry to shift")
	}
	if !slices.Contains(handed, *moved) {
		t.Fatalf("%v, shifted behind the scan, was not handed over", *moved)
	}
	if st := tb.Stats(); st.Dirty != 0 {
		t.Fatalf("%d entries left dirty", st.Dirty)
	}
}

// TestFlushFinishesAnOpenPassThenItsOwn: a Flush that finds a pass open
// (one refused and not resumed, or another flusher's under way) hands
// over what was dirty when it began, not only what that pass began with.
func TestFlushFinishesAnOpenPassThenItsOwn(t *testing.T) {
	refuse := false
	var handed []Key
	tb := newTable(t, Config{Entries: 1000, Shards: 1, WriteBack: func(s Snapshot) Handoff {
		if refuse {
			return Refused
		}
		handed = append(handed, s.Key)
		return Taken
	}})
	keys := make([]Key, 40)
	for i := range keys {
		keys[i] = Key{User: 1, Channel: int64(i)}
		load(t, tb, keys[i], State{})
	}
	// A, dirty; a refused pass begins with it and stays open.
	a := keys[0]
	tb.Lookups(true).Incr(a, 1)
	refuse = true
	if _, done := tb.Flush(0); done {
		t.Fatal("a refused Flush said done")
	}
	// Every other key changes while the pass is open: they are dirty when
	// the next Flush begins, though not in the open pass.
	for _, k := range keys[1:] {
		tb.Lookups(true).Incr(k, 1)
	}
	refuse = false
	if _, done := tb.Flush(0); !done {
		t.Fatal("Flush not done")
	}
	for _, k := range keys {
		if !slices.Contains(handed, k) {
			t.Fatalf("%v, dirty when the Flush began, was not handed over (an open pass ended the call)", k)
		}
	}

	// Two flushers: the second begins while the first's pass is under
	// way, after a key the first had scanned changed again.
	handed = handed[:0]
	for _, k := range keys {
		tb.Lookups(true).Incr(k, 1)
	}
	tb.sliceSlots = 1
	var late *Key
	var secondBegan uint64
	tb.betweenSlices = func(s *shard, next int) {
		if late != nil || next < 2 {
			return
		}
		for j := next - 1; j >= 0; j-- { // a scanned, clean entry
			if e := &s.slots[j]; e.meta&metaUsed != 0 && e.meta&metaDirty == 0 {
				late = &Key{e.user, e.channel}
				e.mentions++
				tb.changedLocked(s, e)
				secondBegan = s.passes // the second Flush begins now
				return
			}
		}
	}
	if _, done := tb.Flush(0); !done {
		t.Fatal("first Flush not done")
	}
	tb.betweenSlices = nil
	if late == nil {
		t.Fatal("test bug: nothing changed behind the first flush")
	}
	handed = handed[:0]
	if _, done := tb.flush(&tb.shards[0], secondBegan); !done {
		t.Fatal("second Flush not done")
	}
	if !slices.Contains(handed, *late) {
		t.Fatalf("%v, dirty when the second Flush began, was not handed over by it", *late)
	}
}

// TestEvictionSparesEntriesInUseWhileRefused: while WriteBack refuses
// (the store is down), inserts evict only clean entries nobody used since
// the hand last passed, and then fail; the entries in use stay, however
// many inserts are tried.
func TestEvictionSparesEntriesInUseWhileRefused(t *testing.T) {
	h := &handoff{}
	tb := newTable(t, Config{Entries: 100, Shards: 1, WriteBack: h.take})
	var hot []Key
	for i := range 100 {
		k := Key{User: int64(i % 7), Channel: int64(i)}
		switch {
		case i < 70: // changed: dirty, pinned once WriteBack refuses
			load(t, tb, k, State{})
			tb.Lookups(true).Incr(k, 1)
		case i < 80: // in use
			load(t, tb, k, State{})
			hot = append(hot, k)
		default: // read from the store, never used
			if !tb.Insert(k, State{}, 1, func() bool { return true }) {
				t.Fatalf("Insert %v", k)
			}
		}
	}
	h.refuse = true
	if _, done := tb.Flush(0); done {
		t.Fatal("a refused flush said done")
	}
	if inserted := insertPastInUse(t, tb, hot, func() {}); inserted != 20 {
		t.Fatalf("%d inserts taken, want 20 (the unused entries)", inserted)
	}
	// The store is back: a flush is accepted, and eviction sweeps again.
	h.refuse = false
	if _, done := tb.Flush(0); !done {
		t.Fatal("flush not done")
	}
	if ok, err := tb.Reserve(Key{User: 101, Channel: 1}); err != nil || !ok {
		t.Fatalf("Reserve after recovery: %v, %v", ok, err)
	}
}

// TestEvictionSparesEntriesInUseWhileFull: a full queue still takes a
// newer state of a key it holds (TakenFull), and that must not make the
// hand sweep as if it had room: it would clear the reference bits of a
// whole turn, and the next inserts would evict the clean read states in
// use, which the cache could no longer serve while the store is down.
func TestEvictionSparesEntriesInUseWhileFull(t *testing.T) {
	h := &handoff{}
	tb := newTable(t, Config{Entries: 100, Shards: 1, WriteBack: h.take})
	var held, hot []Key
	for i := range 100 {
		k := Key{User: int64(i % 7), Channel: int64(i)}
		switch {
		case i < 35: // handed over once, and changed again: the queue holds them
			load(t, tb, k, State{})
			tb.Lookups(true).Incr(k, 1)
			held = append(held, k)
		case i < 70: // changed, and not in the queue: pinned once it is full
			load(t, tb, k, State{})
			tb.Lookups(true).Incr(k, 1)
		case i < 80: // clean, in use
			load(t, tb, k, State{})
			hot = append(hot, k)
		default: // read from the store, never used
			if !tb.Insert(k, State{}, 1, func() bool { return true }) {
				t.Fatalf("Insert %v", k)
			}
		}
	}
	h.mu.Lock()
	for _, k := range held {
		h.got = append(h.got, Snapshot{Key: k})
	}
	h.full = true
	h.mu.Unlock()
	tb.Flush(0)
	// Read states the queue holds keep changing: they are dirty again
	// whenever an insert offers WriteBack one.
	changeHeld := func() {
		for _, k := range held[:5] {
			tb.Lookups(true).Incr(k, 1)
		}
	}
	if inserted := insertPastInUse(t, tb, hot, changeHeld); inserted != 20 {
		t.Fatalf("%d inserts taken, want 20 (the entries nobody used: 80-99)", inserted)
	}
}

// insertPastInUse tries 200 inserts of new read states, each after
// before(), and fails t if one of hot is evicted meanwhile. The hot read
// states are in use, but less often than the inserts come: only every
// 20th round reads them (and so references them again). It returns how
// many inserts were taken.
func insertPastInUse(t *testing.T, tb *Table, hot []Key, before func()) (inserted int) {
	t.Helper()
	for i := range 200 {
		before()
		k := Key{User: 100, Channel: int64(i)}
		ok, err := tb.Reserve(k)
		switch {
		case err == nil && ok:
			tb.Fill(k, State{}, 0, nil)
			inserted++
		case !errors.Is(err, ErrFull):
			t.Fatalf("Reserve %v: %v, %v", k, ok, err)
		}
		for _, hk := range hot {
			if !cachedUntouched(tb, hk) {
				t.Fatalf("after %d inserts (%d taken), %v in use was evicted", i+1, inserted, hk)
			}
			if i%20 == 19 {
				tb.Lookups(true).Get(hk)
			}
		}
	}
	return inserted
}

// cachedUntouched reports whether k is cached, without referencing it.
func cachedUntouched(tb *Table, k Key) bool {
	s, home := tb.locate(k)
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.findLocked(k, home)
	return ok
}

// TestEvictionKeepsProbeRunsShort: a full shard under constant eviction
// of read states nobody uses again (a stream of misses, each read once)
// keeps its probe runs as short as a shard filled at random. A hand that
// swept the slots in order left the region ahead of it near full, one
// probe run of thousands of slots that every lookup and deletion there
// walked.
func TestEvictionKeepsProbeRunsShort(t *testing.T) {
	const entries = 16 << 10
	tb := newTable(t, Config{Entries: entries, Shards: 1})
	fill(tb, entries)
	s := &tb.shards[0]
	atFill := longestRun(s)
	for i := range 20 * entries {
		fill1(tb, Key{User: int64(entries + i), Channel: 7})
	}
	after := longestRun(s)
	t.Logf("longest probe run: %d slots when filled, %d after %d evictions (%d slots)", atFill, after, 20*entries, s.n)
	if after > 2*atFill+64 {
		t.Fatalf("longest probe run grew from %d to %d slots under eviction", atFill, after)
	}
}

// longestRun returns the most used slots in a row in s.
func longestRun(s *shard) int {
	best, run := 0, 0
	for i := range 2 * s.n { // twice round: a run may wrap
		if s.slots[i%s.n].meta&metaUsed != 0 {
			run++
			best = max(best, run)
		} else {
			run = 0
		}
	}
	return min(best, int(s.n))
}
