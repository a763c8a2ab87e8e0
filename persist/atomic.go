package persist

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/readstates/readstates/cache"
)

// Atomically runs fn on a view of the read states of keys whose
// operations run as one unit (see ReadStates.Atomically). It loads the
// read states that are not cached (concurrently), then runs fn with their cache shards
// locked; if one was evicted in between, it loads again, a bounded number
// of times. fn runs once.
func (e *Engine) Atomically(ctx context.Context, keys []cache.Key, fn func(ReadStates)) error {
	return e.atomically(ctx, keys, fn, engineView)
}

// A transaction counts a hit or a miss for each read state of its keys
// once, at its first try (Stats.Hits): its commands' lookups are taken
// back (txView), and so are its looks again after a read-through, and all
// of a Rerun's.
func (e *Engine) atomically(ctx context.Context, keys []cache.Key, fn func(ReadStates), v view) error {
	if e.closed.Load() {
		return ErrClosed
	}
	for attempt := 0; ; attempt++ {
		changed := false
		_, ok := e.table.Atomically(keys, func(l cache.Locked) {
			fn(&txView{e: e, l: l, changed: &changed})
		})
		if ok {
			if attempt == 0 && v.counts() {
				e.stats.txHits.Add(uint64(countDistinct(keys)))
			}
			if changed {
				return e.commit()
			}
			return nil
		}
		first := attempt == 0 && v.counts()
		if !v.wait() {
			// The first look: what is cached and what is not.
			for _, k := range distinct(keys) {
				_, _ = e.table.Get(k)
			}
			return ErrWouldBlock
		}
		if attempt >= maxLoadAttempts {
			return fmt.Errorf("a transaction's %d read states were evicted %d times while being loaded: the cache is too small for them", len(keys), attempt)
		}
		var missing []cache.Key
		for _, k := range distinct(keys) {
			_, err := e.table.Get(k)
			if err == cache.ErrMiss {
				missing = append(missing, k)
			}
			e.repeated(!first, err != cache.ErrMiss)
		}
		// Concurrently, as GetMany: a cold transaction takes about one
		// database round trip per attempt, not one per read state.
		if err := inParallel(len(missing), func(i int) error { return e.load(ctx, missing[i]) }); err != nil {
			return err
		}
		if serves := e.serves.Load(); serves != nil {
			for _, k := range keys { // as readThrough
				if !(*serves)(k.User) {
					return ErrNotServed
				}
			}
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
}

// errNotLocked is a transaction's operation on a read state it did not
// declare: a bug of the caller.
var errNotLocked = errors.New("read state outside the transaction's keys")

// txView is the ReadStates of a transaction: operations on the locked
// cache shards, which never wait.
type txView struct {
	e       *Engine
	l       cache.Locked
	changed *bool
}

func (v *txView) Incr(_ context.Context, k cache.Key, delta int64) (int32, error) {
	if err := v.e.journalCheck(); err != nil {
		return 0, err
	}
	n, err := v.l.Incr(k, delta)
	v.e.repeated(true, err != cache.ErrMiss)
	if err == cache.ErrMiss {
		return 0, errNotLocked
	}
	*v.changed = *v.changed || err == nil
	return n, err
}

func (v *txView) Reset(_ context.Context, k cache.Key, msgID int64, setMsg bool) (int32, error) {
	if err := v.e.journalCheck(); err != nil {
		return 0, err
	}
	n, err := v.l.Reset(k, msgID, setMsg)
	v.e.repeated(true, err != cache.ErrMiss)
	if err == cache.ErrMiss {
		return 0, errNotLocked
	}
	*v.changed = *v.changed || err == nil
	return n, err
}

func (v *txView) Get(_ context.Context, k cache.Key) (cache.State, error) {
	st, err := v.l.Get(k)
	v.e.repeated(true, err != cache.ErrMiss)
	if err == cache.ErrMiss {
		return st, errNotLocked
	}
	return st, err
}

func (v *txView) GetMany(ctx context.Context, user int64, channels []int64, out []cache.State) error {
	for i, c := range channels {
		st, err := v.Get(ctx, cache.Key{User: user, Channel: c})
		if err != nil {
			return err
		}
		out[i] = st
	}
	return nil
}

func (v *txView) Atomically(context.Context, []cache.Key, func(ReadStates)) error {
	return errors.New("transactions do not nest")
}

// distinct returns keys without repeats, in their order; keys itself if
// it has none.
func distinct(keys []cache.Key) []cache.Key {
	if countDistinct(keys) == len(keys) {
		return keys
	}
	seen := make(map[cache.Key]bool, len(keys))
	out := make([]cache.Key, 0, len(keys))
	for _, k := range keys {
		if !seen[k] {
			seen[k] = true
			out = append(out, k)
		}
	}
	return out
}

// countDistinct returns how many different keys keys holds, without
// allocating for a transaction of a few.
func countDistinct(keys []cache.Key) int {
	if len(keys) > 16 {
		seen := make(map[cache.Key]struct{}, len(keys))
		for _, k := range keys {
			seen[k] = struct{}{}
		}
		return len(seen)
	}
	n := 0
	for i, k := range keys {
		if !slices.Contains(keys[:i], k) {
			n++
		}
	}
	return n
}
