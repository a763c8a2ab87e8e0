// Package journal is the local write-ahead log of acknowledged changes: an
// append-only log, in a directory of its own, of (user, channel,
// mention_count, last_message_id, stamp) records, so that a crash (kill -9,
// power loss) or an unreachable database loses at most the changes of the
// last fsync interval, as Redis's appendonly with appendfsync everysec.
//
// # What it promises
//
//   - Append copies a record into memory and never waits for the disk
//     (unless more than maxBuffered bytes wait to be written: then it waits
//     for the writer, as Redis delays writes behind a slow disk). It
//     allocates nothing once the buffers have grown to the load.
//   - The journal's goroutine writes what was appended every writeEvery
//     and fsyncs it at the policy's interval, so a process crash loses at
//     most writeEvery of changes and a power loss at most the interval.
//     Under the always policy, Commit returns only once every record
//     appended before it is fsynced (group commit: one fsync for all the
//     records of concurrent callers).
//   - Records are replayed at Open, in the order they were appended, before
//     any new record is written. A record is a full state with its stamp,
//     so replaying a record twice, or one that the store already holds a
//     newer state of, changes nothing (the store keeps the highest stamp).
//   - Every record carries a CRC-32C. A torn tail (a crash or a power loss
//     during a write: a partial record, or records that fail their
//     checksum up to the end of the newest segment) is cut at the last good
//     record with a warning. A bad record anywhere else is corruption: Open
//     fails with the file and offset, unless Options.Repair, which skips the
//     bad records (losing them) with a warning each.
//   - The log is cut in segments. Rotate closes the active one; Release
//     deletes closed ones once the caller has made sure that every change
//     they hold is written to the store or recorded again after them (the
//     engine does both: see persist.Engine). So the journal stays bounded by
//     the unwritten backlog, not by the history.
//
// # Why a format of its own
//
// A record is 40 bytes of fixed size, and the only reads are one sequential
// replay at start: a torn tail is found by length and checksum alone, and
// the append path is a copy under a mutex. Pebble's WAL (record.LogWriter)
// would bring the same checksummed, block-framed log, but its framing and
// flush loop cost more per record than the copy, and the log would still
// need segment rotation and release of its own; an LSM as the journal (a
// second Pebble, or the store itself with Cassandra) would pay a memtable
// insert per change. BENCHMARKS.md has the measurement.
//
// # On disk
//
// Segments are files named by a hexadecimal sequence number,
// 0000000000000001.journal, .... Each starts with an 8-byte header
// (the magic "RSJRNL" and a format version) followed by records:
//
//	crc32c uint32 | user int64 | channel int64 | last_message_id int64 |
//	mention_count int32 | stamp int64            (little-endian, 40 bytes)
//
// The checksum covers the 36 bytes after it. A LOCK file, held with flock
// while the journal is open, keeps two processes off one directory.
package journal

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/readstates/readstates/cache"
	"github.com/readstates/readstates/internal/latency"
)

// RecordLen is the size of one record on disk.
const RecordLen = recordLen

const (
	headerLen = 8
	recordLen = 40
	magic     = "RSJRNL\x00\x01" // the last byte is the format version
	suffix    = ".journal"

	// writeEvery is how often appended records are handed to the kernel:
	// what a process crash can lose. A write per interval rather than per
	// record keeps system calls off the commands' path.
	writeEvery = 10 * time.Millisecond
	// initialBuffer is the first size of each of the two buffers.
	initialBuffer = 64 << 10
	// maxBuffered is how many bytes may wait to be written before Append
	// waits for the writer (a disk that stalls for long).
	maxBuffered = 64 << 20
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Policy is when appended records are fsynced.
type Policy struct {
	// Always: Commit fsyncs before it returns (Redis's appendfsync always).
	Always bool
	// Every is the longest time between fsyncs of written records (Redis's
	// everysec is 1s). Zero (and not Always): never fsync, the kernel
	// writes when it will (appendfsync no); a process crash still loses at
	// most writeEvery.
	Every time.Duration
}

// ParsePolicy reads a policy as the --journal-fsync flag gives it: always,
// no, everysec, or a positive duration.
func ParsePolicy(s string) (Policy, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "always":
		return Policy{Always: true}, nil
	case "no":
		return Policy{}, nil
	case "everysec":
		return Policy{Every: time.Second}, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return Policy{}, fmt.Errorf("%q is not always, no, everysec or a positive duration", s)
	}
	return Policy{Every: d}, nil
}

