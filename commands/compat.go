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
	d.trackOff(s) // as Redis: RESET turns client-side caching off
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

// CLIENT KILL ip:port, or CLIENT KILL <filter value> ... with the filters
// ID, ADDR, LADDR, USER, TYPE (normal) and SKIPME (yes by default), as
// Redis: the old form answers +OK or "No such client", the new one the
// number of clients closed.
func clientKill(_ context.Context, d *Dispatcher, w Writer, s *Session, args [][]byte) {
	if d.host == nil {
		s.writeError(w, "ERR CLIENT KILL is not available")
		return
	}
	if len(args) == 3 {
		addr := string(args[2])
		if d.host.Kill(func(o *Session) bool { return o.addr == addr }) == 0 {
			s.writeError(w, "ERR No such client")
			return
		}
		writeOK(w)
		return
	}
	if len(args)%2 != 0 {
		s.writeError(w, errSyntax)
		return
	}
	var (
		id          int64 = -1
		addr, laddr string
		skipMe      = true
		noneMatch   bool // a filter no client can match (another user, type)
	)
	for i := 2; i < len(args); i += 2 {
		k, v := args[i], args[i+1]
		switch {
		case equalFold("id", k):
			n, ok := parseInt64(v)
			if !ok || n <= 0 {
				s.writeError(w, "ERR client-id should be greater than 0")
				return
			}
			id = n
		case equalFold("addr", k):
			addr = string(v)
		case equalFold("laddr", k):
			laddr = string(v)
		case equalFold("user", k):
			noneMatch = noneMatch || string(v) != "default"
		case equalFold("type", k):
			switch {
			case equalFold("normal", v):
			case equalFold("master", v), equalFold("replica", v), equalFold("slave", v), equalFold("pubsub", v):
				noneMatch = true
			default:
				s.writeError(w, "ERR Unknown client type '"+string(v)+"'")
				return
			}
		case equalFold("skipme", k):
			switch {
			case equalFold("yes", v):
				skipMe = true
			case equalFold("no", v):
				skipMe = false
			default:
				s.writeError(w, errSyntax)
				return
			}
		default:
			s.writeError(w, errSyntax)
			return
		}
	}
	if noneMatch {
		w.WriteInt64(0)
		return
	}
	n := d.host.Kill(func(o *Session) bool {
		return (id < 0 || o.id == id) && (addr == "" || o.addr == addr) &&
			(laddr == "" || o.laddr == laddr) && !(skipMe && o == s)
	})
	w.WriteInt64(int64(n))
}
