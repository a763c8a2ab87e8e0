package commands

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"
)

// Client-side caching, as Redis 6+ does it (CLIENT TRACKING, RESP3
// "invalidate" pushes), for the read states. The key of every read-state
// command is its user_id, so a client that read one of a user's read
// states with tracking on is sent an invalidation of that user when any of
// the user's read states changes.
//
// How the invalidation never comes too late:
//   - A read registers its user in the tracking table before it reads, so
//     a change after the registration is always reported (a change in
//     between reports once more than needed, which costs a refetch).
//   - A change reports to the table from inside the engine, under the
//     lock of the read state's cache shard (ChangeSource), so by the time
//     any client can read the new state the invalidation is queued on
//     every session that tracks the user.
//   - A session places the invalidations queued while one of its commands
//     ran both before that command's reply (the command may have read the
//     new state) and after it (it may have read the old one, which the
//     client must not keep); those queued before the command went before
//     its reply. Between batches of commands the connection's driver sends
//     them as they come (Session.SetPusher).
//
// Supported: the default mode, OPTIN and OPTOUT (CLIENT CACHING), NOLOOP
// (accepted; a client also hears of its own changes, which is safe), RESP3
// only. Not supported, refused with an error: BCAST and PREFIX, and
// REDIRECT (it needs Pub/Sub, which this server does not have).

// ChangeSource reports every change of a read state (persist.Engine).
type ChangeSource interface {
	// Watch makes fn be called with the user_id of every read state that
	// changes, before the change can be read by anyone else (under the
	// read state's lock). fn must not block. Watch is called once.
	Watch(fn func(user int64))
}

// Tracking modes of a session.
const (
	trackOff = iota
	trackDefault
	trackOptIn
	trackOptOut
)

// DefaultTrackingTableMaxKeys is Redis's tracking-table-max-keys default.
const DefaultTrackingTableMaxKeys = 1_000_000

// tracker is the tracking table: for each user, the sessions that may hold
// one of its read states in their cache.
//
// Invariant: s is in users[u] exactly when u is in s.tracked (both
// guarded by mu), so the sessions that turn tracking off or go leave
// nothing behind, and a read finds whether it is registered in O(1).
//
// Lock order: a cache shard (the engine calls changed under it), then
// tracker.mu, then a session's push.mu.
type tracker struct {
	active  atomic.Int32 // sessions with tracking on: 0 costs changed nothing
	maxKeys int
	mu      struct {
		sync.Mutex
		users map[int64][]*Session
	}
}

func newTracker(maxKeys int) *tracker {
	t := &tracker{maxKeys: maxKeys}
	t.mu.users = make(map[int64][]*Session)
	return t
}

// changed is ChangeSource's callback: every session tracking user is sent
// an invalidation, and forgets it until it reads the user again.
func (t *tracker) changed(user int64) {
	if t.active.Load() == 0 {
		return
	}
	t.mu.Lock()
	sessions, ok := t.mu.users[user]
	if ok {
		delete(t.mu.users, user)
		for _, s := range sessions {
			delete(s.tracked, user)
		}
	}
	t.mu.Unlock()
	for _, s := range sessions {
		s.invalidate(user)
	}
}

// forget takes s out of the lists of every user it tracks: it turned
// tracking off, or its connection is gone.
func (t *tracker) forget(s *Session) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for user := range s.tracked {
		list := t.mu.users[user]
		for i, o := range list {
			if o == s {
				list[i] = list[len(list)-1]
				list[len(list)-1] = nil
				list = list[:len(list)-1]
				break
			}
		}
		if len(list) == 0 {
			delete(t.mu.users, user)
		} else {
			t.mu.users[user] = list
		}
	}
	s.tracked = nil
}

// register records that s is about to read user, if its mode says the
// read is tracked. Called before the read.
func (d *Dispatcher) register(s *Session, user int64) {
	switch s.track.Load() {
	case trackOff:
		return
	case trackOptIn:
		if s.caching <= 0 {
			return
		}
	case trackOptOut:
		if s.caching < 0 {
			return
		}
	}
	t := d.tracker
	t.mu.Lock()
	if _, ok := s.tracked[user]; ok {
		t.mu.Unlock()
		return
	}
	if s.tracked == nil {
		s.tracked = make(map[int64]struct{})
	}
	s.tracked[user] = struct{}{}
	t.mu.users[user] = append(t.mu.users[user], s)
	// Over the bound: forget other users, telling their sessions to drop
	// what they cached (Redis evicts the same way).
	var evicted []int64
	var lists [][]*Session
	for u, l := range t.mu.users {
		if len(t.mu.users) <= t.maxKeys {
			break
		}
		if u == user {
			continue
		}
		delete(t.mu.users, u)
		for _, o := range l {
			delete(o.tracked, u)
		}
		evicted, lists = append(evicted, u), append(lists, l)
	}
	t.mu.Unlock()
	for i, u := range evicted {
		for _, o := range lists[i] {
			o.invalidate(u)
		}
	}
}