func (p Policy) String() string {
	switch {
	case p.Always:
		return "always"
	case p.Every == 0:
		return "no"
	}
	return p.Every.String()
}

// Options configure a Journal.
type Options struct {
	Dir    string
	Policy Policy
	// Repair skips corrupt records found in the middle of the journal
	// instead of failing Open.
	Repair bool
	Logger *slog.Logger
}

// Replayed describes what Open read back.
type Replayed struct {
	Segments, Records int
	// TornBytes were cut from the tail of the newest segment; Skipped
	// records were corrupt and skipped under Options.Repair.
	TornBytes int64
	Skipped   int
}

// Mark names the segments closed by a Rotate: Release(m) deletes them and
// every older one.
type Mark uint64

type segment struct {
	seq  uint64
	size int64
}

// Journal is an open journal. Its methods are safe for concurrent use.
//
// Lock order: ioMu, then mu. Append takes only mu, so the commands never
// wait behind a write or an fsync (except when maxBuffered is reached).
type Journal struct {
	dir    string
	policy Policy
	log    *slog.Logger
	lock   *os.File

	mu struct {
		sync.Mutex
		buf      []byte // appended, not yet handed to the writer
		appended uint64 // records appended since Open
		room     *sync.Cond
	}

	// appendWait is the longest an Append waited for mu (under its
	// shard lock) in the window TakeAppendWait closes.
	appendWait latency.Peak

	ioMu sync.Mutex // guards io
	io   struct {
		spare    []byte // the other buffer, swapped with mu.buf
		retry    []byte // records whose write failed: written first next time
		f        *os.File
		seq      uint64
		size     int64
		written  uint64 // records written to the kernel
		synced   uint64 // records fsynced
		lastSync time.Time
		closed   []segment // oldest first
		closedAt bool      // Close was called
		done     bool      // Close has written the last records
		// fsyncFailed is set for good by a failed fsync: the kernel may
		// have dropped the pages it could not write, and a later fsync
		// that succeeds would not bring them back (PostgreSQL stops on it
		// for the same reason). Changes are refused until a restart.
		fsyncFailed error
	}

	failing  atomic.Pointer[error] // the last write error, until a write succeeds
	bytes    atomic.Int64          // on disk, all segments
	segments atomic.Int64
	syncs    atomic.Uint64

	stop chan struct{}
	done chan struct{}
}

// Open opens the journal in opts.Dir (creating it), replays every record it
// holds through replay, in order, and starts a new segment and the
// goroutine that writes it. Close stops it.
func Open(opts Options, replay func(cache.Snapshot)) (*Journal, Replayed, error) {
	var rp Replayed
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	j := &Journal{
		dir:    opts.Dir,
		policy: opts.Policy,
		log:    opts.Logger.With("component", "journal"),
		stop:   make(chan struct{}),
		done:   make(chan struct{}),
	}
	j.mu.room = sync.NewCond(&j.mu)
	if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
		return nil, rp, fmt.Errorf("journal: %w", err)
	}
	lock, err := lockDir(opts.Dir)
	if err != nil {
		return nil, rp, fmt.Errorf("journal: %w", err)
	}
	j.lock = lock
	segs, err := listSegments(opts.Dir)
	if err != nil {
		j.unlock()
		return nil, rp, fmt.Errorf("journal: %w", err)
	}
	for i, seq := range segs {
		size, err := j.replaySegment(seq, i == len(segs)-1, opts.Repair, replay, &rp)
		if err != nil {
			j.unlock()
			return nil, rp, err
		}
		if size < 0 {
			continue // removed
		}
		j.io.closed = append(j.io.closed, segment{seq: seq, size: size})
		j.bytes.Add(size)
	}
	rp.Segments = len(segs)
	next := uint64(1)
	if len(segs) > 0 {
		next = segs[len(segs)-1] + 1
	}
	if err := j.openSegment(next); err != nil {
		j.unlock()
		return nil, rp, err
	}
	j.segments.Store(int64(len(j.io.closed) + 1))
	j.io.lastSync = time.Now()
	go j.run()
	return j, rp, nil
}

