package commands

import (
	"context"

	"github.com/readstates/readstates/cache"
)

// Prefetcher is what Dispatcher.Prefetch needs of the backend
// (persist.Engine.Prefetch): load the read states of keys that are
// neither cached nor being loaded, concurrently, and wait for them.
// Errors are the commands' to report when they run.
type Prefetcher interface {
	Prefetch(ctx context.Context, keys []cache.Key)
}

// Prefetch bounds: how far ahead of a miss a pipeline is read.
const (
	prefetchRequests = 1024
	prefetchKeys     = 4096
)

// Prefetch is called by a driver when a command of s must wait for the
// database (it was deferred): next yields that command's arguments, then
// those of the whole requests pipelined after it, then nil. Prefetch
// loads what those requests will miss, concurrently, so that a pipeline
// of cold read states costs about one database round trip per window
// rather than one per command; the commands then run in order, as
// always, and find their read states cached (or read through again, if
// evicted meanwhile). It changes no read state and writes no reply.
//
// It does nothing for a client that has not authenticated, or on a
// cluster node: there a request may be for a user the node does not
// serve, whose state it must not cache.
func (d *Dispatcher) Prefetch(ctx context.Context, s *Session, next func() [][]byte) {
	p, ok := d.backend.(Prefetcher)
	if !ok || d.cluster != nil || (d.pass != "" && !s.authed) {
		return
	}
	keys := s.ahead[:0]
	for range prefetchRequests {
		args := next()
		if args == nil || len(keys) >= prefetchKeys {
			break
		}
		keys = d.appendKeys(keys, args)
	}
	if len(keys) > 1 {
		p.Prefetch(ctx, keys)
	}
	if cap(keys) <= prefetchKeys {
		s.ahead = keys[:0]
	}
}

// appendKeys appends to dst the read states the request args would touch:
// none for a command that touches none, or that would be refused.
func (d *Dispatcher) appendKeys(dst []cache.Key, args [][]byte) []cache.Key {
	if len(args) == 0 {
		return dst
	}
	cmd := d.lookup(args[0])
	if cmd == nil || cmd.keys == nil || !cmd.arityOK(len(args)) || (cmd.Name == "rsmget" && len(args)-2 > d.maxChannels) {
		return dst
	}
	return cmd.keys(args, dst)
}
