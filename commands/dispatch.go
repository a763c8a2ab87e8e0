package commands

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"strings"
	"sync/atomic"
	"time"

	"github.com/readstates/readstates/internal/latency"
)

// Config configures a Dispatcher.
type Config struct {
	// Backend serves the read-state commands. Required.
	Backend ReadStates
	// NoWait is the view of Backend whose operations never wait: they fail
	// with persist.ErrWouldBlock, changing nothing, where Backend would
	// wait for its database (persist.Engine.NoWait). DispatchNoWait runs
	// commands on it. Nil: DispatchNoWait runs them on Backend.
	NoWait ReadStates
	// Rerun is the view of Backend that Dispatch runs a command on that
	// DispatchNoWait deferred after looking its read states up: the
	// lookups, counted there, are not counted again
	// (persist.Engine.Rerun). Nil: Backend.
	Rerun ReadStates
	// Stats feeds INFO and DBSIZE; nil reports zeros.
	Stats StatsSource
	// Host is the server the dispatcher runs in (INFO clients, CLIENT LIST,
	// SHUTDOWN); nil for a dispatcher without one (tests).
	Host Host
	// RequirePass, if set, is the password of the default user: every
	// command but AUTH, HELLO and QUIT is refused with NOAUTH until the
	// connection authenticates.
	RequirePass string
	// MaxChannels caps the channel_ids of one RSMGET (default
	// DefaultMaxChannels). A larger request is refused with an error, so one
	// client cannot hold a connection's goroutine (and a megabyte reply)
	// for an unbounded number of read-throughs.
	MaxChannels int
	// Version is the readstates build reported by INFO.
	Version string
	// Params are the CONFIG GET parameters beyond the built-in ones (save,
	// appendonly, databases), e.g. the server's maxclients and timeout.
	// Names are lower case.
	Params []Param
	// Now is the clock for INFO uptime and CLIENT LIST ages; default
	// time.Now.
	Now func() time.Time
	// Changes, if set, reports every change of a read state, for client-side
	// caching (CLIENT TRACKING); without it CLIENT TRACKING is refused.
	Changes ChangeSource
	// TrackingTableMaxKeys bounds the users the tracking table remembers
	// (default DefaultTrackingTableMaxKeys), as Redis's
	// tracking-table-max-keys: past it, some are forgotten and their
	// clients told to drop them.
	TrackingTableMaxKeys int
	// Cluster, if set, makes the server a node of that cluster: commands
	// with a key run only on the node that serves its slot (the others
	// redirect with -MOVED), and CLUSTER describes the cluster.
	Cluster Cluster
	// Observe, if set, is called after every command with the command
	// (nil if unknown), whether its reply was an error, and how long it
	// took to run (the server's Prometheus metrics). It must not block.
	Observe func(cmd *Command, failed bool, d time.Duration)
	// ObserveRun, if set, is called with the run time of every command
	// that ran whole without waiting for the database (under
	// DispatchNoWait): the server's own time, so a slow one is the
	// server's (a flight recorder keeps its trace). It must not block.
	ObserveRun func(d time.Duration)
}

// Param is one CONFIG GET parameter.
type Param struct{ Name, Value string }

// DefaultMaxChannels is the default cap on the channel_ids of one RSMGET.
const DefaultMaxChannels = 10000

// RedisVersion is the Redis version the server claims to be compatible
// with (HELLO, INFO redis_version): clients and tools pick features by it.
// 7.4: Jedis and redis-py turn their client-side caches on only for a
// server that says it is Redis 7.4 or later, whose CLIENT TRACKING this
// server implements for the read states.
const RedisVersion = "7.4.0"

// Host is what the connection-level commands need to see of the server.
// Implementations are safe for concurrent use.
type Host interface {
	// HostStats returns the server's connection counters.
	HostStats() HostStats
	// EachSession calls fn for every connected client (CLIENT LIST). fn
	// must not block.
	EachSession(fn func(*Session))
	// Kill closes the connections whose sessions match (CLIENT KILL), as
	// if their clients had quit, and returns how many it closed.
	Kill(match func(*Session) bool) int
	// Shutdown begins a graceful shutdown (SHUTDOWN): stop serving, flush
	// every change, exit. It returns at once; an error means the server
	// cannot shut down on request.
	Shutdown() error
}