func (j *Journal) unlock() {
	if j.lock != nil {
		j.lock.Close() // closing the descriptor releases the flock
		j.lock = nil
	}
}

func segmentName(seq uint64) string { return fmt.Sprintf("%016x%s", seq, suffix) }

// listSegments returns the sequence numbers of the segments in dir, in
// order.
func listSegments(dir string) ([]uint64, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var seqs []uint64
	for _, e := range ents {
		name, ok := strings.CutSuffix(e.Name(), suffix)
		if !ok || e.IsDir() {
			continue
		}
		seq, err := strconv.ParseUint(name, 16, 64)
		if err != nil || len(name) != 16 {
			continue // not ours
		}
		seqs = append(seqs, seq)
	}
	slices.Sort(seqs)
	return seqs, nil
}

// replaySegment reads one segment and returns its size once any torn tail
// is cut, or -1 if it removed the segment. last says whether it is the newest segment, the only one a crash
// can leave torn.
func (j *Journal) replaySegment(seq uint64, last, repair bool, replay func(cache.Snapshot), rp *Replayed) (int64, error) {
	path := filepath.Join(j.dir, segmentName(seq))
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return 0, fmt.Errorf("journal: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return 0, fmt.Errorf("journal: %w", err)
	}
	size := fi.Size()
	r := bufio.NewReaderSize(f, 1<<20)
	var hdr [headerLen]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil || string(hdr[:]) != magic {
		switch {
		case last && size <= headerLen:
			// Created, then the crash came before its header was whole:
			// it holds nothing. Removed, so that it is not taken for a
			// damaged older segment once a newer one exists.
			j.log.Warn("journal segment with a torn header (a crash as it was created): removed", "file", path)
			rp.TornBytes += size
			if err := os.Remove(path); err != nil {
				return 0, fmt.Errorf("journal: %w", err)
			}
			return -1, syncDir(j.dir)
		case !repair:
			return 0, fmt.Errorf("journal: %s: bad header at offset 0 (not a journal segment of this version); start with --journal-repair to skip it", path)
		}
		j.log.Warn("skipping a journal segment with a bad header", "file", path)
		rp.Skipped += int((size - headerLen) / recordLen)
		return size, nil
	}
	// badFrom is the start of a run of bad records, -1 outside one. A run
	// that reaches the end of the newest segment is a torn tail; any other
	// is corruption.
	badFrom := int64(-1)
	var rec [recordLen]byte
	off := int64(headerLen)
	for ; ; off += recordLen {
		_, err := io.ReadFull(r, rec[:])
		if err == io.EOF {
			break
		}
		if err == io.ErrUnexpectedEOF {
			if badFrom < 0 {
				badFrom = off
			}
			break
		}
		if err != nil {
			return 0, fmt.Errorf("journal: read %s: %w", path, err)
		}
		s, ok := decode(rec[:])
		if !ok {
			if badFrom < 0 {
				badFrom = off
			}
			continue
		}
		if badFrom >= 0 {
			if err := j.corrupt(path, badFrom, off, repair, rp); err != nil {
				return 0, err
			}
			badFrom = -1
		}
		replay(s)
		rp.Records++
	}
	switch {
	case badFrom < 0:
		return size, nil
	case last:
		return j.cut(f, path, badFrom, size, rp)
	}
	if err := j.corrupt(path, badFrom, size, repair, rp); err != nil {
		return 0, err
	}
	return size, nil
}

