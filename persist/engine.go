package persist

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/readstates/readstates/cache"
	"github.com/readstates/readstates/persist/journal"
)

// EngineConfig configures an Engine. Zero values take the documented
// defaults.
type EngineConfig struct {
	Store Store
	// CacheEntries is the capacity of the cache in read states.
	CacheEntries int
	// FlushInterval bounds how long a change stays unwritten: a flush
	// starts every FlushInterval/2, so a change is handed to the writer
	// within FlushInterval while a flush takes less than half of it
	// (default 30s).
	FlushInterval time.Duration
	// MaxPending is how many handed-over, unwritten states the writer may
	// hold (default CacheEntries/4, at least 1024). Beyond it dirty
	// entries stay pinned in the cache, and when nothing can be evicted
	// new read states are refused with cache.ErrFull.
	MaxPending int
	// WriteBatch is the most records given to one Store.Write (default
	// 1024). A store that groups a write's records (Cassandra, one batch
	// per user) groups more of them in a larger one.
	WriteBatch int
	// WriteUsers, if positive, is the most users whose records one
	// Store.Write is given. With 1 and Writers requests in flight, a store
	// that writes a user in one request (Cassandra) gets one request per
	// Write: what waits stays in the queue, where a newer state of a key
	// replaces the older one and a user's waiting rows gather into one
	// request, rather than in writes that wait for each other.
	WriteUsers int
	// UserPage is the most read states a miss reads from its user's
	// partition, in one query, to fill the cache with the user's others
	// (default DefaultUserPage). A user with more has the rest read one at
	// a time, on demand.
	UserPage int
	// Writers is how many Store.Writes may run at once (default 1). More
	// keep a store with round trips (Cassandra) busy while a write waits
	// for its slowest part; each key is in at most one write at a time,
	// and stamps keep the newest state whatever order writes end in.
	Writers int
	// FullWait is how long an operation that needs room in a full cache
	// waits for the writer to make some before it fails with
	// cache.ErrFull (default 500ms). It absorbs bursts; in an outage it is
	// the delay before the refusal.
	FullWait time.Duration
	// ObserveLoad, if set, is called with the duration of every database
	// read made by read-through.
	ObserveLoad func(time.Duration)
	Logger      *slog.Logger
	// Now is the wall clock that write stamps follow (default time.Now);
	// stamps stay above every stamp loaded from the store whatever it
	// says.
	Now func() time.Time
	// LogicalStamps makes stamps follow no clock at all: each is one above
	// the highest issued, loaded or fenced (Engine.Fence) before. A
	// cluster node needs it: a node whose clock runs ahead must not be
	// able to stamp an old change above the newer one of the node that
	// took its users over. Now is then unused.
	LogicalStamps bool
	// Journal, if set, is the local journal every change is recorded in
	// before it is acknowledged. NewEngine opens it and queues what it
	// holds for writing (before any command can run), and Close releases
	// it once everything is written; see package journal.
	Journal *journal.Options
}

// Engine is the read-state service: the cache in front, the Store behind,
// and the write-behind between them.
//
// Invariants:
//   - An acknowledged change lives in exactly one of: a dirty cache entry,
//     the pending queue (handed over by eviction or flush, not yet
//     written), or the Store. Read-through looks in the same order (the
//     cache's loading placeholder makes the look atomic with respect to
//     eviction), so it never returns an older state than the newest.
//   - A pending record leaves the queue only after a Write that contained
//     it, or a newer record of its key, succeeded.
//   - Writes of a key carry strictly increasing stamps; the Store keeps the
//     highest, so retries and reordering cannot roll a state back.
//
// Lock order: a flight stripe's lock, then a cache shard lock, then mu;
// users.completeMu is taken under any of them and holds nothing else.
// Only tryFill holds a stripe's lock while it takes another lock (the
// shard lock of that stripe's users, completeMu, mu): a shard lock held
// long (its holder off the CPU) stalls only the misses that would wait
// for that shard anyway.
type Engine struct {
	watch         atomic.Pointer[func(user int64)] // see Watch
	store         Store
	table         *cache.Table
	logical       bool                             // EngineConfig.LogicalStamps
	serves        atomic.Pointer[func(int64) bool] // SetServes
	log           *slog.Logger
	flushInterval time.Duration
	maxPending    int
	writeBatch    int
	writeUsers    int
	writers       int
	fullWait      time.Duration
	observeLoad   func(time.Duration)
	now           func() time.Time
	closed        atomic.Bool

	mu struct {
		sync.Mutex
		pending map[cache.Key]pendingRecord
		queue   writeQueue // pending records not in a write, by user
		// written is closed and replaced whenever records leave pending.
		written chan struct{}
		// inflightSince[w] is the oldest enqueue time in writer w's write
		// under way (0: none).
		inflightSince []int64
		// writing counts the writes under way; busySince is when the
		// count last left 0 (for Stats.WriteBusy).
		writing   int
		busySince int64
	}
	wake chan struct{} // cap 1: the queue has work

	// stripes[i] holds the loads under way of the users of cache shard i.
	stripes []flightStripe
	users   userState // partition reads (user.go)

	journal *journal.Journal // nil: none
	// checkpointBuf is reused by checkpoint; only Run's goroutine uses it.
	checkpointBuf []cache.Snapshot

	stats struct {
		loads, loadErrors, writes, writeErrors, retries, flushCycles atomic.Uint64
		writeUsers                                                   atomic.Uint64
		writeBusy                                                    atomic.Int64 // ns
		stampsAhead                                                  atomic.Uint64
		lastFlush, lastStampWarn                                     atomic.Int64
	}
}

