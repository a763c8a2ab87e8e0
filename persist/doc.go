// Package persist keeps read states durable: the write-behind Engine
// between the in-memory cache and a Store, the Store contract, and the
// errors and figures its callers see. The Stores live in packages of their
// own, so that what imports persist (the commands) links no database
// driver: cassandrastore (production), pebblestore (the embedded
// default); storetest is the contract's conformance suite, and journal the
// local journal of changes.
//
// # What it promises
//
//   - Nothing acknowledged is lost while the process lives: a change stays
//     in the cache (dirty) or in the Engine's pending queue until a Store
//     write that contains it succeeds. Failed writes are retried with
//     backoff, forever; when neither the cache nor the queue can hold more,
//     new read states are refused with cache.ErrFull instead.
//   - Every change is handed to the writer within the flush interval, and
//     on Close (graceful shutdown) everything is written before it returns.
//   - With a journal (EngineConfig.Journal), every change is appended to it
//     under its shard lock, before the operation returns, and the journal
//     is replayed into the queue by NewEngine: a crash loses only what the
//     journal had not yet handed to the kernel (see package journal), with
//     the Store reachable or not, and a Close that cannot reach the Store
//     leaves everything in the journal. The periodic flush also cuts the
//     journal (Engine.checkpoint), so it stays bounded by the backlog.
//     Without a journal, a crash loses what changed in the last flush
//     interval plus what was queued but not yet written.
//   - Read-through never returns a state older than the newest: a miss
//     looks at the pending queue before the database, atomically with
//     respect to eviction (see cache.Table.Reserve). Concurrent misses of
//     one key make one database read. A failed read is an error, never a
//     zero state that a later flush would write over the real one.
//   - A user's read states are read and written a partition at a time: a
//     miss reads its user's partition (up to EngineConfig.UserPage read
//     states) in one query and fills the cache with the rest, as clean
//     entries; a user read whole needs no query for a channel it never
//     had. Neither shortcut serves what the store said before a newer
//     state of the key left memory (see user.go: generations). Writers
//     take the queue a whole user at a time, so a store that writes a
//     partition per request (Cassandra) gets each user's rows together.
//   - Writes carry stamps that strictly increase per key, and every Store
//     keeps the highest: Cassandra by USING TIMESTAMP, Pebble by a merge
//     operator. A retried or late write never rolls a state back. Loads
//     return the stored stamp and the cache's clock never issues a stamp
//     below one it has loaded, so a write is above what the Store holds
//     whatever the wall clock says (a restart after a clock step back, a
//     process moved to another host). A key is
//     in at most one write at a time, however many writers run
//     (EngineConfig.Writers).
//   - On the Engine's NoWait view, an operation never waits: what
//     the cache cannot serve alone fails with ErrWouldBlock having changed
//     nothing (the server's event loops run commands so, and hand those to
//     a goroutine that may wait, which runs them on the Rerun view).
//   - Stats' Hits and Misses count one lookup per read state an operation
//     names, at its first look, as Redis counts keyspace_hits: a
//     read-through's looks again, and the Rerun view's, count nothing.
package persist
