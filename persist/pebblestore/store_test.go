package pebblestore

import (
	"bytes"
	"errors"
	"log/slog"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/cockroachdb/pebble"
	"github.com/cockroachdb/pebble/vfs"

	"github.com/readstates/readstates/cache"
	"github.com/readstates/readstates/persist"
	"github.com/readstates/readstates/persist/storetest"
)

func pebbleTestLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func openTestPebble(t *testing.T, dir string, fs vfs.FS) *Store {
	t.Helper()
	p, err := openPebbleFS(dir, fs, pebbleTestLogger(t))
	if err != nil {
		t.Fatalf("open pebble: %v", err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Errorf("close pebble: %v", err)
		}
	})
	return p
}

func TestPebbleStore(t *testing.T) {
	storetest.Run(t, func(t *testing.T) persist.Store {
		return openTestPebble(t, t.TempDir(), vfs.Default)
	})
}

// pebbleRawStamp returns the Stamp stored for k, to tell apart two writes
// that happen to carry the same State.
func pebbleRawStamp(t *testing.T, p *Store, k cache.Key) int64 {
	t.Helper()
	var key [pebbleKeyLen]byte
	putPebbleKey(key[:], k)
	v, closer, err := p.db.Get(key[:])
	if err != nil {
		t.Fatalf("get %v: %v", k, err)
	}
	defer closer.Close()
	stamp, _, err := decodePebbleValue(v)
	if err != nil {
		t.Fatalf("decode %v: %v", k, err)
	}
	return stamp
}

func pebbleWantStamped(t *testing.T, p *Store, k cache.Key, stamp int64, want cache.State) {
	t.Helper()
	storetest.WantState(t, p, k, want)
	if got := pebbleRawStamp(t, p, k); got != stamp {
		t.Errorf("stamp of %v: got %d, want %d", k, got, stamp)
	}
}