type pendingRecord struct {
	state cache.State
	stamp int64
	since int64 // when the key entered the queue, for the age figure
	// replayed: read back from the journal at start, or kept by Discard.
	// The store may hold a newer state of the key (written before the
	// crash, its journal record lost with the unwritten tail; written by
	// the cluster node that took the user over), so read-through compares
	// the two.
	replayed bool
	// gen is the low half of the user's generation (userState.gen) when
	// the cache last handed the key over, with the key in the cache. The
	// same at the ack, the key has not left the cache since: its write
	// ending takes nothing out of memory, and the user's partition read
	// stays whole (readWhole). Otherwise, or replayed, the ack bumps it.
	gen uint32
	// next is the user's next waiting key, while this one waits in the
	// queue (see writeQueue).
	next cache.Key
}

// flightStripe is the loads under way of the users of one cache shard.
type flightStripe struct {
	mu    sync.Mutex
	keys  map[cache.Key]*flight
	users map[int64]*userLoad
	_     [64]byte // apart from its neighbours' locks: every miss takes mu
}

// stripe returns the flight stripe of user.
func (e *Engine) stripe(user int64) *flightStripe { return &e.stripes[e.table.ShardOf(user)] }

// flight is one load of one key, shared by its concurrent misses.
type flight struct {
	done chan struct{}
	err  error
	// abandoned: Release or Discard dropped the key's user while the load
	// ran, so what it read may be older than what another node wrote
	// since; it fills nothing (see forgetComplete).
	abandoned atomic.Bool
}

// live reports whether f may still fill what it read.
func (f *flight) live() bool { return !f.abandoned.Load() }

// DefaultUserPage is EngineConfig.UserPage's default.
const DefaultUserPage = 1000

// maxLoadAttempts bounds how often one operation reloads its read state
// when the cache evicts it again before the operation gets to it.
const maxLoadAttempts = 8

// ErrClosed is returned by operations on a closed Engine.
var ErrClosed = errors.New("read state engine closed")

// ErrJournal is returned by a change refused because the journal cannot be
// written: it could not be made durable. Nothing was changed.
var ErrJournal = errors.New("journal cannot be written")

// ErrNotServed is the error of an operation that read through and found,
// once the database answered, that this engine no longer serves its user
// (SetServes): it changed nothing.
var ErrNotServed = errors.New("the user is no longer served here")

