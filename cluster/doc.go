// Package cluster makes readstates processes one service: nodes over one
// Cassandra cluster, each serving the users of its hash slots, found by
// clients through the Redis Cluster protocol. Cassandra is the only
// coordinator: membership and ownership are rows changed by lightweight
// transactions (Paxos compare-and-set); the nodes never talk to each
// other.
//
// # Slots and groups
//
// The key of every read-state command is its user_id: slot =
// CRC16(user_id) mod 16384, as Redis Cluster computes it (Slot), so a
// client routes by the bytes it sends. A user's read states stay on one
// node. A user is served by the node of the slot of its canonical
// spelling (decimal, no leading zero): a node that a padded id ("042",
// hashed by the client as sent) reaches serves it if it serves the user,
// and refuses it otherwise, so one user is served by one node.
//
// Slots are owned in Groups (256) of GroupSlots (64) consecutive slots:
// a hand-over is then one transaction per group, and the map one read of
// 256 rows. Each group row holds its owner, the owner's incarnation, and
// an epoch that grows at every change of hands.
//
// # Leases
//
// A node's row (NodeRow) is its lease: the node raises its Seq every
// Lease/4 by compare-and-set. It serves its groups only while
// Lease - Margin has not passed, by its own monotonic clock, since the
// start of its last successful renewal. Another node declares it down
// only after watching its row unchanged for Lease + Margin by its own
// monotonic clock, and by compare-and-set on that unchanged row; only then
// are its groups orphans that others may claim. A node that finds its
// row declared down drops every read state it holds and registers again,
// as a new incarnation: groups held by an older incarnation are orphans
// too, so a restarted or resumed node never serves what it held before
// without claiming it again.
//
// The wall clock is never read. The assumptions, and what breaks without
// them:
//   - Clock rates differ by less than Margin/Lease (default 20%): the
//     owner stops before any other node can take over. A faster drift
//     could let a node serve a group for a moment after another took it.
//   - A node checks its lease before every command (Node.Enter), but a
//     command already past the check when the process pauses finishes when
//     it resumes: its change is acknowledged but stays in a cache the node
//     drops when it learns it was declared down (at its next renewal). Such
//     a change is lost; it is never written over a newer one (fencing).
//   - Cassandra's lightweight transactions are linearizable (SERIAL or
//     LOCAL_SERIAL with one data center).
//
// # Balance and hand-over
//
// Every node computes the same plan from the same map (plan): the live
// nodes share the groups fairly (the first by ID take one more); groups
// nobody holds go to the nodes below their share; a node above its share
// (all of it, if it is leaving) gives its highest groups to the nodes
// below theirs. Maps read at different times may disagree: a
// compare-and-set then fails and the next round, every Poll, settles it.
//
// A hand-over by the owner: it stops serving the groups (TRYAGAIN), waits
// for the commands running on them, writes every change to Cassandra
// (Host.Release: the engine's Sync) and drops their read states, then
// writes the new owner. The new owner reads the map every Poll and, when
// it finds a group newly its own, drops anything it kept of it and serves
// it, reading through. The old owner's verdict is TRYAGAIN for 2*Poll
// after the hand-over (the new owner may not know yet), then MOVED; the
// commands layer holds a command through TRYAGAIN for up to 2 s, so a
// client usually sees only the MOVED. No change is
// lost: every acknowledged change was written before the new owner could
// read. A write whose outcome is unknown (a timeout) leaves the group
// unserved until a SERIAL read settles it.
//
// With Config.WarmRate, the old owner also records, before it writes the
// new owner, the users of each group it held (at most maxWarmUsers, used
// last first) under the group's next epoch (Store.PutWarmUsers); the new
// owner, once it serves the group at that epoch, reads their partitions
// back at WarmRate users a second, each read counted as a command on the
// user's slot (so a hand-over away waits for it). The record is a hint: a
// group claimed without a hand-over (its owner died) has none, and its
// users are read on demand.
//
// # Fencing
//
// Write stamps are logical in cluster mode (persist.EngineConfig's
// LogicalStamps): one above the highest issued, loaded or fenced, never
// from a clock. Each node publishes its highest stamp at every renewal
// (StampHW). A node that takes groups whose owner did not hand them over
// first raises its stamps FenceGap (2^40) above that owner's last
// published stamp: more than a node can issue between two renewals. So a
// paused or partitioned old owner, whose flushes and retries still carry
// its old changes, writes below every stamp of the new owner, and
// Cassandra (last write wins by timestamp) keeps the new owner's values.
// Each takeover spends 2^40 of the 2^63 stamps: eight million takeovers.
//
// # Failures
//
//	event                         what happens                                   lost
//	SIGTERM (Leave)               groups handed over, then the node exits        nothing
//	a node joins                  the others hand it its share                   nothing
//	kill -9, power loss           Lease+Margin after its last renewal the        what it had not written
//	                              others claim its groups, fenced                (a restart replays its
//	                                                                             journal, below the new
//	                                                                             owners' stamps: what they
//	                                                                             did not change comes back)
//	pause/partition > lease       as kill -9; when it resumes it serves          what it had not written
//	                              nothing (lease lapsed), learns it was
//	                              declared down, drops its read states
//	Cassandra down < lease        nodes keep serving; renewals fail              nothing
//	Cassandra down > lease        leases lapse: TRYAGAIN for every slot;         nothing acknowledged
//	                              service resumes when renewals succeed
//	hand-over write fails         the giver keeps serving, retries later         nothing
//	LWT timeout on a hand-over    group unserved until a SERIAL read settles it  nothing
package cluster
