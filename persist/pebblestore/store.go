package pebblestore

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"slices"
	"strings"
	"sync"

	"github.com/cockroachdb/pebble"
	"github.com/cockroachdb/pebble/vfs"

	"github.com/readstates/readstates/cache"
	"github.com/readstates/readstates/persist"
)

// Store is the embedded store: a pebble LSM in a local directory, used
// when no Cassandra is configured so that the server runs with no setup.
//
// Invariants:
//   - Per key, Load returns the State of the record with the highest Stamp
//     ever written (ties broken by the encoded bytes, so the result does not
//     depend on arrival order). Writes are blind pebble Merges resolved by a
//     last-writer-wins merge operator, so a Write never reads.
//   - A Write that returned nil is in the fsynced WAL: it survives a crash or
//     a power loss.
//
// A Pebble is safe for concurrent use. After Close, Load and Write return an
// error wrapping pebble.ErrClosed instead of panicking as pebble would.
type Store struct {
	// mu is read-locked by every operation and write-locked by Close, because
	// pebble panics on any use of a closed DB and on a second Close.
	mu     sync.RWMutex
	db     *pebble.DB // nil once closed; REQUIRES: mu held
	logger *slog.Logger
	// scratch holds *[]persist.Record that LoadUser reads a partition into
	// before it copies it out at its size: a slice grown record by record
	// left twice the garbage, and a cache miss's garbage is what the
	// collector runs for.
	scratch sync.Pool
}

// On-disk format. The key is (user, channel) as two big-endian uint64s, so
// one user's read states are contiguous in key order. The value is a version
// byte followed by stamp, mention_count and last_message_id, big-endian.
const (
	pebbleKeyLen       = 16
	pebbleValueVersion = 1
	pebbleValueLen     = 1 + 8 + 4 + 8
	// pebbleMergerName is stored in the DB's OPTIONS file: pebble refuses to
	// open a DB with a different merger, so a change of the value format or
	// of the merge rule needs a new name (and a migration).
	pebbleMergerName = "readstates.lww.v1"
)

// Open opens (creating it if needed) the pebble store in dir. A nil
// logger discards pebble's messages.
func Open(dir string, logger *slog.Logger) (*Store, error) {
	return openPebbleFS(dir, vfs.Default, logger)
}

// openPebbleFS is Open on any file system: tests simulate a power
// loss with vfs.NewStrictMem.
func openPebbleFS(dir string, fs vfs.FS, logger *slog.Logger) (*Store, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	logger = logger.With("component", "pebble")
	opts := &pebble.Options{
		Merger: &pebble.Merger{Name: pebbleMergerName, Merge: new(pebbleMergers).newMerger},
		// Pebble's 4 MB default memtable turned every write-behind flush
		// at a few million read states into several memtable flushes and
		// L0 compactions (CPU taken from the commands), and stalled writes
		// under random misses. 32 MB, at most 4 queued: 128 MB at worst.
		MemTableSize:                32 << 20,
		MemTableStopWritesThreshold: 4,
		// The newest format only affects new tables; pebble ratchets an
		// existing store up on open, never down.
		FormatMajorVersion: pebble.FormatNewest,
		FS:                 fs,
		Logger:             pebbleSlogLogger{logger},
		EventListener:      pebbleEventListener(logger),
	}
	if err := createPebbleDir(fs, dir); err != nil {
		return nil, fmt.Errorf("pebble: open %s: %w", dir, err)
	}
	db, err := pebble.Open(dir, opts)
	if err != nil {
		return nil, fmt.Errorf("pebble: open %s: %w", dir, err)
	}
	return &Store{db: db, logger: logger}, nil
}

// Load returns the newest State written for k and its stamp, or the zero
// State and 0 if k was never written. The context is only checked before reading: a local read
// does not block on anything a context could cancel.
func (p *Store) Load(ctx context.Context, k cache.Key) (cache.State, int64, error) {
	if err := ctx.Err(); err != nil {
		return cache.State{}, 0, fmt.Errorf("pebble: load read state %d/%d: %w", k.User, k.Channel, err)
	}
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.db == nil {
		return cache.State{}, 0, fmt.Errorf("pebble: load read state %d/%d: %w", k.User, k.Channel, pebble.ErrClosed)
	}
	var key [pebbleKeyLen]byte
	putPebbleKey(key[:], k)
	v, closer, err := p.db.Get(key[:])
	if errors.Is(err, pebble.ErrNotFound) {
		return cache.State{}, 0, nil
	}
	if err != nil {
		return cache.State{}, 0, fmt.Errorf("pebble: load read state %d/%d: %w", k.User, k.Channel, err)
	}
	defer closer.Close()
	stamp, s, err := decodePebbleValue(v)
	if err != nil {
		return cache.State{}, 0, fmt.Errorf("pebble: load read state %d/%d: %w", k.User, k.Channel, err)
	}
	return s, stamp, nil
}