// NewEngine returns an engine with an empty cache. Run starts its
// write-behind; Close writes what is left.
func NewEngine(cfg EngineConfig) (*Engine, error) {
	if cfg.Store == nil {
		return nil, errors.New("persist: engine needs a store")
	}
	if cfg.FlushInterval <= 0 {
		cfg.FlushInterval = 30 * time.Second
	}
	if cfg.MaxPending <= 0 {
		cfg.MaxPending = max(cfg.CacheEntries/4, 1024)
	}
	if cfg.WriteBatch <= 0 {
		cfg.WriteBatch = 1024
	}
	if cfg.UserPage <= 0 {
		cfg.UserPage = DefaultUserPage
	}
	cfg.Writers = max(cfg.Writers, 1)
	if cfg.FullWait <= 0 {
		cfg.FullWait = 500 * time.Millisecond
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.LogicalStamps {
		cfg.Now = func() time.Time { return time.UnixMicro(0) }
	}
	e := &Engine{
		store:         cfg.Store,
		log:           cfg.Logger,
		flushInterval: cfg.FlushInterval,
		maxPending:    cfg.MaxPending,
		writeBatch:    cfg.WriteBatch,
		writeUsers:    cfg.WriteUsers,
		writers:       cfg.Writers,
		fullWait:      cfg.FullWait,
		observeLoad:   cfg.ObserveLoad,
		now:           cfg.Now,
		logical:       cfg.LogicalStamps,
		wake:          make(chan struct{}, 1),
	}
	e.mu.pending = make(map[cache.Key]pendingRecord)
	e.mu.inflightSince = make([]int64, cfg.Writers)
	e.mu.queue = newWriteQueue(e.mu.pending, cfg.MaxPending)
	e.mu.written = make(chan struct{})
	ccfg := cache.Config{Entries: cfg.CacheEntries, WriteBack: e.writeBack, Now: cfg.Now, OnChange: e.changed, OnRemove: e.removed}
	var maxStamp int64
	if cfg.Journal != nil {
		jopts := *cfg.Journal
		jopts.Logger = cmp.Or(jopts.Logger, cfg.Logger)
		j, rp, err := journal.Open(jopts, func(s cache.Snapshot) {
			e.replay(s)
			maxStamp = max(maxStamp, s.Stamp)
		})
		if err != nil {
			return nil, fmt.Errorf("persist: %w", err)
		}
		e.journal = j
		if rp.Records > 0 || rp.TornBytes > 0 || rp.Skipped > 0 {
			e.log.Info("journal replayed: its read states are queued for writing",
				"dir", jopts.Dir, "segments", rp.Segments, "records", rp.Records,
				"read_states", len(e.mu.pending), "torn_bytes", rp.TornBytes, "skipped_records", rp.Skipped)
		}
	}
	t, err := cache.New(ccfg)
	if err != nil {
		if e.journal != nil {
			e.journal.Close()
		}
		return nil, fmt.Errorf("persist: %w", err)
	}
	t.Observe(maxStamp)
	e.table = t
	// A partition read fills at most a quarter of a shard, where all of
	// the user's read states go.
	e.users.init(cfg.CacheEntries, cfg.UserPage, cfg.CacheEntries/t.Shards()/4)
	e.stripes = make([]flightStripe, t.Shards())
	for i := range e.stripes {
		e.stripes[i].keys = make(map[cache.Key]*flight)
		e.stripes[i].users = make(map[int64]*userLoad)
	}
	if len(e.mu.pending) > 0 {
		e.wake <- struct{}{} // the writers start on the replayed records
	}
	return e, nil
}

// replay queues a record read back from the journal, keeping the newest
// of each key. Read-through serves the queue before the store, so the
// replayed states are what commands see; the writers write them behind.
// The journal segments they came from are released by the first
// checkpoint, once they are written or recorded again.
func (e *Engine) replay(s cache.Snapshot) {
	old, queued := e.mu.pending[s.Key]
	if queued && old.stamp >= s.Stamp {
		return
	}
	rec := pendingRecord{state: s.State, stamp: s.Stamp, since: old.since, replayed: true, next: old.next}
	if queued {
		e.mu.pending[s.Key] = rec
		return
	}
	rec.since = time.Now().UnixNano()
	e.mu.pending[s.Key] = rec
	e.mu.queue.pushBack(s.Key)
}

// journalCheck refuses a change while the journal cannot be written.
func (e *Engine) journalCheck() error {
	if e.journal == nil {
		return nil
	}
	if err := e.journal.Err(); err != nil {
		return fmt.Errorf("%w: %v", ErrJournal, err)
	}
	return nil
}

// commit makes a change durable as the journal's policy promises before it
// is acknowledged (under always: fsynced). If that fails the change is
// made in memory and on its way to the store, but not durable: the caller
// gets ErrJournal rather than an acknowledgement the policy does not back,
// and the journal refuses the next changes.
func (e *Engine) commit() error {
	if e.journal == nil {
		return nil
	}
	if err := e.journal.Commit(); err != nil {
		return fmt.Errorf("%w: the change was made in memory but not made durable: %v", ErrJournal, err)
	}
	return nil
}

// writeBack is the cache's WriteBack hook: it queues s unless the queue is
// full, and a full queue still takes a newer state of a key it holds,
// which needs no room. It says TakenFull when the queue is full after the
// take. It runs under a shard lock, so it must not block.
func (e *Engine) writeBack(s cache.Snapshot) cache.Handoff {
	e.mu.Lock()
	old, queued := e.mu.pending[s.Key]
	if !queued && len(e.mu.pending) >= e.maxPending {
		e.mu.Unlock()
		return cache.Refused
	}
	// An eviction hands a dirty key over before it bumps the generation
	// (Config.OnRemove), so its ack does too.
	rec := pendingRecord{state: s.State, stamp: s.Stamp, since: old.since, next: old.next,
		gen: uint32(e.users.gen(s.Key.User).Load())}
	if queued {
		e.mu.pending[s.Key] = rec
	} else {
		rec.since = time.Now().UnixNano()
		e.mu.pending[s.Key] = rec
		e.mu.queue.pushBack(s.Key)
	}
	h := cache.Taken
	if len(e.mu.pending) >= e.maxPending {
		h = cache.TakenFull
	}
	e.mu.Unlock()
	select {
	case e.wake <- struct{}{}:
	default:
	}
	return h
}

// changed is the cache's OnChange hook, under the changed read state's
// shard lock: the change goes to the journal, then to the watcher.
func (e *Engine) changed(s cache.Snapshot) {
	if e.journal != nil {
		e.journal.Append(s)
	}
	if fn := e.watch.Load(); fn != nil {
		(*fn)(s.Key.User)
	}
}

// SetServes makes every operation that read through (waited for the
// database) check serves(user) before it changes or returns anything,
// and fail with ErrNotServed if not: a cluster node (cluster.Node.Serves)
// may have lost the user while the database answered.
func (e *Engine) SetServes(serves func(user int64) bool) { e.serves.Store(&serves) }

// Watch makes fn be called with the user_id of every read state that
// changes, under the read state's lock, so before anyone else can read
// the change (client-side caching's invalidations, commands.ChangeSource).
// fn must not block. A second Watch replaces the first.
func (e *Engine) Watch(fn func(user int64)) { e.watch.Store(&fn) }

// Incr adds delta to the mention count of k; see cache.Lookups.Incr.
func (e *Engine) Incr(ctx context.Context, k cache.Key, delta int64) (int32, error) {
	return e.incr(ctx, k, delta, engineView)
}

func (e *Engine) incr(ctx context.Context, k cache.Key, delta int64, v view) (int32, error) {
	if e.closed.Load() {
		return 0, ErrClosed
	}
	if err := e.journalCheck(); err != nil {
		return 0, err
	}
	for attempt := 0; ; attempt++ {
		n, err := e.table.Lookups(v.counts(attempt)).Incr(k, delta)
		if err != cache.ErrMiss {
			if err == nil {
				err = e.commit()
			}
			return n, err
		}
		if err := e.readThrough(ctx, k, attempt, v.wait()); err != nil {
			return 0, err
		}
	}
}

// Reset zeroes the mention count of k and, if setMsg, sets its last
// message id; it returns the count before.
func (e *Engine) Reset(ctx context.Context, k cache.Key, msgID int64, setMsg bool) (int32, error) {
	return e.reset(ctx, k, msgID, setMsg, engineView)
}

func (e *Engine) reset(ctx context.Context, k cache.Key, msgID int64, setMsg bool, v view) (int32, error) {
	if e.closed.Load() {
		return 0, ErrClosed
	}
	if err := e.journalCheck(); err != nil {
		return 0, err
	}
	for attempt := 0; ; attempt++ {
		n, err := e.table.Lookups(v.counts(attempt)).Reset(k, msgID, setMsg)
		if err != cache.ErrMiss {
			if err == nil {
				err = e.commit()
			}
			return n, err
		}
		if err := e.readThrough(ctx, k, attempt, v.wait()); err != nil {
			return 0, err
		}
	}
}

// Get returns the state of k.
func (e *Engine) Get(ctx context.Context, k cache.Key) (cache.State, error) {
	return e.get(ctx, k, engineView)
}

func (e *Engine) get(ctx context.Context, k cache.Key, v view) (cache.State, error) {
	if e.closed.Load() {
		return cache.State{}, ErrClosed
	}
	for attempt := 0; ; attempt++ {
		st, err := e.table.Lookups(v.counts(attempt)).Get(k)
		if err != cache.ErrMiss {
			return st, err
		}
		if err := e.readThrough(ctx, k, attempt, v.wait()); err != nil {
			return cache.State{}, err
		}
	}
}

// view is how an operation runs: whether it may wait for the Store,
// and whether its lookups of the cache count (Stats.Hits, Misses).
type view uint8

const (
	engineView view = iota // the Engine: waits, counts
	noWaitView             // NoWait: never waits, counts
	rerunView              // Rerun: waits, counts nothing
)

func (v view) wait() bool { return v != noWaitView }

// counts reports whether an operation's lookups of the cache at the given
// attempt count: only at its first, so that keyspace_hits and
// keyspace_misses count one lookup per read state it names, as Redis's
// do, however often a read-through looks again. A Rerun repeats a NoWait
// try that counted.
func (v view) counts(attempt int) bool { return attempt == 0 && v != rerunView }

// maxParallelLoads bounds the database reads one GetMany makes at once.
const maxParallelLoads = 16

// GetMany sets out[i] to the state of (user, channels[i]); out must be at
// least as long as channels. Cached states cost no allocation; missing ones
// are loaded concurrently, so a multi-get of cold states takes about one
// database round trip, not one per channel. On error, out is incomplete.
//
// NoWait's GetMany fails with ErrWouldBlock instead of reading through.
func (e *Engine) GetMany(ctx context.Context, user int64, channels []int64, out []cache.State) error {
	return e.getMany(ctx, user, channels, out, engineView)
}

func (e *Engine) getMany(ctx context.Context, user int64, channels []int64, out []cache.State, v view) error {
	if e.closed.Load() {
		return ErrClosed
	}
	var small [64]bool // the common case needs no allocation
	found := small[:0]
	if len(channels) > len(small) {
		found = make([]bool, len(channels))
	}
	found = found[:len(channels)]
	missing := e.table.Lookups(v.counts(0)).GetMany(user, channels, out, found)
	if missing == 0 {
		return nil
	}
	// Every channel was looked up once; what follows looks again.
	again := func() int {
		missing = e.table.Lookups(false).GetMany(user, channels, out, found)
		return missing
	}
	if !v.wait() {
		for i, ok := range found {
			if !ok && !e.tryFill(cache.Key{User: user, Channel: channels[i]}) {
				return ErrWouldBlock
			}
		}
		if again() > 0 {
			return ErrWouldBlock
		}
		return nil
	}
	// The first miss reads the user's partition, which usually brings
	// the others into the cache: look again before loading them.
	for i, ok := range found {
		if !ok {
			st, err := e.get(ctx, cache.Key{User: user, Channel: channels[i]}, rerunView)
			if err != nil {
				return err
			}
			out[i], found[i] = st, true
			missing--
			break
		}
	}
	if again() == 0 {
		return nil
	}
	var cold []int
	for i, ok := range found {
		if !ok {
			cold = append(cold, i)
		}
	}
	return inParallel(len(cold), func(j int) error {
		i := cold[j]
		st, err := e.get(ctx, cache.Key{User: user, Channel: channels[i]}, rerunView)
		out[i] = st
		return err
	})
}

// inParallel calls fn(0) ... fn(n-1), up to maxParallelLoads at once, and
// returns the first error any returned, after all have returned.
func inParallel(n int, fn func(i int) error) error {
	if n == 1 {
		return fn(0)
	}
	var (
		wg    sync.WaitGroup
		errMu sync.Mutex
		first error
		sem   = make(chan struct{}, maxParallelLoads)
	)
	for i := range n {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			if err := fn(i); err != nil {
				errMu.Lock()
				first = cmp.Or(first, err)
				errMu.Unlock()
			}
		}()
	}
	wg.Wait()
	return first
}