// HostStats are the server counters INFO reports.
type HostStats struct {
	Port                int
	ConnectedClients    int
	MaxClients          int
	TotalConnections    uint64
	RejectedConnections uint64
	TotalCommands       uint64
}

// Dispatcher runs commands. It is safe for concurrent use.
type Dispatcher struct {
	backend     ReadStates
	noWait      ReadStates
	rerun       ReadStates
	stats       StatsSource
	host        Host
	pass        string
	maxChannels int
	version     string
	params      []Param
	now         func() time.Time
	started     time.Time
	runID       string

	cmds  []*Command          // in table order; Command.Index is the position
	byKey map[string]*Command // lower-case name -> command

	changes ChangeSource // nil: no CLIENT TRACKING
	tracker *tracker
	cluster Cluster // nil: not a cluster node

	cmdStats []cmdStats // by Command.Index
	errStats errorStats // INFO errorstats
	// deferredLat: the commands an event loop deferred, from its first
	// dispatch to the end of the run that answered it (cmdstats.go).
	deferredLat latency.Histogram
	// statsBase: INFO stats' counters at the last CONFIG RESETSTAT, which
	// INFO subtracts, as Redis resets them (info.go).
	statsBase atomic.Pointer[statCounters]
	pcts      atomic.Pointer[[]float64]
	observe   func(cmd *Command, failed bool, d time.Duration)
	runs      func(d time.Duration) // Config.ObserveRun
}

// New returns a Dispatcher.
func New(cfg Config) (*Dispatcher, error) {
	if cfg.Backend == nil {
		return nil, errors.New("commands: Config.Backend is nil")
	}
	if cfg.Rerun == nil {
		cfg.Rerun = cfg.Backend
	}
	if cfg.NoWait == nil {
		cfg.NoWait = cfg.Backend
	}
	d := &Dispatcher{
		backend:     cfg.Backend,
		noWait:      cfg.NoWait,
		rerun:       cfg.Rerun,
		stats:       cfg.Stats,
		host:        cfg.Host,
		pass:        cfg.RequirePass,
		maxChannels: cfg.MaxChannels,
		version:     cfg.Version,
		params:      cfg.Params,
		now:         cfg.Now,
		observe:     cfg.Observe,
		runs:        cfg.ObserveRun,
		changes:     cfg.Changes,
		cluster:     cfg.Cluster,
		tracker:     newTracker(cmp.Or(cfg.TrackingTableMaxKeys, DefaultTrackingTableMaxKeys)),
	}
	if d.changes != nil {
		d.changes.Watch(d.tracker.changed)
	}
	d.pcts.Store(&defaultPercentiles)
	if d.maxChannels <= 0 {
		d.maxChannels = DefaultMaxChannels
	}
	if d.now == nil {
		d.now = time.Now
	}
	if d.version == "" {
		d.version = "dev"
	}
	d.started = d.now()
	var id [20]byte
	_, _ = rand.Read(id[:]) // never fails (crypto/rand panics rather than return short)
	d.runID = hex.EncodeToString(id[:])
	d.cmds = table()
	d.byKey = make(map[string]*Command, len(d.cmds))
	for i, c := range d.cmds {
		c.Index = i
		d.byKey[c.Name] = c
	}
	d.cmdStats = make([]cmdStats, len(d.cmds))
	return d, nil
}

// Commands returns the command table, in Index order. The server uses it
// to set up per-command metrics before serving. The result must not be
// modified.
func (d *Dispatcher) Commands() []*Command { return d.cmds }

// maxNameLen bounds the command names Dispatch looks up; longer names are
// unknown without a lookup.
const maxNameLen = 32