// invalidate queues the invalidation of user on s, and hands it to the
// connection's driver at once if no batch of s's commands is running.
func (s *Session) invalidate(user int64) {
	if s.track.Load() == trackOff {
		return // turned off, or the connection is gone
	}
	s.push.mu.Lock()
	defer s.push.mu.Unlock()
	s.push.seq++
	s.push.pending = append(s.push.pending, pushed{user: user, seq: s.push.seq})
	s.pushSeq.Store(s.push.seq)
	if !s.push.busy && s.push.send != nil {
		s.push.send(s.takeLocked)
	}
}

// pushed is an invalidation waiting to be sent.
type pushed struct {
	user int64
	seq  uint64
}

// appendInvalidate appends the RESP3 push ">2 invalidate [user]".
func appendInvalidate(b []byte, user int64) []byte {
	var num [20]byte
	u := strconv.AppendInt(num[:0], user, 10)
	b = append(b, ">2\r\n$10\r\ninvalidate\r\n*1\r\n$"...)
	b = strconv.AppendInt(b, int64(len(u)), 10)
	b = append(b, "\r\n"...)
	b = append(b, u...)
	return append(b, "\r\n"...)
}

// SetPusher sets what the connection's driver does when an invalidation
// is queued while no batch of the session's commands runs: send may call
// take to append the queued invalidations to a buffer and send that, or
// arrange for TakePushes to be called soon. It must not block (it is
// called under the engine's locks) and must not call the Session.
func (s *Session) SetPusher(send func(take func([]byte) []byte)) {
	s.push.mu.Lock()
	s.push.send = send
	s.push.mu.Unlock()
}

// Tracking reports whether the session may be sent invalidations: its
// driver then calls BeginBatch, PlacePushes and EndBatch around its
// commands.
func (s *Session) Tracking() bool { return s.pushSeq.Load() != 0 || s.track.Load() != trackOff }

// BeginBatch marks the start of a batch of the session's commands: queued
// invalidations wait for PlacePushes and EndBatch.
func (s *Session) BeginBatch() {
	s.push.mu.Lock()
	s.push.busy = true
	s.push.mu.Unlock()
}

// PushMark is what PlacePushes needs to know of the command it follows:
// where its reply starts in the reply buffer, and the last invalidation
// queued before it ran.
type PushMark struct {
	at  int
	seq uint64
}

// Mark returns the PushMark of a command about to run, whose reply will
// start at offset at of the reply buffer.
func (s *Session) Mark(at int) PushMark { return PushMark{at: at, seq: s.pushSeq.Load()} }

// PlacePushes puts the invalidations queued so far into b, the reply
// buffer, around the reply of the command marked m (see the comment at
// the top of tracking.go).
func (s *Session) PlacePushes(b []byte, m PushMark) []byte {
	if s.pushSeq.Load() == s.push.taken.Load() {
		return b // nothing queued
	}
	s.push.mu.Lock()
	pending := s.push.pending
	s.push.pending = s.push.pending[:0:0]
	if n := len(pending); n > 0 {
		s.push.taken.Store(pending[n-1].seq)
	}
	s.push.mu.Unlock()
	if len(pending) == 0 {
		return b
	}
	reply := append([]byte(nil), b[m.at:]...)
	b = b[:m.at]
	for _, p := range pending {
		b = appendInvalidate(b, p.user)
	}
	b = append(b, reply...)
	for _, p := range pending {
		if p.seq > m.seq {
			b = appendInvalidate(b, p.user)
		}
	}
	return b
}

// EndBatch appends the invalidations queued since the batch's last command
// to b, the batch's replies, hands b to deliver, and only then lets
// invalidations be sent as they come again: one queued after the batch's
// reads cannot overtake its replies.
func (s *Session) EndBatch(b []byte, deliver func([]byte) error) error {
	s.push.mu.Lock()
	defer s.push.mu.Unlock()
	s.push.busy = false
	return deliver(s.takeLocked(b))
}

// TakePushes appends the queued invalidations to b, unless a batch of the
// session's commands is running (its EndBatch will).
func (s *Session) TakePushes(b []byte) []byte {
	s.push.mu.Lock()
	defer s.push.mu.Unlock()
	if s.push.busy {
		return b
	}
	return s.takeLocked(b)
}

func (s *Session) takeLocked(b []byte) []byte {
	for _, p := range s.push.pending {
		b = appendInvalidate(b, p.user)
	}
	if n := len(s.push.pending); n > 0 {
		s.push.taken.Store(s.push.pending[n-1].seq)
		s.push.pending = s.push.pending[:0:0]
	}
	return b
}

// Closed tells the dispatcher that s's connection is gone: it is sent
// nothing more.
func (d *Dispatcher) Closed(s *Session) { d.trackOff(s) }

func (d *Dispatcher) trackOff(s *Session) {
	if s.track.Swap(trackOff) == trackOff {
		return
	}
	d.tracker.forget(s)
	d.tracker.active.Add(-1)
	s.push.mu.Lock()
	s.push.pending = nil
	s.push.mu.Unlock()
}

