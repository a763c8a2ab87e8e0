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

// A transaction counts one lookup for each read state of its keys, at
// its first try only (Stats.Hits): a hit each if the table runs fn then,
// or else the looks that find what is missing. Its commands' lookups, its
// looks after a read-through, and all of a Rerun's count nothing.
func (e *Engine) atomically(ctx context.Context, keys []cache.Key, fn func(ReadStates), v view) error {
	if e.closed.Load() {
		return ErrClosed
	}
	set := distinct(keys)
	for attempt := 0; ; attempt++ {
		changed := false
		look := e.table.Lookups(v.counts(attempt))
		_, ok := look.Atomically(set, func(l cache.Locked) {
			fn(&txView{e: e, l: l, changed: &changed})
		})
		if ok {
			if changed {
				return e.commit()
			}
			return nil
		}
		if !v.wait() {
			// The first look: what is cached and what is not.
			for _, k := range set {
				_, _ = look.Get(k)
			}
			return ErrWouldBlock
		}
		if attempt >= maxLoadAttempts {
			return fmt.Errorf("a transaction's %d read states were evicted %d times while being loaded: the cache is too small for them", len(keys), attempt)
		}
		var missing []cache.Key
		for _, k := range set {
			if _, err := look.Get(k); err == cache.ErrMiss {
				missing = append(missing, k)
			}
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
	if err == cache.ErrMiss {
		return 0, errNotLocked
	}
	*v.changed = *v.changed || err == nil
	return n, err
}

func (v *txView) Get(_ context.Context, k cache.Key) (cache.State, error) {
	st, err := v.l.Get(k)
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

// distinct returns keys without repeats, in their order: keys itself if
// it has none (found without allocating for a transaction of a few).
func distinct(keys []cache.Key) []cache.Key {
	if len(keys) <= 16 {
		i := 1
		for i < len(keys) && !slices.Contains(keys[:i], keys[i]) {
			i++
		}
		if i >= len(keys) {
			return keys
		}
	}
	seen := make(map[cache.Key]bool, len(keys))
	out := make([]cache.Key, 0, len(keys))
	for _, k := range keys {
		if !seen[k] {
			seen[k] = true
			out = append(out, k)
		}
	}
	if len(out) == len(keys) {
		return keys
	}
	return out
}
