package commands

import (
	"context"
)

// Smaller commands that clients send and expect Redis's replies to:
// RESET, ROLE, READONLY/READWRITE, CLIENT REPLY and CLIENT NO-EVICT.

// RESET: the connection back to its state after connecting: no
// transaction, RESP2, replies on, and (with a password) not
// authenticated.
func reset(_ context.Context, d *Dispatcher, w Writer, s *Session, _ [][]byte) {
	s.multi = nil
	s.replyOff, s.skipNext = false, false
	s.proto.Store(RESP2)
	if d.pass != "" {
		s.authed = false
	}
	w.WriteString("RESET")
}

// PTTL user_id: -1, "a key without an expiry": read states never expire
// (a user never read or written reads as zeros). rueidis asks it of every
// reply it caches.
func pttl(_ context.Context, _ *Dispatcher, w Writer, s *Session, args [][]byte) {
	if _, ok := parseID(args[1]); !ok {
		s.writeError(w, invalidArg(argUserID, args[1], idRange))
		return
	}
	w.WriteInt64(-1)
}

// ROLE: a primary with no replicas, as a standalone Redis answers.
func role(_ context.Context, _ *Dispatcher, w Writer, _ *Session, _ [][]byte) {
	w.WriteArray(3)
	w.WriteBulkString("master")
	w.WriteInt64(0)
	w.WriteArray(0)
}

// READONLY, READWRITE: cluster commands, refused as a Redis without
// cluster support refuses them (clients use the reply to detect the mode).
func clusterDisabled(_ context.Context, _ *Dispatcher, w Writer, s *Session, _ [][]byte) {
	s.writeError(w, "ERR This instance has cluster support disabled")
}

// CLIENT REPLY ON|OFF|SKIP. ON answers +OK; OFF and SKIP answer nothing
// (see Dispatcher.dispatch, which mutes the replies).
func clientReply(_ context.Context, _ *Dispatcher, w Writer, s *Session, args [][]byte) {
	switch {
	case equalFold("on", args[2]):
		s.replyOff, s.skipNext = false, false
		writeOK(w)
	case equalFold("off", args[2]):
		s.replyOff = true
	case equalFold("skip", args[2]):
		s.skipNext = true
	default:
		s.writeError(w, errSyntax)
	}
}

// CLIENT NO-EVICT ON|OFF: accepted, and true of every client here: the
// server never closes a client to free memory (only a client past its
// output limit, which NO-EVICT does not lift in Redis either).
func clientNoEvict(_ context.Context, _ *Dispatcher, w Writer, s *Session, args [][]byte) {
	if !equalFold("on", args[2]) && !equalFold("off", args[2]) {
		s.writeError(w, errSyntax)
		return
	}
	writeOK(w)
}

// muted is the Writer of a command whose reply the client turned off
// (CLIENT REPLY OFF or SKIP): it drops everything. It holds nothing, so
// using it allocates nothing.
type muted struct{}

func (muted) WriteError(string)      {}
func (muted) WriteString(string)     {}
func (muted) WriteBulk([]byte)       {}
func (muted) WriteBulkString(string) {}
func (muted) WriteInt64(int64)       {}
func (muted) WriteArray(int)         {}
func (muted) WriteNull()             {}
func (muted) WriteRaw([]byte)        {}

// replyOn reports whether args is CLIENT REPLY ON, whose +OK is sent even
// while replies are off.
func replyOn(args [][]byte) bool {
	return len(args) == 3 && equalFold("client", args[0]) && equalFold("reply", args[1]) && equalFold("on", args[2])
}