func (e *Engine) readThrough(ctx context.Context, k cache.Key, attempt int, wait bool) error {
	if !wait {
		if attempt == 0 && e.tryFill(k) {
			return nil
		}
		return ErrWouldBlock
	}
	if attempt >= maxLoadAttempts {
		return fmt.Errorf("read state %d/%d evicted %d times while being loaded: the cache is too small for the load", k.User, k.Channel, attempt)
	}
	if err := e.load(ctx, k); err != nil {
		return err
	}
	// The operation that waited runs only if this engine still serves the
	// user: a cluster node's lease may have ended meanwhile, and another
	// node serve the user (package cluster).
	if serves := e.serves.Load(); serves != nil && !(*serves)(k.User) {
		return ErrNotServed
	}
	return ctx.Err()
}

// load brings k into the cache. Concurrent loads of one key share one
// flight, so they make one database read.
func (e *Engine) load(ctx context.Context, k cache.Key) error {
	fs := e.stripe(k.User)
	fs.mu.Lock()
	if f, ok := fs.keys[k]; ok {
		fs.mu.Unlock()
		select {
		case <-f.done:
			return f.err
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	f := &flight{done: make(chan struct{})}
	fs.keys[k] = f
	fs.mu.Unlock()

	f.err = e.fetch(ctx, k, f)

	fs.mu.Lock()
	delete(fs.keys, k)
	fs.mu.Unlock()
	close(f.done)
	return f.err
}

// fetch reads k for the placeholder it reserves, under flight f, and
// fills it unless f was abandoned meanwhile: then the operation finds k
// missing and reads through again (and a cluster node that dropped the
// user answers that it no longer serves it).
func (e *Engine) fetch(ctx context.Context, k cache.Key, f *flight) error {
	marks := e.users.marks.Load() // before the placeholder: see readWhole
	reserved, err := e.reserve(ctx, k)
	if err != nil {
		return fmt.Errorf("cache read state %d/%d: %w", k.User, k.Channel, err)
	}
	if !reserved {
		return nil // cached meanwhile
	}
	e.mu.Lock()
	rec, queued := e.mu.pending[k]
	e.mu.Unlock()
	if queued && !rec.replayed {
		e.table.Fill(k, rec.state, rec.stamp, f.live)
		return nil
	}
	// k is reserved, and was not queued (or replayed, compared below):
	// the store holds this node's newest write of it, and a read that
	// begins from now on sees it, unless the user is dropped meanwhile
	// (Release, Discard: then another node may write it).
	checked := e.users.flightSeq.Load()
	var (
		st    cache.State
		stamp int64
	)
	switch read, complete, recent := e.readWhole(k.User, marks); {
	case !queued && complete:
		// k is in neither the cache (reserved) nor the queue, and the
		// user's partition is all in memory: k was never written.
		e.users.noQuery.Add(1)
		e.table.Fill(k, cache.State{}, 0, f.live)
		return nil
	case read, recent:
		// The user's page is in memory and k is not in it; or the
		// partition was read a moment ago and did not stay.
		st, stamp, err = e.loadKey(ctx, k)
	default:
		st, stamp, err = e.loadOne(ctx, k, checked)
	}
	if err != nil {
		e.table.Abort(k)
		return err
	}
	if queued && rec.stamp > stamp { // the replayed record is the newer one
		st, stamp = rec.state, rec.stamp
	}
	e.table.Fill(k, st, stamp, f.live)
	return nil
}

// loadOne reads k from the store for a reserved miss: from the read of
// its user's partition (made now, or under way for another miss of the
// user) if nothing of the user left memory since that read began, or if
// it began after the miss checked the queue (its seq is above checked)
// and the user was not dropped during it; otherwise, or if the partition
// was larger than a page and k not in it, by itself.
func (e *Engine) loadOne(ctx context.Context, k cache.Key, checked uint64) (cache.State, int64, error) {
	l, own := e.loadUser(ctx, k.User)
	switch {
	case l.err != nil && own:
		return cache.State{}, 0, fmt.Errorf("load read state %d/%d: %w", k.User, k.Channel, l.err)
	case l.err == nil && (l.seq > checked && !l.abandoned.Load() || e.users.gen(k.User).Load() == l.gen):
		// A read that began after the check is as fresh as a read of k
		// alone, whatever else of the user left memory meanwhile; the
		// generation only decides which of its other records fill.
		if r, ok := l.find(k.Channel); ok {
			return r.State, r.Stamp, nil
		}
		if l.complete {
			return cache.State{}, 0, nil
		}
	}
	// Another miss's read failed (its context may have ended), or is
	// stale, or the page did not hold k: k alone.
	return e.loadKey(ctx, k)
}

// loadKey reads k alone from the store.
func (e *Engine) loadKey(ctx context.Context, k cache.Key) (cache.State, int64, error) {
	start := time.Now()
	st, stamp, err := e.store.Load(ctx, k)
	if e.observeLoad != nil {
		e.observeLoad(time.Since(start))
	}
	e.stats.loads.Add(1)
	if err != nil {
		e.stats.loadErrors.Add(1)
		return cache.State{}, 0, fmt.Errorf("load read state %d/%d: %w", k.User, k.Channel, err)
	}
	e.checkStamp(k, stamp)
	return st, stamp, nil
}

// checkStamp warns, at most once a minute, when a stored stamp is ahead of
// the wall clock: the clock was stepped back, or a writer's clock runs
// ahead. Nothing is lost (the table stamps the next change above it), but
// an operator should know. It is called once for each record a store read
// returns, where the read returns, so that a record shared by several
// misses is counted once.
func (e *Engine) checkStamp(k cache.Key, stamp int64) {
	if e.logical {
		return // stamps follow no clock
	}
	now := e.now()
	ahead := time.Duration(stamp-now.UnixMicro()) * time.Microsecond
	if ahead <= time.Second {
		return
	}
	e.stats.stampsAhead.Add(1)
	last := e.stats.lastStampWarn.Load()
	if now.UnixNano()-last < int64(time.Minute) || !e.stats.lastStampWarn.CompareAndSwap(last, now.UnixNano()) {
		return
	}
	e.log.Warn("a stored write stamp is ahead of the wall clock: changes are stamped above it; check the clocks of this host and of every writer",
		"user", k.User, "channel", k.Channel, "ahead", ahead, "stamps_ahead_total", e.stats.stampsAhead.Load())
}

// reserve is cache.Table.Reserve that, while the cache is full of pinned
// entries, waits up to fullWait for writes to unpin some.
func (e *Engine) reserve(ctx context.Context, k cache.Key) (bool, error) {
	var timeout <-chan time.Time
	for {
		written := e.writtenSignal()
		reserved, err := e.table.Reserve(k)
		if err != cache.ErrFull {
			return reserved, err
		}
		if timeout == nil {
			t := time.NewTimer(e.fullWait)
			defer t.Stop()
			timeout = t.C
		}
		select {
		case <-written:
		case <-timeout:
			return false, err
		case <-ctx.Done():
			return false, ctx.Err()
		}
	}
}

// Run runs the write-behind until ctx is done: a flush every
// FlushInterval/2 and a writer that drains the pending queue. Call Close
// after Run has returned.
func (e *Engine) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	e.startWriters(ctx, &wg)
	ticker := time.NewTicker(max(e.flushInterval/2, time.Millisecond))
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			wg.Wait()
			return nil
		case <-ticker.C:
			e.flushAndCheckpoint(ctx, e.flushInterval*3/8)
		}
	}
}

