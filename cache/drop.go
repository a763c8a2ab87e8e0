//go:build !ptrcache

package cache

// Drop removes from the table the read states whose key drop accepts, and
// returns how many it removed and how many it kept: entries being loaded
// are always kept (their load is in flight), dirty ones unless dirty is
// true (their changes are then lost to this table, as the caller wants:
// a cluster node drops what it no longer owns). Drop takes each shard's
// lock in turn, so it is not one instant's view of the table: the caller
// must keep the operations on the keys it drops from running meanwhile.
func (t *Table) Drop(drop func(Key) bool, dirty bool) (dropped, kept int) {
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.Lock()
		droppable := func(e *entry) bool {
			return e.meta&metaUsed != 0 && e.meta&metaLoading == 0 && (dirty || e.meta&metaDirty == 0) &&
				drop(Key{User: e.user, Channel: e.channel})
		}
		for j := uint64(0); j < s.n; {
			e := &s.slots[j]
			if !droppable(e) {
				j++
				continue
			}
			if e.meta&metaDirty != 0 {
				s.cleanLocked(e)
			}
			dropped++
			if t.onRemove != nil {
				t.onRemove(Key{User: e.user, Channel: e.channel})
			}
			// Deletion shifts later entries of the probe run back into
			// slot j (one from the start of the array may wrap around to
			// its end): j is looked at again.
			s.deleteLocked(j)
		}
		for j := range s.slots {
			if e := &s.slots[j]; e.meta&metaUsed != 0 && drop(Key{User: e.user, Channel: e.channel}) {
				kept++
			}
		}
		s.mu.Unlock()
	}
	return dropped, kept
}
