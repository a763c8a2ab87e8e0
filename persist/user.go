package persist

import (
	"cmp"
	"context"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/readstates/readstates/cache"
)

// Reading a user's partition at once.
//
// A user's first miss reads the user's whole partition (at most
// EngineConfig.UserPage read states) in one query, answers the miss from
// it, and fills the cache with the user's other read states, as clean
// entries. When the answer was the whole partition, the user is marked
// complete: a later miss of one of its channels is a read state that was
// never written, answered with no query at all.
//
// Both shortcuts use what the store said at the moment the query began,
// which is only the newest state of a key if nothing newer of it was in
// this engine's memory then and left it since: a state evicted clean, or
// written and taken off the queue, while the query was under way is in
// the store but maybe not in the answer. So every removal of a user's
// read state from the cache (cache.Config.OnRemove), and from the pending
// queue of a key that left the cache since it was queued or was replayed
// (ack: pendingRecord.gen), bumps the user's generation, and a shortcut
// is taken only while the generation is the one read when the query
// began. A write that ends while its key is still cached takes nothing
// out of memory, so it leaves a user read whole as it was. A key in the
// queue (whose state is newer than the store's, or a replay to compare)
// is never filled from the answer. Generations are kept per bucket of
// users (userGens), so another user of the bucket only costs a query.

// userGens is the number of generation counters; users share them by
// hash.
const userGens = 1 << 16

// maxCompleteUsers bounds the read-user hints: past it they are all
// forgotten (each only saves a query).
const maxCompleteUsers = 1 << 20

// userLoad is one read of a user's partition, shared by the concurrent
// misses of that user.
type userLoad struct {
	done chan struct{}
	gen  uint64 // the user's generation when the query began
	seq  uint64 // users.flightSeq after the increment that began it
	// abandoned: Release or Discard dropped the user while the read was
	// under way. Another node may have written the user since it began,
	// so it answers no miss, not even the one that began it.
	abandoned atomic.Bool
	recs      []Record // sorted by channel
	// complete: recs is the whole partition.
	complete bool
	err      error
}

// userState is the Engine's part for partition reads.
type userState struct {
	capacity int // the cache's, in read states
	page     int
	maxFill  int // most records one partition read puts in the cache
	gens     []atomic.Uint64
	// flightSeq numbers partition reads as they begin: a miss that takes
	// it after checking the queue knows that a read numbered above it
	// began after that check (see loadOne).
	flightSeq atomic.Uint64
	reads     atomic.Uint64 // partition reads made
	noQuery   atomic.Uint64 // misses answered by a complete user, no query
	warmed    atomic.Uint64 // partition reads made by Warm, among reads

	completeMu sync.Mutex
	complete   map[int64]userRead // see readWhole
	marks      atomic.Uint64      // marks made so far (markRead)
}

// userRead is a user whose partition was read at time at (UnixNano), as
// of generation gen: inMemory if every record read was put in the cache,
// complete if those were the whole partition.
type userRead struct {
	gen, seq           uint64 // seq: users.marks when it was marked
	at                 int64
	inMemory, complete bool
}

// userRereadAfter is how soon a user's partition may be read again after
// its last read was overtaken (something of the user left memory) or did
// not fit: sooner, a miss reads its key alone. A cache too small for its
// users would otherwise read a whole partition for every miss.
const userRereadAfter = time.Second

func (u *userState) init(capacity, page, maxFill int) {
	u.capacity, u.page, u.maxFill = capacity, page, max(maxFill, 1)
	u.gens = make([]atomic.Uint64, userGens)
	u.complete = make(map[int64]userRead)
}

func (u *userState) gen(user int64) *atomic.Uint64 {
	return &u.gens[uint64(user)*0x9E3779B97F4A7C15>>48]
}

// removed is the cache's OnRemove hook, and the queue's on ack.
func (e *Engine) removed(k cache.Key) { e.users.gen(k.User).Add(1) }