// TestPebbleLastWriterWinsAcrossReopenAndCompaction writes a newer and then
// an older state of the same keys into different files (memtable, L0
// tables, the WAL of another open) and checks the newer one survives every
// way pebble can meet the two operands: in a read, in a flush, in a
// compaction, and after recovery.
func TestPebbleLastWriterWinsAcrossReopenAndCompaction(t *testing.T) {
	dir := t.TempDir()
	k := cache.Key{User: 1, Channel: 2}
	newer := cache.State{MentionCount: 5, LastMessageID: 55}
	older := cache.State{MentionCount: 3, LastMessageID: 33}

	p, err := Open(dir, pebbleTestLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	storetest.Write(t, p, persist.Record{Key: k, State: newer, Stamp: 5})
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}

	p, err = Open(dir, pebbleTestLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	storetest.Write(t, p, persist.Record{Key: k, State: older, Stamp: 3})
	pebbleWantStamped(t, p, k, 5, newer) // stamp 5 in a table, 3 in the memtable

	// Many keys, each written newest first, one flush per write: every
	// key ends up with its operands spread over several L0 tables.
	const keys, versions = 50, 4
	for v := versions; v >= 1; v-- {
		recs := make([]persist.Record, keys)
		for i := range recs {
			recs[i] = persist.Record{
				Key:   cache.Key{User: 10, Channel: int64(i)},
				State: cache.State{MentionCount: int32(v), LastMessageID: int64(i*100 + v)},
				Stamp: int64(v),
			}
		}
		storetest.Write(t, p, recs...)
		if err := p.db.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	check := func() {
		t.Helper()
		pebbleWantStamped(t, p, k, 5, newer)
		for i := range keys {
			pebbleWantStamped(t, p, cache.Key{User: 10, Channel: int64(i)}, versions,
				cache.State{MentionCount: versions, LastMessageID: int64(i*100 + versions)})
		}
	}
	check()
	all := bytes.Repeat([]byte{0xff}, pebbleKeyLen+1)
	if err := p.db.Compact(nil, all, false); err != nil {
		t.Fatalf("compact: %v", err)
	}
	check()
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}

	p, err = Open(dir, pebbleTestLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	check()
	// An older write arriving after compaction meets the compacted base.
	storetest.Write(t, p, persist.Record{Key: k, State: older, Stamp: 4})
	pebbleWantStamped(t, p, k, 5, newer)
}

// TestPebbleWriteSurvivesPowerLoss drops everything that was not fsynced
// and checks that an acknowledged Write is still there: Write must commit
// with pebble.Sync.
func TestPebbleWriteSurvivesPowerLoss(t *testing.T) {
	fs := vfs.NewStrictMem()
	p, err := openPebbleFS("db", fs, pebbleTestLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	recs := []persist.Record{
		{Key: cache.Key{User: 1, Channel: 1}, State: cache.State{MentionCount: 1, LastMessageID: 11}, Stamp: 100},
		{Key: cache.Key{User: 2, Channel: 2}, State: cache.State{MentionCount: 2, LastMessageID: 22}, Stamp: 100},
	}
	storetest.Write(t, p, recs...)

	// The power goes out: nothing from here on reaches the disk.
	fs.SetIgnoreSyncs(true)
	_ = p.Close()
	fs.ResetToSyncedState()
	fs.SetIgnoreSyncs(false)

	p = openTestPebble(t, "db", fs)
	for _, r := range recs {
		storetest.WantState(t, p, r.Key, r.State)
	}
}

func TestPebbleCloseTwiceAndUseAfterClose(t *testing.T) {
	p, err := Open(t.TempDir(), pebbleTestLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatalf("first Close: %v", err)
	}
	if err := p.Close(); err != nil {
		t.Fatalf("second Close: got %v, want nil", err)
	}
	k := cache.Key{User: 1, Channel: 1}
	if _, _, err := p.Load(t.Context(), k); !errors.Is(err, pebble.ErrClosed) {
		t.Errorf("Load after Close: got %v, want pebble.ErrClosed", err)
	}
	if err := p.Write(t.Context(), []persist.Record{{Key: k, Stamp: 1}}); !errors.Is(err, pebble.ErrClosed) {
		t.Errorf("Write after Close: got %v, want pebble.ErrClosed", err)
	}
}

// TestPebbleMergerOrderIndependent folds random operands in random orders,
// directions and groupings (as compactions produce partial merges) and
// checks the result is always the last-writer-wins winner.
func TestPebbleMergerOrderIndependent(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	enc := func(stamp int64, s cache.State) []byte {
		v := make([]byte, pebbleValueLen)
		putPebbleValue(v, stamp, s)
		return v
	}
	var pool pebbleMergers // half the merges use recycled mergers, as pebble does
	mergeAll := func(ops [][]byte) []byte {
		newMerger := newPebbleLWWMerger
		if rng.IntN(2) == 0 {
			newMerger = pool.newMerger
		}
		m, err := newMerger(nil, ops[0])
		if err != nil {
			t.Fatal(err)
		}
		for _, op := range ops[1:] {
			if rng.IntN(2) == 0 {
				err = m.MergeNewer(op)
			} else {
				err = m.MergeOlder(op)
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		v, closer, err := m.Finish(rng.IntN(2) == 0)
		if err != nil {
			t.Fatal(err)
		}
		v = bytes.Clone(v)
		if closer != nil {
			closer.Close()
		}
		return v
	}
	for range 1000 {
		n := 1 + rng.IntN(8)
		ops := make([][]byte, n)
		want := []byte(nil)
		var wantStamp int64 = math.MinInt64
		for i := range ops {
			// Few distinct stamps, so ties happen.
			stamp := rng.Int64N(4)
			ops[i] = enc(stamp, cache.State{MentionCount: rng.Int32N(3), LastMessageID: rng.Int64N(3)})
			if stamp > wantStamp || (stamp == wantStamp && bytes.Compare(ops[i], want) > 0) {
				want, wantStamp = ops[i], stamp
			}
		}
		rng.Shuffle(n, func(i, j int) { ops[i], ops[j] = ops[j], ops[i] })
		// A partial merge of a prefix, then its result merged with the rest.
		split := 1 + rng.IntN(n)
		partial := mergeAll(ops[:split])
		got := mergeAll(append([][]byte{partial}, ops[split:]...))
		if !bytes.Equal(got, want) {
			t.Fatalf("merge of %x: got %x, want %x", ops, got, want)
		}
	}
}

func TestPebbleRejectsCorruptValue(t *testing.T) {
	good := make([]byte, pebbleValueLen)
	putPebbleValue(good, 1, cache.State{})
	bad := [][]byte{nil, good[:pebbleValueLen-1], append(bytes.Clone(good), 0), append([]byte{2}, good[1:]...)}
	for _, v := range bad {
		if _, err := newPebbleLWWMerger(nil, v); err == nil {
			t.Errorf("newPebbleLWWMerger(%x): got nil error", v)
		}
		m, err := newPebbleLWWMerger(nil, good)
		if err != nil {
			t.Fatal(err)
		}
		if err := m.MergeOlder(v); err == nil {
			t.Errorf("MergeOlder(%x): got nil error", v)
		}
	}
}

// TestPebbleKeyOrder checks the key encoding sorts by (user, channel), so
// one user's read states are contiguous.
func TestPebbleKeyOrder(t *testing.T) {
	keys := []cache.Key{
		{User: 0, Channel: 0}, {User: 0, Channel: 1}, {User: 0, Channel: math.MaxInt64},
		{User: 1, Channel: 0}, {User: 1, Channel: 1 << 32}, {User: 256, Channel: 0},
		{User: math.MaxInt64, Channel: 0}, {User: math.MaxInt64, Channel: math.MaxInt64},
	}
	prev := make([]byte, pebbleKeyLen)
	cur := make([]byte, pebbleKeyLen)
	for i, k := range keys {
		putPebbleKey(cur, k)
		if i > 0 && bytes.Compare(prev, cur) >= 0 {
			t.Errorf("key %v does not sort after %v", k, keys[i-1])
		}
		copy(prev, cur)
	}
}

func TestEngineClockStepBackPebble(t *testing.T) {
	dir := t.TempDir()
	storetest.EngineClockStepBack(t, func(t *testing.T) (persist.Store, func()) {
		p, err := Open(dir, nil)
		if err != nil {
			t.Fatal(err)
		}
		return p, func() {
			if err := p.Close(); err != nil {
				t.Error(err)
			}
		}
	})
}