// corrupt reports the bad records in [from, to) of a segment: an error, or
// under repair a warning and a count of the records skipped.
func (j *Journal) corrupt(path string, from, to int64, repair bool, rp *Replayed) error {
	if !repair {
		return fmt.Errorf("journal: %s: corrupt record at offset %d: the journal is damaged; start with --journal-repair to skip the corrupt records (they are lost)", path, from)
	}
	n := int((to - from + recordLen - 1) / recordLen)
	j.log.Warn("skipping corrupt journal records (--journal-repair)", "file", path, "offset", from, "records", n)
	rp.Skipped += n
	return nil
}

// cut truncates a torn tail at off.
func (j *Journal) cut(f *os.File, path string, off, size int64, rp *Replayed) (int64, error) {
	j.log.Warn("journal tail torn (a crash during a write): cut at the last whole record",
		"file", path, "offset", off, "bytes_cut", size-off)
	if err := f.Truncate(off); err != nil {
		return 0, fmt.Errorf("journal: cut torn tail of %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		return 0, fmt.Errorf("journal: cut torn tail of %s: %w", path, err)
	}
	rp.TornBytes += size - off
	return off, nil
}

// openSegment creates segment seq, writes its header and makes both
// durable. REQUIRES: ioMu held, or Open.
func (j *Journal) openSegment(seq uint64) error {
	path := filepath.Join(j.dir, segmentName(seq))
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	if _, err := f.WriteString(magic); err == nil {
		err = f.Sync()
	}
	if err == nil {
		err = syncDir(j.dir)
	}
	if err != nil {
		f.Close()
		os.Remove(path)
		return fmt.Errorf("journal: create %s: %w", path, err)
	}
	j.io.f, j.io.seq, j.io.size = f, seq, headerLen
	j.bytes.Add(headerLen)
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// encode appends s to dst. It encodes in place: a record on the stack
// would escape through the checksum's indirect call. The buffer doubles
// when full (append grows large slices by a quarter), so a load settles
// on its buffers after a few growths.
func encode(dst []byte, s cache.Snapshot) []byte {
	n := len(dst)
	if cap(dst)-n < recordLen {
		grown := make([]byte, n, max(2*cap(dst), initialBuffer))
		copy(grown, dst)
		dst = grown
	}
	dst = dst[:n+recordLen]
	b := dst[n:]
	binary.LittleEndian.PutUint64(b[4:], uint64(s.Key.User))
	binary.LittleEndian.PutUint64(b[12:], uint64(s.Key.Channel))
	binary.LittleEndian.PutUint64(b[20:], uint64(s.State.LastMessageID))
	binary.LittleEndian.PutUint32(b[28:], uint32(s.State.MentionCount))
	binary.LittleEndian.PutUint64(b[32:], uint64(s.Stamp))
	binary.LittleEndian.PutUint32(b[0:], crc32.Checksum(b[4:], castagnoli))
	return dst
}

func decode(b []byte) (cache.Snapshot, bool) {
	if binary.LittleEndian.Uint32(b[0:]) != crc32.Checksum(b[4:recordLen], castagnoli) {
		return cache.Snapshot{}, false
	}
	return cache.Snapshot{
		Key: cache.Key{
			User:    int64(binary.LittleEndian.Uint64(b[4:])),
			Channel: int64(binary.LittleEndian.Uint64(b[12:])),
		},
		State: cache.State{
			LastMessageID: int64(binary.LittleEndian.Uint64(b[20:])),
			MentionCount:  int32(binary.LittleEndian.Uint32(b[28:])),
		},
		Stamp: int64(binary.LittleEndian.Uint64(b[32:])),
	}, true
}

// Append records s. It is called for every change, under the cache's
// shard lock: it only copies.
func (j *Journal) Append(s cache.Snapshot) {
	if !j.mu.TryLock() {
		start := time.Now()
		j.mu.Lock()
		j.appendWait.Record(time.Since(start))
	}
	for len(j.mu.buf) >= maxBuffered {
		j.mu.room.Wait()
	}
	j.mu.buf = encode(j.mu.buf, s)
	j.mu.appended++
	j.mu.Unlock()
}

// Commit makes the records appended before it as durable as the policy
// promises before a reply: under always it writes and fsyncs them (with
// those of concurrent callers); otherwise it returns at once, the
// journal's goroutine writing them within writeEvery.
func (j *Journal) Commit() error {
	if !j.policy.Always {
		return nil
	}
	j.mu.Lock()
	target := j.mu.appended
	j.mu.Unlock()
	j.ioMu.Lock()
	defer j.ioMu.Unlock()
	if j.io.synced >= target {
		return nil // a concurrent Commit's fsync covered it
	}
	return j.writeLocked(true)
}

// Err returns the error of the last write or fsync if it failed and no
// later one has succeeded: while it is not nil, changes recorded now may
// not survive a crash.
func (j *Journal) Err() error {
	if p := j.failing.Load(); p != nil {
		return *p
	}
	return nil
}

// run writes appended records every writeEvery and fsyncs them per the
// policy, until Close.
func (j *Journal) run() {
	defer close(j.done)
	t := time.NewTicker(writeEvery)
	defer t.Stop()
	for {
		select {
		case <-j.stop:
			return
		case <-t.C:
		}
		j.ioMu.Lock()
		due := j.policy.Every > 0 && time.Since(j.io.lastSync) >= j.policy.Every
		if err := j.writeLocked(due); err != nil {
			j.log.Error("journal write failed; changes are refused until it succeeds", "err", err)
		}
		j.ioMu.Unlock()
	}
}

// writeLocked hands every appended record to the kernel and, if sync,
// fsyncs the segment. A failed write is retried by the next call: the
// records stay buffered. REQUIRES: ioMu held.
func (j *Journal) writeLocked(sync bool) error {
	if j.io.done {
		return errors.New("journal: closed")
	}
	if j.io.fsyncFailed != nil {
		return j.io.fsyncFailed
	}
	if j.io.f == nil {
		// A Rotate could not create the next segment: try again.
		if err := j.openSegment(j.io.seq + 1); err != nil {
			return j.fail(err)
		}
	}
	if len(j.io.retry) > 0 {
		if err := j.writeOut(j.io.retry); err != nil {
			return err
		}
		j.io.spare, j.io.retry = j.io.retry[:0], nil
	}
	j.mu.Lock()
	buf := j.mu.buf
	j.mu.buf = j.io.spare[:0]
	appended := j.mu.appended
	j.mu.room.Broadcast()
	j.mu.Unlock()
	if len(buf) > 0 {
		if err := j.writeOut(buf); err != nil {
			// Written first by the next call, before what is appended
			// meanwhile, so the order holds.
			j.io.retry, j.io.spare = buf, nil
			return err
		}
	}
	j.io.spare = buf[:0]
	j.io.written = appended
	if sync && j.io.synced < j.io.written {
		if err := j.io.f.Sync(); err != nil {
			j.io.fsyncFailed = fmt.Errorf("journal: fsync %s failed: changes are refused until a restart: %w", segmentName(j.io.seq), err)
			return j.fail(j.io.fsyncFailed)
		}
		j.io.synced = j.io.written
		j.io.lastSync = time.Now()
		j.syncs.Add(1)
	} else if sync {
		j.io.lastSync = time.Now()
	}
	if j.failing.Load() != nil {
		j.failing.Store(nil)
		j.log.Info("journal writes recovered")
	}
	return nil
}

// writeOut writes b at the end of the active segment. A failed write
// leaves the file as it was (cut back), so no torn record stays in the
// middle. REQUIRES: ioMu held.
func (j *Journal) writeOut(b []byte) error {
	if _, err := j.io.f.Write(b); err != nil {
		_ = j.io.f.Truncate(j.io.size)
		return j.fail(fmt.Errorf("journal: write %s: %w", segmentName(j.io.seq), err))
	}
	j.io.size += int64(len(b))
	j.bytes.Add(int64(len(b)))
	return nil
}

func (j *Journal) fail(err error) error {
	j.failing.Store(&err)
	return err
}

// Rotate writes and fsyncs what was appended, closes the active segment and
// starts the next. Every record appended before Rotate is in a segment
// that Release(m) deletes.
func (j *Journal) Rotate() (Mark, error) {
	j.ioMu.Lock()
	defer j.ioMu.Unlock()
	if err := j.writeLocked(true); err != nil {
		return 0, err
	}
	// Everything is written and fsynced: a failed close loses nothing,
	// and the next segment is opened all the same.
	cerr := j.io.f.Close()
	j.io.closed = append(j.io.closed, segment{seq: j.io.seq, size: j.io.size})
	m := Mark(j.io.seq)
	j.io.f = nil
	if cerr != nil {
		j.log.Warn("journal: close of a full segment failed (it was fsynced)", "file", segmentName(j.io.seq), "err", cerr)
	}
	if err := j.openSegment(j.io.seq + 1); err != nil {
		return 0, j.fail(err)
	}
	j.segments.Store(int64(len(j.io.closed) + 1))
	return m, nil
}

// ClosedBytes is the size of the closed segments up to m.
func (j *Journal) ClosedBytes(m Mark) int64 {
	j.ioMu.Lock()
	defer j.ioMu.Unlock()
	var n int64
	for _, s := range j.io.closed {
		if s.seq <= uint64(m) {
			n += s.size
		}
	}
	return n
}

// Release deletes the closed segments up to m: the caller has made sure
// that every change they hold is in the store, or recorded again after
// them and committed (fsynced) with Sync.
func (j *Journal) Release(m Mark) error {
	j.ioMu.Lock()
	defer j.ioMu.Unlock()
	kept := j.io.closed[:0]
	var errs []error
	removed := false
	for _, s := range j.io.closed {
		if s.seq > uint64(m) {
			kept = append(kept, s)
			continue
		}
		if err := os.Remove(filepath.Join(j.dir, segmentName(s.seq))); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
			kept = append(kept, s)
			continue
		}
		j.bytes.Add(-s.size)
		removed = true
	}
	j.io.closed = kept
	j.segments.Store(int64(len(kept) + 1))
	if removed {
		if err := syncDir(j.dir); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("journal: release: %w", err)
	}
	return nil
}

// Sync writes and fsyncs every record appended so far, whatever the
// policy.
func (j *Journal) Sync() error {
	j.ioMu.Lock()
	defer j.ioMu.Unlock()
	return j.writeLocked(true)
}

// Stats are the journal's figures.
type Stats struct {
	Bytes    int64 // on disk, every segment
	Segments int64
	Appended uint64 // records appended since Open
	Fsyncs   uint64
	Policy   string
	Failing  bool
}

// TakeAppendWait returns the longest an Append waited for another
// Append or the writer since the last call.
func (j *Journal) TakeAppendWait() time.Duration { return j.appendWait.Take() }

// Stats returns the current figures.
func (j *Journal) Stats() Stats {
	j.mu.Lock()
	appended := j.mu.appended
	j.mu.Unlock()
	return Stats{
		Bytes: j.bytes.Load(), Segments: j.segments.Load(), Appended: appended,
		Fsyncs: j.syncs.Load(), Policy: j.policy.String(), Failing: j.failing.Load() != nil,
	}
}

// Close writes and fsyncs what was appended, stops the journal's goroutine
// and closes the files. The segments stay for the next Open to replay,
// unless the caller released them. No Append may follow.
func (j *Journal) Close() error {
	j.ioMu.Lock()
	if j.io.closedAt {
		j.ioMu.Unlock()
		return nil
	}
	j.io.closedAt = true
	j.ioMu.Unlock()
	close(j.stop)
	<-j.done
	j.ioMu.Lock()
	defer j.ioMu.Unlock()
	err := j.writeLocked(true) // opens a segment if a Rotate could not
	if j.io.f != nil {
		if cerr := j.io.f.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("journal: close: %w", cerr)
		}
	}
	j.io.f = nil
	j.io.done = true
	j.unlock()
	return err
}