// readWhole reports whether user's partition was read, and nothing of
// the user left memory since (read), and whether it fit in the page
// (complete): then every stored read state of the user is in memory (the
// cache or the queue), and a key found in neither was never written. A
// user read but not complete has its page in memory: a key found in
// neither is read alone. recent: the partition was read less than
// userRereadAfter ago, whatever happened since.
//
// Only a read marked at or before asOf (a value of users.marks) counts: a
// miss that reserved its key after loading asOf must not trust a mark
// made later, which may have counted its own placeholder as the key being
// in memory (fillUser, Insert).
func (e *Engine) readWhole(user int64, asOf uint64) (read, complete, recent bool) {
	u := &e.users
	u.completeMu.Lock()
	r, ok := u.complete[user]
	u.completeMu.Unlock()
	if !ok {
		return false, false, false
	}
	recent = time.Now().UnixNano()-r.at < int64(userRereadAfter)
	if !r.inMemory || r.gen != u.gen(user).Load() || r.seq > asOf {
		return false, false, recent
	}
	return true, r.complete, recent
}

// anyMark is readWhole's asOf that counts every mark.
const anyMark = math.MaxUint64

func (e *Engine) markRead(user int64, r userRead) {
	u := &e.users
	u.completeMu.Lock()
	if len(u.complete) >= maxCompleteUsers {
		clear(u.complete)
	}
	r.seq = u.marks.Add(1)
	u.complete[user] = r
	u.completeMu.Unlock()
}

// loadUser reads user's partition, or waits for the read of it under way
// (own false), and returns it; the caller checks its generation before
// using it.
func (e *Engine) loadUser(ctx context.Context, user int64) (l *userLoad, own bool) {
	fs := e.stripe(user)
	fs.mu.Lock()
	if l, ok := fs.users[user]; ok {
		fs.mu.Unlock()
		select {
		case <-l.done:
			return l, false
		case <-ctx.Done():
			return &userLoad{err: ctx.Err()}, true
		}
	}
	l = &userLoad{done: make(chan struct{}), gen: e.users.gen(user).Load(), seq: e.users.flightSeq.Add(1)}
	fs.users[user] = l
	fs.mu.Unlock()

	start := time.Now()
	l.recs, l.err = e.store.LoadUser(ctx, user, e.users.page)
	if e.observeLoad != nil {
		e.observeLoad(time.Since(start))
	}
	if l.err == nil {
		l.complete = len(l.recs) < e.users.page
		slices.SortFunc(l.recs, func(a, b Record) int { return cmp.Compare(a.Key.Channel, b.Key.Channel) })
		for _, r := range l.recs {
			e.checkStamp(r.Key, r.Stamp)
		}
		e.fillUser(user, l)
	} else {
		e.stats.loadErrors.Add(1)
	}
	// Counted once the cache holds what was read: whoever sees the count
	// sees the read states.
	e.stats.loads.Add(1)
	e.users.reads.Add(1)

	fs.mu.Lock()
	delete(fs.users, user)
	fs.mu.Unlock()
	close(l.done)
	return l, true
}

// forgetComplete drops the read-user hints of the users given: a
// cluster node that stops serving them may get them back after another
// node wrote some. A read of one of them still under way (one that
// outlived the node's lease), of the partition or of one key, is made to
// fill nothing: it is abandoned, and its user's generation moves. The
// hints go last: a partition read that ended before its stripe was
// visited may have marked its user read meanwhile.
func (e *Engine) forgetComplete(users func(int64) bool) {
	u := &e.users
	for i := range e.stripes {
		fs := &e.stripes[i]
		fs.mu.Lock()
		for user, l := range fs.users {
			if users(user) {
				u.gen(user).Add(1)
				l.abandoned.Store(true)
			}
		}
		for k, f := range fs.keys {
			if users(k.User) {
				u.gen(k.User).Add(1)
				f.abandoned.Store(true)
			}
		}
		fs.mu.Unlock()
	}
	u.completeMu.Lock()
	for user := range u.complete {
		if users(user) {
			delete(u.complete, user)
		}
	}
	u.completeMu.Unlock()
}