// flushAndCheckpoint is one periodic flush, paced over pace (see
// flushAll). When the write queue is full it waits for room, as long as it
// takes; with a journal, it cuts the journal (see checkpoint) at least
// every half interval meanwhile, so that a long outage does not grow the
// journal without bound.
func (e *Engine) flushAndCheckpoint(ctx context.Context, pace time.Duration) {
	start, from := time.Now(), 0
	for {
		var mark journal.Mark
		rotated := false
		if e.journal != nil {
			m, err := e.journal.Rotate()
			if err != nil {
				e.log.Error("journal rotate", "err", err)
			} else {
				mark, rotated = m, true
			}
		}
		fctx, cancel := context.WithTimeout(ctx, max(e.flushInterval/2, pace))
		next, err := e.flushShards(fctx, start, pace, from)
		cancel()
		if ctx.Err() != nil {
			return // shutting down: Close writes everything
		}
		if rotated {
			// Only a pass begun after this rotation hands over every
			// change the closed segments hold.
			if cerr := e.checkpoint(mark, err == nil && from == 0); cerr != nil {
				e.log.Error("journal checkpoint", "err", cerr)
			}
		}
		if err == nil {
			return
		}
		if from == 0 {
			e.log.Warn("flush waiting: the write queue is full (the store is down or behind)", "pending", e.Stats().Pending)
		}
		from, pace = next, 0
	}
}