// LoadUser returns the newest records of user's read states, in the
// order of their keys (channel ids as unsigned big-endian: negative ids
// last), at most limit of them.
func (p *Store) LoadUser(ctx context.Context, user int64, limit int) ([]persist.Record, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("pebble: load the read states of user %d: %w", user, err)
	}
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.db == nil {
		return nil, fmt.Errorf("pebble: load the read states of user %d: %w", user, pebble.ErrClosed)
	}
	var lower [8]byte
	binary.BigEndian.PutUint64(lower[:], uint64(user))
	opts := &pebble.IterOptions{LowerBound: lower[:]}
	if uint64(user) != math.MaxUint64 {
		var upper [8]byte
		binary.BigEndian.PutUint64(upper[:], uint64(user)+1)
		opts.UpperBound = upper[:]
	}
	it, err := p.db.NewIter(opts)
	if err != nil {
		return nil, fmt.Errorf("pebble: load the read states of user %d: %w", user, err)
	}
	bp, _ := p.scratch.Get().(*[]persist.Record)
	if bp == nil {
		bp = new([]persist.Record)
	}
	defer p.scratch.Put(bp)
	recs := (*bp)[:0]
	for ok := it.First(); ok && len(recs) < limit; ok = it.Next() {
		k := it.Key()
		if len(k) != pebbleKeyLen {
			continue // not a read state's key
		}
		stamp, st, derr := decodePebbleValue(it.Value())
		if derr != nil {
			err = derr
			break
		}
		recs = append(recs, persist.Record{
			Key:   cache.Key{User: user, Channel: int64(binary.BigEndian.Uint64(k[8:16]))},
			State: st, Stamp: stamp,
		})
	}
	if cerr := it.Close(); err == nil {
		err = cerr
	}
	if cap(recs) <= maxScratch {
		*bp = recs
	}
	if err != nil {
		return nil, fmt.Errorf("pebble: load the read states of user %d: %w", user, err)
	}
	if len(recs) == 0 {
		return nil, nil
	}
	return slices.Clone(recs), nil
}

// maxScratch bounds the records a pooled LoadUser buffer keeps: a page of
// the default size, so a rare larger one is not held.
const maxScratch = persist.DefaultUserPage

// Write stores recs in one atomic batch and returns once it is fsynced.
// Records may come in any order and may repeat keys; per key the highest
// Stamp wins, now and against everything written before or after. Writing
// the same records again is harmless. An empty recs is a no-op.
func (p *Store) Write(ctx context.Context, recs []persist.Record) error {
	if len(recs) == 0 {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("pebble: write %d read states: %w", len(recs), err)
	}
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.db == nil {
		return fmt.Errorf("pebble: write %d read states: %w", len(recs), pebble.ErrClosed)
	}
	b := p.db.NewBatch()
	defer b.Close()
	var key [pebbleKeyLen]byte
	var val [pebbleValueLen]byte
	for i := range recs {
		r := &recs[i]
		putPebbleKey(key[:], r.Key)
		putPebbleValue(val[:], r.Stamp, r.State)
		// Merge copies key and value into the batch.
		if err := b.Merge(key[:], val[:], nil); err != nil {
			return fmt.Errorf("pebble: write read state %d/%d: %w", r.Key.User, r.Key.Channel, err)
		}
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return fmt.Errorf("pebble: commit %d read states: %w", len(recs), err)
	}
	return nil
}

// Close flushes the memtable (so the next open need not replay the WAL) and
// closes the store. It waits for Loads and Writes in progress; a second Close
// returns nil.
func (p *Store) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.db == nil {
		return nil
	}
	db := p.db
	p.db = nil
	flushErr := db.Flush()
	if flushErr != nil {
		// Nothing is lost: every acknowledged write is in the synced WAL,
		// which the next open replays.
		flushErr = fmt.Errorf("pebble: flush on close: %w", flushErr)
	}
	if err := db.Close(); err != nil {
		return errors.Join(flushErr, fmt.Errorf("pebble: close: %w", err))
	}
	return flushErr
}

// createPebbleDir creates dir and fsyncs its parent. Pebble syncs the files
// and the directory it writes into, but not the parent of a directory it
// creates, so a power loss soon after the first open could lose the
// directory entry and with it every acknowledged write.
func createPebbleDir(fs vfs.FS, dir string) error {
	if err := fs.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	parent, err := fs.OpenDir(fs.PathDir(dir))
	if err != nil {
		return err
	}
	err = parent.Sync()
	if cerr := parent.Close(); err == nil {
		err = cerr
	}
	return err
}

func putPebbleKey(dst []byte, k cache.Key) {
	binary.BigEndian.PutUint64(dst[0:8], uint64(k.User))
	binary.BigEndian.PutUint64(dst[8:16], uint64(k.Channel))
}

func putPebbleValue(dst []byte, stamp int64, s cache.State) {
	dst[0] = pebbleValueVersion
	binary.BigEndian.PutUint64(dst[1:9], uint64(stamp))
	binary.BigEndian.PutUint32(dst[9:13], uint32(s.MentionCount))
	binary.BigEndian.PutUint64(dst[13:21], uint64(s.LastMessageID))
}

