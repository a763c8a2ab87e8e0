// Package cache holds read states in memory: a fixed-capacity, sharded
// hash table whose storage the Go garbage collector never scans.
//
// # Why
//
// Discord's Go read-state service kept an LRU of pointer-rich objects; every
// GC cycle (at least one per two minutes) traced the whole cache and latency
// spiked. Here a read state is a 32-byte struct with no pointers, stored
// inline in an arena: one mmap'd region outside the Go heap (a zeroed
// []entry on the heap where mmap is unavailable). The GC sees a few
// hundred slice headers, whatever the number of read states, and the arena
// does not raise the heap goal.
//
// # Layout
//
// A user's read states share one shard, picked by the high bits of the
// xxhash of the user_id: a flush hands a user's changes to the writer
// together, and a multi-get or transaction of one user takes one lock. The
// low 32 bits of the xxhash of (user, channel) pick a home slot in the
// shard's slice of the arena. Each shard
// is an open-addressing table with linear probing, kept at most 85% full:
// about 37.6 bytes of arena per read state, and a hit usually reads one
// cache line (two slots) with no other memory access. Deletion shifts the
// rest of the probe run back (no tombstones), so a table under constant
// eviction never fills with them (see Eviction for how its runs stay
// short).
//
//	entry (32 bytes): user int64 | channel int64 | last_message_id int64 |
//	                  mention_count int32 | meta uint32 (flags, version)
//
// # Eviction
//
// A shard at capacity evicts by CLOCK: a hit sets a reference bit in the
// entry it already touched (no extra memory access, unlike an LRU list);
// the hand clears bits and takes the first entry whose bit is clear. A
// clean entry is dropped. A dirty one is offered to Config.WriteBack. The
// hand visits a shard's slots a fixed stride apart, not in order, so
// evictions are spread over the shard and its probe runs stay as short
// as at random: a hand that swept the slots in order left the region
// ahead of it near full, one long probe run.
//
// # Write-behind contract
//
// An unwritten change always has exactly one owner: the table (the entry is
// dirty) or WriteBack (it took a snapshot). Ownership moves, under the
// shard lock, in one direction only:
//
//   - Every change that alters a state marks its entry dirty.
//   - Eviction and Flush offer a dirty entry's snapshot to WriteBack. If it
//     takes it (Taken, TakenFull), the entry is removed or marked clean, and
//     WriteBack must write the snapshot and serve it to read-through until
//     it is written. If it refuses (its queue is full and does not hold the
//     key), the entry stays dirty and is pinned: never evicted. When nothing can be evicted, inserting fails with
//     ErrFull and changes nothing: the table never drops an unwritten change.
//   - Handing over at flush time, rather than marking clean after the write,
//     needs no per-entry version, so no version can wrap or repeat after a
//     reload (an ABA race that would silently lose a change).
//   - Snapshots carry a stamp from a clock that strictly increases, taken
//     under the shard lock: a later state of a key always has a higher
//     stamp, so a store that keeps the highest stamp is never rolled back
//     by a late write. The clock follows the wall clock but never issues a
//     stamp below one passed to Fill or Observe (the stored stamps), so a
//     wall clock behind the store cannot put a change below an old one.
//   - OnChange, if set, sees every change as it is made (the state after
//     it, with a stamp of the same clock), under the shard lock: a journal
//     of changes needs nothing else to be replayed in order.
//   - Read-through: Reserve puts a loading placeholder where a missing key
//     goes, so no other state of the key can appear while the caller loads
//     it; Fill or Abort ends the load.
//   - Insert adds a clean entry read from the store without a
//     placeholder (a user's whole partition), only if the key is absent
//     and the caller's check, made under the shard lock, still holds;
//     OnRemove reports every state that leaves the table, so the caller
//     can tell that what it read may have been overtaken meanwhile.
//
// # Concurrency
//
// All methods are safe for concurrent use. Each shard has one mutex; an
// operation holds exactly one shard lock, and WriteBack and OnChange run
// under it. A command's operation holds it for one key's (or one user's)
// work; Flush for a bounded slice of a shard at a time, so a command
// never waits behind a whole shard's scan.
//
// # Benchmark baseline
//
// Built with -tags ptrcache, Table is instead the pointer-rich LRU that
// the arena replaces (ptrtable.go), with the same API and semantics, for
// the latency-under-GC benchmark only. Implementation names the one built.
package cache