// checkpoint releases the journal segments up to mark, the last segment
// closed before the flush pass began.
//
// Every change recorded in them is in the store, in the queue's newest
// state of its key, or, if the pass could not hand every dirty entry over
// (flushed false), in a dirty entry. So recording the dirty entries (if
// needed) and then the queue again in the active segment covers all of
// them. That
// is done only when it makes the journal smaller; otherwise the segments
// wait for the writers and a later checkpoint. The journal stays below
// about twice the unwritten backlog plus the changes of one flush period,
// with the store up or down.
func (e *Engine) checkpoint(mark journal.Mark, flushed bool) error {
	closed := e.journal.ClosedBytes(mark)
	var dirty int64
	if !flushed {
		dirty = e.table.Stats().Dirty
	}
	e.mu.Lock()
	pending := int64(len(e.mu.pending))
	if (pending+dirty)*journal.RecordLen >= closed {
		e.mu.Unlock()
		return nil
	}
	e.mu.Unlock()
	// The dirty entries first, then the queue: an entry handed over
	// between the two is then recorded by the second.
	if !flushed {
		for i := range e.table.Shards() {
			e.table.RecordDirty(i)
			runtime.Gosched()
		}
	}
	e.mu.Lock()
	buf := e.checkpointBuf[:0]
	for k, rec := range e.mu.pending {
		buf = append(buf, cache.Snapshot{Key: k, State: rec.state, Stamp: rec.stamp})
	}
	e.mu.Unlock()
	for _, s := range buf {
		e.journal.Append(s)
	}
	e.checkpointBuf = buf[:0]
	if err := e.journal.Sync(); err != nil {
		return err
	}
	return e.journal.Release(mark)
}

// Sync hands every dirty read state to the writer and waits until all
// that was pending is written. It needs Run (or Close) to be running the
// writer.
func (e *Engine) Sync(ctx context.Context) error {
	if err := e.flushAll(ctx, 0); err != nil {
		return err
	}
	return e.waitWritten(ctx)
}

// Close stops read-through, writes every dirty and pending read state, and
// releases the cache. It does not close the Store. If ctx ends first it
// returns an error counting the states not written.
//
// REQUIRES: Run has returned and no other method is running or will be
// called (the server stops serving first).
func (e *Engine) Close(ctx context.Context) error {
	e.closed.Store(true)
	wctx, stop := context.WithCancel(ctx)
	var writers sync.WaitGroup
	e.startWriters(wctx, &writers)
	err := e.Sync(ctx)
	stop()
	writers.Wait()
	if err != nil {
		st := e.Stats()
		if e.journal != nil {
			if jerr := e.journal.Close(); jerr == nil {
				// Every change is in the journal, fsynced: the next start
				// replays it and writes it.
				e.log.Warn("read states not written to the store at close are kept in the journal; the next start writes them",
					"dirty", st.Dirty, "pending", st.Pending, "err", err)
				return e.table.Close()
			} else {
				err = errors.Join(err, jerr)
			}
		}
		e.log.Error("unwritten read states at close", "dirty", st.Dirty, "pending", st.Pending, "err", err)
		return fmt.Errorf("close: %d dirty and %d pending read states not written: %w", st.Dirty, st.Pending, err)
	}
	if e.journal != nil {
		// Everything is in the store: the journal has nothing to replay.
		m, err := e.journal.Rotate()
		if err == nil {
			err = e.journal.Release(m)
		}
		if cerr := e.journal.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			e.log.Warn("journal not emptied at close (the next start replays it: harmless)", "err", err)
		}
	}
	return e.table.Close()
}