func decodePebbleValue(v []byte) (stamp int64, s cache.State, err error) {
	if len(v) != pebbleValueLen || v[0] != pebbleValueVersion {
		return 0, cache.State{}, fmt.Errorf("bad read state value: %d bytes, want %d with version %d", len(v), pebbleValueLen, pebbleValueVersion)
	}
	stamp = int64(binary.BigEndian.Uint64(v[1:9]))
	s.MentionCount = int32(binary.BigEndian.Uint32(v[9:13]))
	s.LastMessageID = int64(binary.BigEndian.Uint64(v[13:21]))
	return stamp, s, nil
}

// pebbleLWWMerger keeps the one operand that wins last-writer-wins: the
// highest stamp, then the greater encoded value. That is a maximum under a
// total order, so it is associative and commutative as pebble requires, and
// a partial merge during compaction (includesBase false) is as good as a
// full one.
type pebbleLWWMerger struct {
	best  [pebbleValueLen]byte
	stamp int64
	pool  *sync.Pool // where Close returns it; nil: not recycled
}

// pebbleMergers recycles mergers. A compaction merges once per key, and a
// new merger per key was 98% of everything the server allocated under load
// (scripts/profile.sh). Finish hands the merger back as the Closer of its
// result, so it is reused only once pebble is done with those bytes.
type pebbleMergers struct{ pool sync.Pool }

func (p *pebbleMergers) newMerger(key, value []byte) (pebble.ValueMerger, error) {
	m, _ := p.pool.Get().(*pebbleLWWMerger)
	if m == nil {
		m = &pebbleLWWMerger{}
	}
	if err := m.init(value); err != nil {
		p.pool.Put(m)
		return nil, err
	}
	m.pool = &p.pool
	return m, nil
}

func newPebbleLWWMerger(_, value []byte) (pebble.ValueMerger, error) {
	m := &pebbleLWWMerger{}
	if err := m.init(value); err != nil {
		return nil, err
	}
	return m, nil
}

func (m *pebbleLWWMerger) init(value []byte) error {
	stamp, _, err := decodePebbleValue(value)
	if err != nil {
		return err
	}
	// The caller keeps ownership of value: copy it.
	copy(m.best[:], value)
	m.stamp = stamp
	return nil
}

func (m *pebbleLWWMerger) merge(value []byte) error {
	stamp, _, err := decodePebbleValue(value)
	if err != nil {
		return err
	}
	if stamp > m.stamp || (stamp == m.stamp && bytes.Compare(value, m.best[:]) > 0) {
		copy(m.best[:], value)
		m.stamp = stamp
	}
	return nil
}

// MergeNewer implements pebble.ValueMerger. Arrival order does not matter.
func (m *pebbleLWWMerger) MergeNewer(value []byte) error { return m.merge(value) }

// MergeOlder implements pebble.ValueMerger. Arrival order does not matter.
func (m *pebbleLWWMerger) MergeOlder(value []byte) error { return m.merge(value) }

// Finish implements pebble.ValueMerger.
func (m *pebbleLWWMerger) Finish(bool) ([]byte, io.Closer, error) {
	if m.pool == nil {
		return m.best[:], nil, nil
	}
	return m.best[:], m, nil
}

// Close returns a recycled merger to its pool: pebble calls it when it no
// longer reads the slice Finish returned.
func (m *pebbleLWWMerger) Close() error {
	if p := m.pool; p != nil {
		m.pool = nil
		p.Put(m)
	}
	return nil
}

// pebbleSlogLogger routes pebble's printf-style messages into slog. Pebble
// logs routine events through Infof (WAL replay, cleanup progress): those go
// to DEBUG, except the ones that report a problem, which go to WARN.
type pebbleSlogLogger struct{ l *slog.Logger }

func (pl pebbleSlogLogger) Infof(format string, args ...any) {
	msg := strings.TrimSpace(fmt.Sprintf(format, args...))
	level := slog.LevelDebug
	lower := strings.ToLower(msg)
	for _, w := range []string{"error", "fail", "corrupt", "falling behind"} {
		if strings.Contains(lower, w) {
			level = slog.LevelWarn
			break
		}
	}
	pl.l.Log(context.Background(), level, msg)
}

// Fatalf reports a broken pebble invariant. Pebble requires Fatalf not to
// return (its default calls os.Exit); a panic keeps the stack trace.
func (pl pebbleSlogLogger) Fatalf(format string, args ...any) {
	msg := strings.TrimSpace(fmt.Sprintf(format, args...))
	pl.l.Error(msg, "fatal", true)
	panic("pebble: fatal: " + msg)
}

func pebbleEventListener(l *slog.Logger) *pebble.EventListener {
	return &pebble.EventListener{
		BackgroundError: func(err error) {
			l.Error("pebble background error", "err", err)
		},
		DiskSlow: func(info pebble.DiskSlowInfo) {
			l.Warn("pebble disk slow", "info", info.String())
		},
		WriteStallBegin: func(info pebble.WriteStallBeginInfo) {
			l.Warn("pebble write stall", "reason", info.Reason)
		},
		WriteStallEnd: func() {
			l.Info("pebble write stall ended")
		},
	}
}
