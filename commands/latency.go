package commands

import (
	"context"
	"math/bits"
	"strings"
	"time"

	"github.com/readstates/readstates/internal/latency"
)

// LATENCY HISTOGRAM and LATENCY HELP, as in Redis 7. The histograms are the
// command statistics of cmdstats.go (per top-level command, cleared by
// CONFIG RESETSTAT); LATENCY HISTOGRAM reads them without clearing
// anything, so any number of observers can take the difference of two
// readings to get the distribution of the calls in between.

// Redis's LATENCY HISTOGRAM buckets: bound 2^k ns for k from 10 (1024 ns,
// the first bucket holds everything below it) to 30 (about 1.07 s; Redis
// tracks up to 1 s and counts slower calls in its last bucket).
const (
	histMinExp = 10
	histMaxExp = 30
)

// cdfPoint is one entry of histogram_usec: the calls that took at most
// usec microseconds (the bound, truncated), cumulative.
type cdfPoint struct {
	usec  int64
	count uint64
}

// cmdCDF is one command's LATENCY HISTOGRAM entry.
type cmdCDF struct {
	name   string
	calls  uint64
	points []cdfPoint
}

// commandCDF reads h as LATENCY HISTOGRAM reports it, with calls the sum of
// the counts read, so that the last point's count is calls even while
// commands run. Each point's usec is, as in Redis, the largest duration it
// counts, in microseconds, truncated: Redis's keys (1, 2, 4, 8, 16, 33, 66,
// ...) are its HDR histogram's bucket ends just above each power of two
// of nanoseconds; internal/latency has a bucket bound exactly at each
// power of two, so here the keys are (2^k-1)/1000: 1, 2, 4, 8, 16, 32,
// 65, ... and each count is exact for its bound.
//
// fine: every bucket of internal/latency instead (at most 1/32 of its bound
// wide), merged where two share a truncated microsecond, and not clamped
// at 1 s: a percentile read off them is between 1 µs below and 3% above
// the true value, as INFO latencystats' are (3% above).
func commandCDF(h *latency.Histogram, fine bool) (calls uint64, points []cdfPoint) {
	if fine {
		h.Buckets(func(high time.Duration, n uint64) {
			calls += n
			usec := int64(high-1) / 1000
			if k := len(points) - 1; k >= 0 && points[k].usec == usec {
				points[k].count = calls
				return
			}
			points = append(points, cdfPoint{usec, calls})
		})
		return calls, points
	}
	var per [histMaxExp + 1]uint64
	h.Buckets(func(high time.Duration, n uint64) {
		// The smallest k with high <= 2^k: a bucket never straddles a
		// power of two.
		k := bits.Len64(uint64(high - 1))
		per[min(max(k, histMinExp), histMaxExp)] += n
	})
	for k := histMinExp; k <= histMaxExp; k++ {
		if per[k] == 0 {
			continue // Redis leaves out the buckets that add nothing
		}
		calls += per[k]
		points = append(points, cdfPoint{(int64(1)<<k - 1) / 1000, calls})
	}
	return calls, points
}

// LATENCY HISTOGRAM [FINE] [command ...]: per command, its calls and the
// cumulative distribution of their run time, as a map (a flat array in
// RESP2) from command name to {"calls": n, "histogram_usec": {bound:
// count, ...}}. Without names, every command that has run (table order);
// with names, those of them that have run, in argument order, each once.
// Unknown names are left out, as in Redis; so are subcommands
// ("config|get"), since statistics are kept per top-level command.
//
// FINE, first, is not Redis's: the same reply with every bucket of the
// server's histogram (3% wide) instead of Redis's powers of two (a factor
// of two), for a client that computes percentiles from the difference of
// two readings (rsload). No command is named "fine"; Redis itself takes
// the word for an unknown command name and leaves it out.
func latencyHistogram(_ context.Context, d *Dispatcher, w Writer, s *Session, args [][]byte) {
	names := args[2:]
	fine := len(names) > 0 && equalFold("fine", names[0])
	if fine {
		names = names[1:]
	}
	var cmds []*Command
	if len(names) == 0 {
		cmds = d.cmds
	} else {
		seen := make([]bool, len(d.cmds))
		for _, n := range names {
			c := d.find(n)
			if c == nil || strings.ContainsRune(c.Name, '|') || seen[c.Index] {
				continue
			}
			seen[c.Index] = true
			cmds = append(cmds, c)
		}
	}
	var out []cmdCDF
	for _, c := range cmds {
		calls, points := commandCDF(&d.cmdStats[c.Index].latency, fine)
		if calls > 0 {
			out = append(out, cmdCDF{c.Name, calls, points})
		}
	}
	s.writeMap(w, len(out))
	for _, c := range out {
		w.WriteBulkString(c.name)
		s.writeMap(w, 2)
		w.WriteBulkString("calls")
		w.WriteInt64(int64(c.calls))
		w.WriteBulkString("histogram_usec")
		s.writeMap(w, len(c.points))
		for _, p := range c.points {
			w.WriteInt64(p.usec)
			w.WriteInt64(int64(p.count))
		}
	}
}

func latencyHelp(_ context.Context, _ *Dispatcher, w Writer, _ *Session, _ [][]byte) {
	writeHelp(w, "LATENCY",
		"HISTOGRAM [FINE] [COMMAND ...]",
		"    Return a cumulative distribution of latencies in the format of a histogram for the specified command names.",
		"    If no commands are specified then all histograms are replied.",
		"    FINE: buckets within 3% instead of powers of two (not in Redis).",
		"HELP", "    Print this help.",
	)
}