// flushAll hands the dirty entries of every shard to the writer, waiting
// for room in the queue when it is full.
//
// With pace > 0 the pass is spread over about pace: it yields after each
// shard and sleeps while ahead of schedule. Run paces it over 3/8 of the
// interval: a flush starts every interval/2, so a change still reaches the
// writer within 7/8 of the interval. Why: a pass at full speed over a
// large cache hands its dirty entries to the writer at once, and the
// flusher, the writer and the store's compactions together took both cores
// of a small machine from the commands: latency spiked at every flush
// (BENCHMARKS.md, latency under GC, has the figures). Spread out, the same
// work leaves the commands their share of the CPU.
func (e *Engine) flushAll(ctx context.Context, pace time.Duration) error {
	_, err := e.flushShards(ctx, time.Now(), pace, 0)
	return err
}

// flushShards is flushAll from shard from on, for a pass that began at
// start; it returns the first shard it did not finish. A pass that reaches
// the last shard counts as a flush cycle that began at start.
func (e *Engine) flushShards(ctx context.Context, start time.Time, pace time.Duration, from int) (int, error) {
	n := e.table.Shards()
	var timer *time.Timer
	for i := from; i < n; i++ {
		for {
			written := e.writtenSignal()
			if _, done := e.table.Flush(i); done {
				break
			}
			select {
			case <-written:
			case <-ctx.Done():
				return i, fmt.Errorf("flush: %w", ctx.Err())
			}
		}
		if pace <= 0 {
			continue
		}
		d := time.Until(start.Add(pace * time.Duration(i+1) / time.Duration(n)))
		if d <= 0 {
			runtime.Gosched()
			continue
		}
		if timer == nil {
			timer = time.NewTimer(d)
			defer timer.Stop()
		} else {
			timer.Reset(d)
		}
		select {
		case <-timer.C:
		case <-ctx.Done():
			return i + 1, fmt.Errorf("flush: %w", ctx.Err())
		}
	}
	e.stats.flushCycles.Add(1)
	e.stats.lastFlush.Store(start.UnixNano())
	return n, nil
}

func (e *Engine) writtenSignal() chan struct{} {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.mu.written
}

func (e *Engine) waitWritten(ctx context.Context) error {
	for {
		e.mu.Lock()
		n, written := len(e.mu.pending), e.mu.written
		e.mu.Unlock()
		if n == 0 {
			return nil
		}
		select {
		case <-written:
		case <-ctx.Done():
			return fmt.Errorf("wait for %d pending writes: %w", n, ctx.Err())
		}
	}
}

// startWriters starts the writers, which run until ctx is done.
func (e *Engine) startWriters(ctx context.Context, wg *sync.WaitGroup) {
	for w := range e.writers {
		wg.Go(func() { e.runWriter(ctx, w) })
	}
}

// runWriter is writer w: it writes the pending queue, oldest first, one
// batch at a time, retrying failures with backoff until ctx is done.
func (e *Engine) runWriter(ctx context.Context, w int) {
	batch := make([]Record, 0, e.writeBatch)
	backoff := time.Duration(0)
	for {
		batch = e.takeBatch(batch[:0], w)
		if len(batch) == 0 {
			select {
			case <-e.wake:
				e.wakeNext()
				continue
			case <-ctx.Done():
				return
			}
		}
		err := e.store.Write(ctx, batch)
		if err == nil {
			if backoff > 0 {
				e.log.Info("store writes recovered", "records", len(batch))
			}
			backoff = 0
			e.stats.writes.Add(uint64(len(batch)))
			e.ack(batch, w)
			runtime.Gosched() // a long backlog must not keep the commands off the CPU
			continue
		}
		e.requeue(batch, w)
		if ctx.Err() != nil {
			return // stopped mid-write (shutdown): Close writes the batch again
		}
		e.stats.writeErrors.Add(1)
		if backoff == 0 {
			e.log.Warn("store write failed; retrying", "records", len(batch), "err", err)
			backoff = 50 * time.Millisecond
		} else {
			backoff = min(2*backoff, 5*time.Second)
		}
		e.stats.retries.Add(1)
		// Full jitter keeps many servers from retrying in step.
		select {
		case <-time.After(backoff/2 + rand.N(backoff/2+1)):
		case <-ctx.Done():
			return
		}
	}
}

// wakeNext passes a wake-up on while the queue has more than one writer
// can take, so that idle writers join in.
func (e *Engine) wakeNext() {
	if e.writers == 1 {
		return
	}
	e.mu.Lock()
	more := e.mu.queue.exceeds(e.writeBatch, e.writeUsers)
	e.mu.Unlock()
	if more {
		select {
		case e.wake <- struct{}{}:
		default:
		}
	}
}

// takeBatch moves up to writeBatch records off the queue into writer w's
// write, whole users (see writeQueue.take).
func (e *Engine) takeBatch(batch []Record, w int) []Record {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.mu.inflightSince[w] = 0
	e.mu.queue.take(cap(batch)-len(batch), e.writeUsers, func(k cache.Key) {
		rec := e.mu.pending[k]
		if e.mu.inflightSince[w] == 0 {
			e.mu.inflightSince[w] = rec.since
		}
		if len(batch) == 0 || batch[len(batch)-1].Key.User != k.User {
			e.stats.writeUsers.Add(1)
		}
		batch = append(batch, Record{Key: k, State: rec.state, Stamp: rec.stamp})
	})
	if len(batch) > 0 {
		if e.mu.writing == 0 {
			e.mu.busySince = time.Now().UnixNano()
		}
		e.mu.writing++
	}
	return batch
}

// writeEnded is called under mu when one of the writers' writes ended.
func (e *Engine) writeEnded() {
	if e.mu.writing--; e.mu.writing == 0 {
		e.stats.writeBusy.Add(time.Now().UnixNano() - e.mu.busySince)
	}
}

