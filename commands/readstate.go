package commands

import (
	"context"
	"errors"
	"strconv"
	"strings"

	"github.com/readstates/readstates/cache"
	"github.com/readstates/readstates/persist"
)

// The read-state commands of the wire contract (docs/commands.md).
// Each parses and validates every argument before it calls the backend, so
// an error reply never changes a read state.

// parseKey parses args[1] (user_id) and args[2] (channel_id); on a bad id
// it writes the error reply and returns false.
func parseKey(w Writer, s *Session, args [][]byte) (cache.Key, bool) {
	user, ok := parseID(args[1])
	if !ok {
		s.writeError(w, invalidArg(argUserID, args[1], idRange))
		return cache.Key{}, false
	}
	channel, ok := parseID(args[2])
	if !ok {
		s.writeError(w, invalidArg(argChannelID, args[2], idRange))
		return cache.Key{}, false
	}
	return cache.Key{User: user, Channel: channel}, true
}

// RSINCR user_id channel_id [delta]
func rsIncr(ctx context.Context, d *Dispatcher, w Writer, s *Session, args [][]byte) {
	k, ok := parseKey(w, s, args)
	if !ok {
		return
	}
	delta := int64(1)
	if len(args) == 4 {
		if delta, ok = parseInt64(args[3]); !ok {
			s.writeError(w, invalidArg(argDelta, args[3], deltaRange))
			return
		}
	}
	n, err := d.readStates(s).Incr(ctx, k, delta)
	if err != nil {
		s.writeBackendError(w, err)
		return
	}
	w.WriteInt64(int64(n))
}

// RSRESET user_id channel_id [message_id]
func rsReset(ctx context.Context, d *Dispatcher, w Writer, s *Session, args [][]byte) {
	k, ok := parseKey(w, s, args)
	if !ok {
		return
	}
	var msgID int64
	setMsg := len(args) == 4
	if setMsg {
		if msgID, ok = parseID(args[3]); !ok {
			s.writeError(w, invalidArg(argMessageID, args[3], idRange))
			return
		}
	}
	prev, err := d.readStates(s).Reset(ctx, k, msgID, setMsg)
	if err != nil {
		s.writeBackendError(w, err)
		return
	}
	w.WriteInt64(int64(prev))
}

// RSGET user_id channel_id
func rsGet(ctx context.Context, d *Dispatcher, w Writer, s *Session, args [][]byte) {
	k, ok := parseKey(w, s, args)
	if !ok {
		return
	}
	d.register(s, k.User) // before the read: see tracking.go
	st, err := d.readStates(s).Get(ctx, k)
	if err != nil {
		s.writeBackendError(w, err)
		return
	}
	writeState(w, st)
}

func writeState(w Writer, st cache.State) {
	w.WriteArray(2)
	w.WriteInt64(int64(st.MentionCount))
	w.WriteInt64(st.LastMessageID)
}

// RSMGET user_id channel_id [channel_id ...]
//
// Every channel_id is validated before any read state is read, and every
// read state is read before the reply is written, so a failure part way
// (a read-through that cannot reach the store) is one error reply, not a
// half-written array.
func rsMGet(ctx context.Context, d *Dispatcher, w Writer, s *Session, args [][]byte) {
	channels := args[2:]
	if len(channels) > d.maxChannels {
		s.writeError(w, "ERR too many channel_ids: RSMGET takes at most "+
			strconv.Itoa(d.maxChannels)+" per call, got "+strconv.Itoa(len(channels)))
		return
	}
	user, ok := parseID(args[1])
	if !ok {
		s.writeError(w, invalidArg(argUserID, args[1], idRange))
		return
	}
	ids, states := s.mgetBufs(len(channels))
	for i, a := range channels {
		if ids[i], ok = parseID(a); !ok {
			s.writeError(w, invalidArg(argChannelID, a, idRange))
			return
		}
	}
	d.register(s, user) // before the read: see tracking.go
	// One call, so that the engine can load the missing read states
	// concurrently: a cold RSMGET costs about one database round trip.
	if err := d.readStates(s).GetMany(ctx, user, ids, states); err != nil {
		s.writeBackendError(w, err)
		return
	}
	w.WriteArray(len(states))
	for _, st := range states {
		writeState(w, st)
	}
}

// writeBackendError replies with backendError(err), except for
// persist.ErrWouldBlock: the command changed nothing and is deferred (see
// Dispatch), so it writes nothing.
func (s *Session) writeBackendError(w Writer, err error) {
	if errors.Is(err, persist.ErrWouldBlock) {
		s.deferred, s.looked = true, true
		return
	}
	s.writeError(w, backendError(err))
}

// maxErrText bounds the part of a backend error repeated to the client.
const maxErrText = 200

// backendError turns an engine error into an error reply. Every reply
// says that nothing changed, or how to proceed:
//   - cache.ErrOverflow: the increment would pass 2147483647 (ERR ... overflow);
//   - cache.ErrFull: the write-behind backlog is full, so the change is refused
//     rather than risk losing older ones (TRYAGAIN);
//   - persist.ErrUnavailable: a read-through could not reach the store (TRYAGAIN);
//   - persist.ErrJournal: the journal cannot be written (MISCONF, as Redis's
//     reply when its append-only file cannot be).
func backendError(err error) string {
	switch {
	case errors.Is(err, cache.ErrOverflow):
		return "ERR mention_count overflow: the result would exceed 2147483647; the read state is unchanged"
	case errors.Is(err, cache.ErrFull):
		return "TRYAGAIN write-behind backlog full: the database is behind; the change was refused and nothing was lost, retry later"
	case errors.Is(err, persist.ErrUnavailable):
		// The wrapped text usually repeats the sentinel's; say it once.
		return "TRYAGAIN read state store unavailable: " +
			strings.TrimPrefix(errText(err), persist.ErrUnavailable.Error()+": ")
	case errors.Is(err, persist.ErrJournal):
		// Redis's reply when its append-only file cannot be written.
		return "MISCONF " + errText(err) + "; changes are refused until it can (this one was not made)"
	case errors.Is(err, persist.ErrNotServed):
		return "TRYAGAIN this cluster node's lease of the user's slot ended while the database answered: nothing was changed; retry (you will be redirected)"
	case errors.Is(err, persist.ErrClosed):
		return "TRYAGAIN server shutting down: the command was not run"
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return "TRYAGAIN server shutting down or request timed out: " + errText(err)
	default:
		return "ERR " + errText(err)
	}
}

// errText is err's text cut to maxErrText bytes; CR and LF are replaced
// when the reply is written.
func errText(err error) string {
	t := err.Error()
	if len(t) > maxErrText {
		t = t[:maxErrText] + "..."
	}
	return t
}
