// Package persist keeps read states durable: the write-behind Engine
// between the in-memory cache and a Store, and the two Stores, Cassandra
// (production) and Pebble (the embedded default).
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
//     A crash (kill -9) loses at most what changed in the last flush
//     interval plus what was queued but not yet written.
//   - Read-through never returns a state older than the newest: a miss
//     looks at the pending queue before the database, atomically with
//     respect to eviction (see cache.Table.Reserve). Concurrent misses of
//     one key make one database read. A failed read is an error, never a
//     zero state that a later flush would write over the real one.
//   - Writes carry stamps that strictly increase per key, and every Store
//     keeps the highest: Cassandra by USING TIMESTAMP, Pebble by a merge
//     operator. A retried or late write never rolls a state back. A key is
//     in at most one write at a time, however many writers run
//     (EngineConfig.Writers).
//   - Under a context from WithoutWaiting, an operation never waits: what
//     the cache cannot serve alone fails with ErrWouldBlock having changed
//     nothing (the server's event loops run commands so, and hand those to
//     a goroutine that may wait).
package persist