// ack removes written records from pending, unless a newer state of the
// key arrived during the write: that one is queued again.
func (e *Engine) ack(batch []Record, w int) {
	e.mu.Lock()
	for _, r := range batch {
		if cur := e.mu.pending[r.Key]; cur.stamp == r.Stamp {
			delete(e.mu.pending, r.Key)
			if cur.replayed || cur.gen != uint32(e.users.gen(r.Key.User).Load()) {
				e.removed(r.Key) // it may have left memory with this ack
			}
		} else {
			e.mu.queue.pushBack(r.Key)
		}
	}
	e.mu.inflightSince[w] = 0
	e.writeEnded()
	close(e.mu.written)
	e.mu.written = make(chan struct{})
	e.mu.Unlock()
}

// requeue puts a failed batch back at the front of the queue, in order.
func (e *Engine) requeue(batch []Record, w int) {
	e.mu.Lock()
	for i := len(batch) - 1; i >= 0; i-- {
		e.mu.queue.pushFront(batch[i].Key)
	}
	e.mu.inflightSince[w] = 0
	e.writeEnded()
	e.mu.Unlock()
}

// Stats are the engine's figures.
type Stats struct {
	Entries, Capacity int64
	// Hits and Misses count each read state an operation names once, at
	// its first lookup, however often its read-through looks again. An
	// operation of the NoWait view counts even if it fails with
	// ErrWouldBlock: its run again on the Rerun view counts nothing. A
	// transaction counts each read state of its keys once, at its first
	// try, however many of its commands name it.
	Hits, Misses, Evictions uint64
	Dirty, Pending          int64
	// Pinned counts dirty entries kept in the cache because the queue was full.
	Pinned            uint64
	Loads, LoadErrors uint64 // database reads (of a key or a user), failed reads
	// UserLoads counts the reads of a user's partition among Loads;
	// MissesWithoutLoad the misses answered with no read, the user's
	// partition being all in memory.
	UserLoads, MissesWithoutLoad uint64
	// WarmLoads counts the partition reads made by Warm, among UserLoads:
	// the others were made for commands.
	WarmLoads                    uint64
	Writes, WriteErrors, Retries uint64 // records written, failed writes, retries
	// WriteUsers counts the users of the records handed to Store.Write
	// (a user's records in one write count once): Writes/WriteUsers is
	// how many rows a store writing by partition writes per request.
	WriteUsers uint64
	// WriteBusy is how long at least one Store.Write was under way:
	// Writes/WriteBusy is the write rate while writing.
	WriteBusy   time.Duration
	FlushCycles uint64
	// StampsAhead counts stamps loaded from the store that were ahead of
	// the wall clock by more than a second.
	StampsAhead uint64
	// Journal is the journal's figures; zero without one.
	Journal   journal.Stats
	JournalOn bool
	// LastFlush is the start of the last completed flush; every change
	// older than it has left the cache for the queue.
	LastFlush time.Time
	// OldestPending is the age of the oldest unwritten record in the queue.
	OldestPending time.Duration
	// CacheImplementation is cache.Implementation: "arena", or the
	// benchmark baseline "pointer-lru" of a build with -tags ptrcache.
	CacheImplementation string
}

// Stats returns the current figures. It is cheap enough for every scrape.
func (e *Engine) Stats() Stats {
	ts := e.table.Stats()
	st := Stats{
		Entries: ts.Entries, Capacity: ts.Capacity,
		Hits: ts.Hits, Misses: ts.Misses, Evictions: ts.Evictions,
		Dirty: ts.Dirty, Pinned: ts.Pinned,
		Loads: e.stats.loads.Load(), LoadErrors: e.stats.loadErrors.Load(),
		Writes: e.stats.writes.Load(), WriteErrors: e.stats.writeErrors.Load(),
		Retries: e.stats.retries.Load(), FlushCycles: e.stats.flushCycles.Load(),
		UserLoads: e.users.reads.Load(), MissesWithoutLoad: e.users.noQuery.Load(), WarmLoads: e.users.warmed.Load(),
		WriteUsers: e.stats.writeUsers.Load(), WriteBusy: time.Duration(e.stats.writeBusy.Load()),
		StampsAhead:         e.stats.stampsAhead.Load(),
		CacheImplementation: cache.Implementation,
	}
	if ns := e.stats.lastFlush.Load(); ns != 0 {
		st.LastFlush = time.Unix(0, ns)
	}
	if e.journal != nil {
		st.Journal, st.JournalOn = e.journal.Stats(), true
	}
	e.mu.Lock()
	st.Pending = int64(len(e.mu.pending))
	if e.mu.writing > 0 { // the busy spell under way counts so far
		st.WriteBusy += time.Duration(time.Now().UnixNano() - e.mu.busySince)
	}
	var oldest int64
	for _, since := range e.mu.inflightSince {
		if since != 0 && (oldest == 0 || since < oldest) {
			oldest = since
		}
	}
	if k, ok := e.mu.queue.front(); ok && (oldest == 0 || e.mu.pending[k].since < oldest) {
		oldest = e.mu.pending[k].since
	}
	e.mu.Unlock()
	if oldest != 0 {
		st.OldestPending = time.Since(time.Unix(0, oldest))
	}
	return st
}

// TakeFlushHold returns the longest a flush held one shard's lock at a
// time (one slice of cache.Table.Flush) since the last call.
func (e *Engine) TakeFlushHold() time.Duration { return e.table.TakeFlushHold() }

// TakeJournalWait returns the longest a change waited for the journal's
// lock (under its shard lock) since the last call; false without a
// journal.
func (e *Engine) TakeJournalWait() (time.Duration, bool) {
	if e.journal == nil {
		return 0, false
	}
	return e.journal.TakeAppendWait(), true
}