// CLIENT TRACKING ON|OFF [REDIRECT id] [PREFIX p ...] [BCAST] [OPTIN]
// [OPTOUT] [NOLOOP]
func clientTracking(_ context.Context, d *Dispatcher, w Writer, s *Session, args [][]byte) {
	on := equalFold("on", args[2])
	if !on && !equalFold("off", args[2]) {
		s.writeError(w, errSyntax)
		return
	}
	mode := int32(trackDefault)
	for i := 3; i < len(args); i++ {
		switch a := args[i]; {
		case equalFold("optin", a):
			if mode == trackOptOut {
				s.writeError(w, "ERR You can't use both OPTIN and OPTOUT")
				return
			}
			mode = trackOptIn
		case equalFold("optout", a):
			if mode == trackOptIn {
				s.writeError(w, "ERR You can't use both OPTIN and OPTOUT")
				return
			}
			mode = trackOptOut
		case equalFold("noloop", a):
		case equalFold("bcast", a), equalFold("prefix", a):
			s.writeError(w, "ERR CLIENT TRACKING BCAST and PREFIX are not supported by this server")
			return
		case equalFold("redirect", a):
			s.writeError(w, "ERR CLIENT TRACKING REDIRECT is not supported by this server (it needs Pub/Sub): use RESP3 (HELLO 3) and receive the invalidations on the same connection")
			return
		default:
			s.writeError(w, errSyntax)
			return
		}
	}
	if !on {
		d.trackOff(s)
		writeOK(w)
		return
	}
	if d.changes == nil {
		s.writeError(w, "ERR CLIENT TRACKING is not available: the backend does not report changes")
		return
	}
	if s.Protocol() != RESP3 {
		s.writeError(w, "ERR CLIENT TRACKING needs RESP3 here (HELLO 3): REDIRECT, the RESP2 way, is not supported")
		return
	}
	if old := s.track.Load(); (old == trackOptIn && mode == trackOptOut) || (old == trackOptOut && mode == trackOptIn) {
		s.writeError(w, "ERR You can't switch OPTIN/OPTOUT mode before disabling tracking for this client, and then re-enabling it with a different mode.")
		return
	}
	if old := s.track.Swap(mode); old == trackOff {
		d.tracker.active.Add(1)
		// This command runs inside a batch of the session's commands that
		// its driver began without BeginBatch (nothing was tracked):
		// from now on, invalidations wait for the batch's EndBatch, so
		// none overtakes the replies of this batch's reads.
		s.BeginBatch()
	}
	s.caching = 0
	writeOK(w)
}

// CLIENT CACHING YES|NO: whether the next command's reads are tracked
// (OPTIN: YES tracks them; OPTOUT: NO does not).
func clientCaching(_ context.Context, _ *Dispatcher, w Writer, s *Session, args [][]byte) {
	mode := s.track.Load()
	yes := equalFold("yes", args[2])
	switch {
	case !yes && !equalFold("no", args[2]):
		s.writeError(w, errSyntax)
	case mode != trackOptIn && mode != trackOptOut:
		s.writeError(w, "ERR CLIENT CACHING can be called only when the client is in tracking mode with OPTIN or OPTOUT mode enabled")
	case yes && mode != trackOptIn:
		s.writeError(w, "ERR CLIENT CACHING YES is only valid when tracking is enabled in OPTIN mode.")
	case !yes && mode != trackOptOut:
		s.writeError(w, "ERR CLIENT CACHING NO is only valid when tracking is enabled in OPTOUT mode.")
	default:
		s.caching = -1
		if yes {
			s.caching = 1
		}
		s.cachingSet = true
		writeOK(w)
	}
}

// CLIENT TRACKINGINFO
func clientTrackingInfo(_ context.Context, _ *Dispatcher, w Writer, s *Session, _ [][]byte) {
	s.writeMap(w, 3)
	w.WriteBulkString("flags")
	var flags []string
	switch s.track.Load() {
	case trackOff:
		flags = []string{"off"}
	case trackDefault:
		flags = []string{"on"}
	case trackOptIn:
		flags = []string{"on", "optin"}
		if s.caching > 0 {
			flags = append(flags, "caching-yes")
		}
	case trackOptOut:
		flags = []string{"on", "optout"}
		if s.caching < 0 {
			flags = append(flags, "caching-no")
		}
	}
	writeStatusSet(w, s, flags)
	w.WriteBulkString("redirect")
	if s.track.Load() == trackOff {
		w.WriteInt64(-1)
	} else {
		w.WriteInt64(0)
	}
	w.WriteBulkString("prefixes")
	w.WriteArray(0)
}

// CLIENT GETREDIR: -1 without tracking, 0 with it (never redirected here).
func clientGetRedir(_ context.Context, _ *Dispatcher, w Writer, s *Session, _ [][]byte) {
	if s.track.Load() == trackOff {
		w.WriteInt64(-1)
		return
	}
	w.WriteInt64(0)
}
