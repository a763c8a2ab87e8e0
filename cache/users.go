//go:build !ptrcache

package cache

// Users appends to dst the users that have read states in the table, each
// once: first those with an entry used since the CLOCK hand last passed
// it, then the others. A warm restart reads them back in that order. It
// takes each shard's lock in turn (a user's read states share one shard).
func (t *Table) Users(dst []int64) []int64 {
	var cold []int64
	seen := make(map[int64]bool) // user -> referenced
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.Lock()
		for j := range s.slots {
			e := &s.slots[j]
			if e.meta&metaUsed == 0 || e.meta&metaLoading != 0 {
				continue
			}
			ref := e.meta&metaRef != 0
			if was, ok := seen[e.user]; !ok || (ref && !was) {
				seen[e.user] = ref
			}
		}
		s.mu.Unlock()
		for u, ref := range seen {
			if ref {
				dst = append(dst, u)
			} else {
				cold = append(cold, u)
			}
		}
		clear(seen)
	}
	return append(dst, cold...)
}