// fillUser puts the records of l that the cache lacks into it, clean, at
// most a quarter of a shard's room (a user's read states share one
// shard), and marks the user read, all while nothing of the user has left
// memory since the query began.
func (e *Engine) fillUser(user int64, l *userLoad) {
	gen := e.users.gen(user)
	inMemory := len(l.recs) <= e.users.maxFill
	for i := range l.recs[:min(len(l.recs), e.users.maxFill)] {
		r := &l.recs[i]
		inMemory = e.table.Insert(r.Key, r.State, r.Stamp, func() bool {
			// Under mu, so that an ack (which takes the key off the queue
			// and bumps the generation under mu) is wholly before or after.
			e.mu.Lock()
			defer e.mu.Unlock()
			_, queued := e.mu.pending[r.Key]
			return !queued && gen.Load() == l.gen
		}) && inMemory
	}
	// A record the cache had no room for would be missing from memory:
	// then the user is not read whole, only recently.
	inMemory = inMemory && gen.Load() == l.gen
	e.markRead(user, userRead{gen: l.gen, at: time.Now().UnixNano(), inMemory: inMemory, complete: inMemory && l.complete})
}

// find returns the record of channel in l.
func (l *userLoad) find(channel int64) (Record, bool) {
	i, ok := slices.BinarySearchFunc(l.recs, channel, func(r Record, c int64) int { return cmp.Compare(r.Key.Channel, c) })
	if !ok {
		return Record{}, false
	}
	return l.recs[i], true
}

// tryFill is the part of a miss's read-through that never waits: it fills
// k from the write queue, or as never written when its user's partition
// is all in memory, and reports whether it did. Event loops run it
// (NoWait), so a new read state of a user already read costs no trip to
// a goroutine. It holds k's flight stripe throughout, so no load of k
// runs meanwhile (a load reserves k only under a flight of its own).
func (e *Engine) tryFill(k cache.Key) bool {
	fs := e.stripe(k.User)
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if _, loading := fs.keys[k]; loading {
		return false
	}
	marks := e.users.marks.Load() // before the placeholder: see readWhole
	if _, complete, _ := e.readWhole(k.User, anyMark); !complete {
		e.mu.Lock()
		rec, queued := e.mu.pending[k]
		e.mu.Unlock()
		if !queued || rec.replayed {
			// The common miss, or a replayed record to compare with the
			// store: only the database knows. (Reserving to abort would
			// bump the user's generation for nothing.)
			return false
		}
	}
	reserved, err := e.table.Reserve(k)
	if err != nil {
		return false
	}
	if !reserved {
		return true // cached meanwhile
	}
	e.mu.Lock()
	rec, queued := e.mu.pending[k]
	e.mu.Unlock()
	switch _, complete, _ := e.readWhole(k.User, marks); {
	case queued && !rec.replayed:
		e.table.Fill(k, rec.state, rec.stamp, nil)
	case !queued && complete:
		e.users.noQuery.Add(1)
		e.table.Fill(k, cache.State{}, 0, nil)
	default:
		e.table.Abort(k)
		return false
	}
	return true
}

// Prefetch loads the read states of keys that are neither cached nor
// being loaded, and waits for them (a key being loaded is left to its
// load, which the operation that needs it joins): the users' partitions
// concurrently, at most maxParallelLoads at once, each user's keys in the
// order given. Errors are dropped: the operations that follow read
// through again, and report them. It may overwrite keys.
func (e *Engine) Prefetch(ctx context.Context, keys []cache.Key) {
	if e.closed.Load() || len(keys) == 0 {
		return
	}
	// What the commands will use before they reach the end must still be
	// cached then: a window larger than a small cache would only evict
	// itself.
	keys = keys[:min(len(keys), max(e.users.capacity/8, 1))]
	// Most of a pipeline is usually cached: those keys cost a lookup each
	// here, and no flight, goroutine or garbage.
	cold := keys[:0]
	for _, k := range keys {
		if !e.table.Contains(k) {
			cold = append(cold, k)
		}
	}
	keys = cold
	if len(keys) == 0 {
		return
	}
	slices.SortStableFunc(keys, func(a, b cache.Key) int { return cmp.Compare(a.User, b.User) })
	var starts []int // where each user's keys begin
	for i, k := range keys {
		if i == 0 || k.User != keys[i-1].User {
			starts = append(starts, i)
		}
	}
	_ = inParallel(len(starts), func(j int) error {
		end := len(keys)
		if j+1 < len(starts) {
			end = starts[j+1]
		}
		for _, k := range keys[starts[j]:end] {
			if err := e.load(ctx, k); err != nil {
				return err // the user's store reads fail: the commands will say so
			}
		}
		return nil
	})
}