// Dispatch runs one command and writes exactly one reply to w (none if the
// session is already closing). args[0] is the command name, matched
// case-insensitively. ctx bounds the command's calls to the Backend.
//
// It returns the command run (nil for an unknown command or empty args)
// and whether its reply was an error. Its run time goes into the command
// statistics (INFO commandstats, latencystats) and to Config.Observe.
// Dispatch never panics on any args, and does not keep args after it
// returns.
//
// Dispatch may wait for the database (a read-through): run it where
// blocking holds up only this connection.
func (d *Dispatcher) Dispatch(ctx context.Context, w Writer, s *Session, args [][]byte) (cmd *Command, failed bool) {
	return d.dispatch(ctx, w, s, args, false)
}

// DispatchNoWait is Dispatch on the Config.NoWait view of the backend, for
// an event loop that must never block: a command that would wait (a
// read-through to the database) changes nothing, writes no reply, and
// leaves s.Deferred() true. The caller then runs the same args with
// Dispatch, on a goroutine that may block. Only then is the command
// counted.
func (d *Dispatcher) DispatchNoWait(ctx context.Context, w Writer, s *Session, args [][]byte) (cmd *Command, failed bool) {
	return d.dispatch(ctx, w, s, args, true)
}

func (d *Dispatcher) dispatch(ctx context.Context, w Writer, s *Session, args [][]byte, noWait bool) (cmd *Command, failed bool) {
	if s.closing {
		return nil, false
	}
	start := time.Now()
	s.commands.Add(1)
	s.failed, s.rejected, s.deferred = false, false, false
	s.errs = &d.errStats
	deferredAt := s.deferredAt // set if this is a deferred command's run
	s.deferredAt = time.Time{}
	s.rerun, s.looked = s.looked && !noWait, false
	if len(args) == 0 {
		// redcon never delivers an empty command; answer rather than stay
		// silent so the reply stream stays in step.
		s.writeError(w, "ERR empty command")
		d.record(nil, false, true, time.Since(start))
		return nil, true
	}
	cmd = d.lookup(args[0])
	if cmd == nil {
		if s.multi != nil {
			s.multi.dirty = true
		}
		s.writeError(w, unknownCommand(args))
		d.record(nil, false, true, time.Since(start))
		return nil, true
	}
	// The order of the checks is Redis's: unknown command, arity, then
	// authentication.
	if !cmd.arityOK(len(args)) {
		if s.multi != nil {
			s.multi.dirty = true
		}
		s.writeError(w, wrongArity(cmd.Name))
		d.record(cmd, true, true, time.Since(start))
		return cmd, true
	}
	if d.pass != "" && !s.authed && !cmd.noAuth {
		s.writeError(w, "NOAUTH Authentication required.")
		d.record(cmd, true, true, time.Since(start))
		return cmd, true
	}
	skip := s.skipNext
	if (s.replyOff || skip) && !replyOn(args) {
		w = muted{} // CLIENT REPLY OFF or SKIP
		s.skipNext = false
	}
	if s.multi != nil && !cmd.txControl {
		d.queue(w, s, cmd, args)
		if s.failed { // refused, not queued: a rejected call, as in Redis
			d.record(cmd, true, true, time.Since(start))
		}
		return cmd, s.failed
	}
	s.noWait = noWait
	if d.cluster != nil && cmd.FirstKey == 1 {
		slot, ok := d.route(w, s, args[1], true)
		if !ok && s.deferred {
			s.skipNext = skip          // it runs again, and is the one to mute
			s.commands.Add(^uint64(0)) // counted when it runs
			s.deferredAt = start
			return cmd, false
		}
		if !ok {
			d.record(cmd, true, true, time.Since(start))
			d.recordDeferred(deferredAt)
			return cmd, true
		}
		cmd.run(ctx, d, w, s, args)
		d.cluster.Exit(slot)
	} else {
		cmd.run(ctx, d, w, s, args)
	}
	if s.deferred {
		s.skipNext = skip          // it runs again, and is the one to mute
		s.commands.Add(^uint64(0)) // counted when it runs
		s.deferredAt = start
		return cmd, false
	}
	switch {
	case s.cachingSet:
		s.cachingSet = false // CLIENT CACHING: for the next command
	case s.multi == nil:
		s.caching = 0 // as Redis: it lasts through a MULTI ... EXEC block
	}
	el := time.Since(start)
	d.record(cmd, s.rejected, s.failed, el)
	d.recordDeferred(deferredAt)
	if noWait && d.runs != nil {
		d.runs(el)
	}
	return cmd, s.failed
}

