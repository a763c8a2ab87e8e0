//go:build !ptrcache

package cache

// atomically is Lookups.Atomically.
func (t *Table) atomically(keys []Key, fn func(Locked), count bool) (missing Key, ok bool) {
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
	if count {
		for _, k := range keys {
			s, _ := t.locate(k)
			s.hits++
		}
	}
	fn(Locked{
		locked: idx, shardBits: t.shardBits,
		get: func(k Key) (State, error) {
			s, home := t.locate(k)
			return s.getLocked(k, home, false)
		},
		incr: func(k Key, delta int64) (int32, error) {
			s, home := t.locate(k)
			return t.incrLocked(s, k, home, delta, false)
		},
		reset: func(k Key, msgID int64, setMsg bool) (int32, error) {
			s, home := t.locate(k)
			return t.resetLocked(s, k, home, msgID, setMsg, false)
		},
	})
	return Key{}, true
}
