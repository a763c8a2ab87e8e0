package commands

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/readstates/readstates/cache"
	"github.com/readstates/readstates/persist"
)

// Transactions: MULTI, EXEC, DISCARD, with Redis's semantics and replies.
// Commands after MULTI are checked (unknown command, arity, allowed in a
// transaction) and queued with +QUEUED; an error there makes EXEC refuse
// the whole transaction (EXECABORT). EXEC runs the queue as one unit: the
// read states it touches are loaded first, then every queued command runs
// with their cache shards locked (persist.ReadStates.Atomically), so no
// other client's command on those read states interleaves, whether they
// were cached or read through. An error of one command at EXEC (a bad id,
// an overflow) is its reply in EXEC's array and does not undo the others,
// as in Redis. WATCH is not supported.

// Bounds of one transaction's queue: commands, and read states touched.
const (
	maxTxCommands = 10000
	maxTxKeys     = 10000
	maxTxBytes    = 1 << 20 // of the queued commands' arguments
)

// txQueue is a session's transaction between MULTI and EXEC.
type txQueue struct {
	cmds  [][][]byte // owned copies of the queued commands' arguments
	keys  int        // read states the queued commands name, at most
	bytes int        // of the queued commands' arguments
	dirty bool       // a command was refused: EXEC aborts
	slot  int        // cluster mode: the slot of the queued keys, -1 before the first
	keyAt int        // cluster mode: the queued command that set slot
}

// MULTI
func multi(_ context.Context, _ *Dispatcher, w Writer, s *Session, _ [][]byte) {
	if s.multi != nil {
		s.writeError(w, "ERR MULTI calls can not be nested")
		return
	}
	s.multi = &txQueue{slot: -1}
	writeOK(w)
}

// DISCARD
func discard(_ context.Context, _ *Dispatcher, w Writer, s *Session, _ [][]byte) {
	if s.multi == nil {
		s.writeError(w, "ERR DISCARD without MULTI")
		return
	}
	s.multi = nil
	writeOK(w)
}

// queue queues a command inside MULTI, or refuses it (and dooms the
// transaction). cmd has passed the arity and authentication checks.
func (d *Dispatcher) queue(w Writer, s *Session, cmd *Command, args [][]byte) {
	q := s.multi
	switch {
	case !cmd.inTx:
		q.dirty = true
		s.writeError(w, "ERR Command not allowed inside a transaction")
		return
	case len(q.cmds) >= maxTxCommands:
		q.dirty = true
		s.writeError(w, "ERR transaction too long: at most "+strconv.Itoa(maxTxCommands)+" commands between MULTI and EXEC")
		return
	}
	if d.cluster != nil && cmd.FirstKey == 1 && !d.txSlot(w, s, args[1]) {
		q.dirty = true
		return
	}
	if cmd.keys != nil {
		n := cmd.keys(args, nil)
		if q.keys+len(n) > maxTxKeys {
			q.dirty = true
			s.writeError(w, "ERR transaction too large: at most "+strconv.Itoa(maxTxKeys)+" read states between MULTI and EXEC")
			return
		}
		q.keys += len(n)
	}
	n := 0
	for _, a := range args {
		n += len(a)
	}
	if q.bytes+n > maxTxBytes {
		q.dirty = true
		s.writeError(w, "ERR transaction too large: at most "+strconv.Itoa(maxTxBytes)+" bytes of arguments between MULTI and EXEC")
		return
	}
	q.bytes += n
	q.cmds = append(q.cmds, CopyArgs(args))
	w.WriteString("QUEUED")
}

// EXEC
func exec(ctx context.Context, d *Dispatcher, w Writer, s *Session, _ [][]byte) {
	q := s.multi
	if q == nil {
		s.writeError(w, "ERR EXEC without MULTI")
		return
	}
	if q.dirty {
		s.multi = nil
		s.writeError(w, "EXECABORT Transaction discarded because of previous errors.")
		return
	}
	var keys []cache.Key
	cmds := make([]*Command, len(q.cmds))
	for i, args := range q.cmds {
		cmds[i] = d.lookup(args[0])
		if k := cmds[i].keys; k != nil {
			keys = k(args, keys)
		}
	}
	if d.cluster != nil && q.slot >= 0 {
		// The slot may have moved since the commands were queued.
		slot, ok := d.route(w, s, q.cmds[q.keyAt][1], true)
		if !ok {
			if !s.deferred { // else it runs again where it may wait; the queue stays
				s.multi = nil
			}
			return
		}
		defer d.cluster.Exit(slot)
	}
	ran := false
	err := d.readStates(s).Atomically(ctx, keys, func(tx persist.ReadStates) {
		ran = true
		s.tx = tx
		defer func() { s.tx = nil }()
		w.WriteArray(len(q.cmds))
		for i, args := range q.cmds {
			d.runQueued(ctx, w, s, cmds[i], args)
		}
	})
	switch {
	case err == nil || ran:
		// Once the commands ran, EXEC's reply is written: an error after
		// (the journal's fsync under --journal-fsync always) is the
		// journal's own, reported by every later change.
		s.multi = nil
		s.failed = false // EXEC itself succeeded, whatever its commands did
	case errors.Is(err, persist.ErrWouldBlock):
		s.deferred, s.looked = true, true // run again where it may wait; the queue stays
	default:
		s.multi = nil
		s.writeError(w, backendError(err))
	}
}

// runQueued runs one queued command inside EXEC, counted in the command
// statistics as Redis counts them.
func (d *Dispatcher) runQueued(ctx context.Context, w Writer, s *Session, cmd *Command, args [][]byte) {
	start := time.Now()
	s.failed = false
	cmd.run(ctx, d, w, s, args)
	d.record(cmd, false, s.failed, time.Since(start))
}

// CopyArgs copies args, which alias a connection's input, into one
// allocation, for a command that must outlive it (queued by MULTI, or
// deferred by an event loop).
func CopyArgs(args [][]byte) [][]byte {
	n := 0
	for _, a := range args {
		n += len(a)
	}
	data := make([]byte, 0, n)
	own := make([][]byte, len(args))
	for i, a := range args {
		data = append(data, a...)
		own[i] = data[len(data)-len(a):]
	}
	return own
}

// keyOf is the keys function of RSINCR, RSRESET and RSGET: the read state
// of args[1] and args[2], if they are valid ids (an invalid one fails at
// EXEC, touching nothing).
func keyOf(args [][]byte, dst []cache.Key) []cache.Key {
	user, ok1 := parseID(args[1])
	channel, ok2 := parseID(args[2])
	if ok1 && ok2 {
		dst = append(dst, cache.Key{User: user, Channel: channel})
	}
	return dst
}

// keysOfMGet is RSMGET's keys function.
func keysOfMGet(args [][]byte, dst []cache.Key) []cache.Key {
	user, ok := parseID(args[1])
	if !ok {
		return dst
	}
	for _, a := range args[2:] {
		if channel, ok := parseID(a); ok {
			dst = append(dst, cache.Key{User: user, Channel: channel})
		}
	}
	return dst
}