// readStates is the backend for s's current command: the view that never
// waits under DispatchNoWait, and under Dispatch, the Rerun view for a
// command whose try there looked its read states up.
func (d *Dispatcher) readStates(s *Session) ReadStates {
	if s.tx != nil {
		return s.tx // inside EXEC
	}
	if s.noWait {
		return d.noWait
	}
	if s.rerun {
		return d.rerun
	}
	return d.backend
}

// denied reports whether s may not run admin commands (SHUTDOWN, CONFIG
// SET): without a password, only clients on the loopback interface may,
// as in Redis's protected mode. The default address is loopback anyway;
// this keeps a server bound to a public address by mistake from being
// stopped by anyone who can reach it. With a password, AUTH (checked
// before) is what admits a client, from anywhere.
func (d *Dispatcher) denied(s *Session) bool {
	return d.pass == "" && !s.loopback
}

// deniedAdmin is the error for an admin command from a client denied it;
// name is the lower-case name, "container|sub" for a subcommand.
func deniedAdmin(name string) string {
	return "DENIED " + strings.ToUpper(strings.ReplaceAll(name, "|", " ")) +
		" is only accepted from the loopback interface while no password is set." +
		" Set --requirepass (and AUTH) to run admin commands from other hosts," +
		" or run it on the server's host"
}

// lookup finds a command by name, case-insensitively, without allocating:
// the lower-cased name is built on the stack and the map index with
// string(bytes) does not copy.
func (d *Dispatcher) lookup(name []byte) *Command {
	if len(name) > maxNameLen {
		return nil
	}
	var buf [maxNameLen]byte
	for i, c := range name {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		buf[i] = c
	}
	return d.byKey[string(buf[:len(name)])]
}

// unknownCommand words the error as Redis 7 does, byte for byte:
// "ERR unknown command 'foo', with args beginning with: 'a' 'b' ". The name
// is cut at 128 bytes; arguments are added while the list is shorter than
// 128 bytes, each cut to what is left of that. CR and LF become spaces,
// as in Redis, so the reply stays one line.
func unknownCommand(args [][]byte) string {
	const limit = 128
	b := make([]byte, 0, 64+limit*2)
	b = append(b, "ERR unknown command '"...)
	b = appendCut(b, args[0], limit)
	b = append(b, "', with args beginning with: "...)
	n := 0 // length of the argument list so far
	for _, a := range args[1:] {
		if n >= limit {
			break
		}
		start := len(b)
		b = append(b, '\'')
		b = appendCut(b, a, limit-n)
		b = append(b, '\'', ' ')
		n += len(b) - start
	}
	return string(b)
}

// appendCut appends at most n bytes of s, with CR and LF as spaces.
func appendCut(dst, s []byte, n int) []byte {
	if len(s) > n {
		s = s[:n]
	}
	for _, c := range s {
		if c == '\r' || c == '\n' {
			c = ' '
		}
		dst = append(dst, c)
	}
	return dst
}

// wrongArity words the error as Redis does; name is the command's lower
// case name, "container|sub" for a subcommand.
func wrongArity(name string) string {
	return "ERR wrong number of arguments for '" + name + "' command"
}

// unknownSubcommand words the error as Redis 7 does:
// "ERR unknown subcommand 'x'. Try CLIENT HELP."
func unknownSubcommand(container string, sub []byte) string {
	b := make([]byte, 0, 64+len(container))
	b = append(b, "ERR unknown subcommand '"...)
	b = appendCut(b, sub, 128)
	b = append(b, "'. Try "...)
	b = append(b, container...)
	b = append(b, " HELP."...)
	return string(b)
}
