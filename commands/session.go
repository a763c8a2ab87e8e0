package commands

import (
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/readstates/readstates/cache"
)

// Session is the state of one client connection: protocol version,
// authentication, client name. The server creates one per connection
// (NewSession) and passes it to every Dispatch on that connection.
//
// Invariants: the fields without a lock are used only by the connection's
// own goroutine, one command at a time. The fields that CLIENT LIST and
// INFO read from other connections are either atomic or under mu.
type Session struct {
	id      int64
	addr    string
	laddr   string
	created time.Time
	// loopback: the client is on the loopback interface (see
	// Dispatcher.denied).
	loopback bool

	// Owned by the connection's goroutine.
	authed  bool
	closing bool // the last reply was the last one: close after flushing
	failed  bool // the current command's reply is an error
	// rejected: the current command was refused before it ran: its slot
	// is not served here (route), or MULTI would not queue it.
	rejected bool
	errs     *errorStats // the dispatcher's, where error replies are counted
	// deferred: the current command would have waited, run by
	// DispatchNoWait, and wrote no reply.
	deferred bool
	// deferredAt: when the deferred command was first dispatched, until
	// the run that answers it.
	deferredAt time.Time
	// looked: the deferred command's try looked its read states up in
	// the cache (it was not deferred before, by a slot being moved), so
	// that its run again goes to Config.Rerun, which counts no lookup;
	// rerun: the current command is that run.
	looked, rerun bool
	noWait        bool // the current command runs on the view that never waits
	scratch       []byte
	ids           []int64       // RSMGET's channel_ids
	states        []cache.State // RSMGET's results before they are written
	ahead         []cache.Key   // Prefetch's keys
	multi         *txQueue      // between MULTI and EXEC (nil otherwise)
	replyOff      bool          // CLIENT REPLY OFF
	// Client-side caching (tracking.go). track is the mode, written by
	// the connection's goroutine and read by the tracker.
	track      atomic.Int32
	caching    int8               // CLIENT CACHING: 1 yes, -1 no, for the next command
	cachingSet bool               // the current command is CLIENT CACHING
	tracked    map[int64]struct{} // users whose list s is in; tracker.mu
	pushSeq    atomic.Uint64      // invalidations queued so far
	push       struct {
		mu      sync.Mutex
		seq     uint64
		pending []pushed
		busy    bool // a batch of commands runs: see BeginBatch
		send    func(take func([]byte) []byte)
		taken   atomic.Uint64 // seq of the last invalidation taken
	}
	skipNext bool       // CLIENT REPLY SKIP: mute the next command's reply
	tx       ReadStates // inside EXEC: the transaction's view

	// Readable by any goroutine.
	proto    atomic.Int32
	commands atomic.Uint64 // commands dispatched on this connection
	mu       struct {
		sync.Mutex
		name    string
		libName string
		libVer  string
	}
}

// NewSession returns the state of a new connection: RESP2, not
// authenticated, no name. id is the connection's id, unique for the life of
// the server (CLIENT ID, HELLO); addr and laddr are the remote and local
// addresses shown by CLIENT LIST. addr ("ip:port") also tells whether the
// client is on the loopback interface; an address that is not an IP
// address and port (say a Unix socket's) counts as not loopback.
func NewSession(id int64, addr, laddr string, now time.Time) *Session {
	s := &Session{id: id, addr: addr, laddr: laddr, created: now, loopback: isLoopback(addr)}
	s.proto.Store(RESP2)
	return s
}

// Deferred reports whether the last Dispatch deferred its command: it
// would have waited, run by DispatchNoWait, so it
// ran no further and wrote no reply.
func (s *Session) Deferred() bool { return s.deferred }

// Addr returns the client's address ("ip:port").
func (s *Session) Addr() string { return s.addr }

// ID returns the connection's id.
func (s *Session) ID() int64 { return s.id }

// Protocol returns the connection's RESP version, 2 or 3.
func (s *Session) Protocol() int { return int(s.proto.Load()) }

// Closing reports whether the connection must be closed once the replies
// written so far are flushed (after QUIT or SHUTDOWN). The server must not
// dispatch further commands of the connection; Dispatch ignores them if it
// does. Only the connection's goroutine may call it.
func (s *Session) Closing() bool { return s.closing }

// Commands returns how many commands were dispatched on the connection.
// Any goroutine may call it.
func (s *Session) Commands() uint64 { return s.commands.Load() }

// Name returns the name set by CLIENT SETNAME or HELLO SETNAME, "" if none.
// Any goroutine may call it.
func (s *Session) Name() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mu.name
}

func (s *Session) setName(name string) {
	s.mu.Lock()
	s.mu.name = name
	s.mu.Unlock()
}

// maxKept bounds the RSMGET buffers a session keeps between commands: a
// connection that once asked for 10,000 channels should not hold 240 KB
// for the rest of its life.
const maxKept = 256

// mgetBufs returns buffers for n channel_ids and their read states,
// reusing the session's.
func (s *Session) mgetBufs(n int) ([]int64, []cache.State) {
	if cap(s.ids) >= n {
		return s.ids[:n], s.states[:n]
	}
	ids, states := make([]int64, n), make([]cache.State, n)
	if n <= maxKept {
		s.ids, s.states = ids, states
	}
	return ids, states
}

// isLoopback reports whether addr ("ip:port") is on the loopback interface
// (127.0.0.0/8, ::1, or an IPv4-mapped 127.x).
func isLoopback(addr string) bool {
	ap, err := netip.ParseAddrPort(addr)
	return err == nil && ap.Addr().Unmap().IsLoopback()
}
