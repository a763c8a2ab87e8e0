//go:build !ptrcache

package cache

// Atomically runs fn with the shards of keys locked, if every key is
// cached; otherwise it runs nothing and returns a key that is not (ok
// false), for the caller to load before it tries again. The operations fn
// makes through its Locked view run as one unit: no other operation on
// those keys interleaves with them (a transaction, Redis's MULTI/EXEC).
//
// Shards are locked in index order, and every other operation holds one
// shard lock at a time, so concurrent calls cannot deadlock. fn must use
// only its Locked view, on keys among keys, and must not block: every
// operation on those shards waits for it.
func (t *Table) Atomically(keys []Key, fn func(Locked)) (missing Key, ok bool) {
	idx := lockOrder(keys, t.shardBits)
	for _, i := range idx {
		t.shards[i].mu.Lock()
	}
	defer func() {
		for _, i := range idx {
			t.shards[i].mu.Unlock()
		}
	}()
	for _, k := range keys {
		s, home := t.locate(k)
		if i, found := s.findLocked(k, home); !found || s.slots[i].meta&metaLoading != 0 {
			return k, false
		}
	}
	fn(Locked{
		get: func(k Key) (State, error) {
			s, home := t.locate(k)
			return s.getLocked(k, home)
		},
		incr: func(k Key, delta int64) (int32, error) {
			s, home := t.locate(k)
			return t.incrLocked(s, k, home, delta)
		},
		reset: func(k Key, msgID int64, setMsg bool) (int32, error) {
			s, home := t.locate(k)
			return t.resetLocked(s, k, home, msgID, setMsg)
		},
	})
	return Key{}, true
}
