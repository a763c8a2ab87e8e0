package commands

import (
	"context"
	"errors"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/readstates/readstates/internal/latency"
)

// Command statistics, as Redis 7 keeps them (latency-tracking yes): per
// top-level command, the calls, the time they took to run, and the
// distribution of that time, reported by INFO commandstats, INFO
// latencystats and LATENCY HISTOGRAM (latency.go) and cleared by CONFIG
// RESETSTAT. The time is the command's
// own execution, from dispatch to its reply being buffered: a figure free
// of the client's and the network's share of the latency a client sees.
// Recording costs two atomic adds and a clock read; it never allocates.

// cmdStats are one command's figures. Fields are updated concurrently.
type cmdStats struct {
	latency  latency.Histogram
	rejected atomic.Uint64 // refused before running: arity, NOAUTH, a redirection, refused by MULTI
	failed   atomic.Uint64 // ran and replied with an error
}

// errorStats count error replies by their code, the reply's first word
// (ERR, MOVED, TRYAGAIN...), as Redis's INFO errorstats does, and in all
// (total_error_replies). The codes are the server's own, a few, but the
// table holds at most maxErrorCodes of them, as Redis's does, so that no
// reply can grow it without bound; replies of other codes count in the
// total only. The table is copied on write: counting a known code, say
// the MOVED of every command of a client with an old slot map, takes no
// lock.
type errorStats struct {
	mu    sync.Mutex // serializes writers of codes
	codes atomic.Pointer[map[string]*atomic.Uint64]
	total atomic.Uint64
}

const maxErrorCodes = 128

func (e *errorStats) count(msg string) {
	e.total.Add(1)
	code := msg
	if i := strings.IndexByte(msg, ' '); i >= 0 {
		code = msg[:i]
	}
	if m := e.codes.Load(); m != nil {
		if n := (*m)[code]; n != nil {
			n.Add(1)
			return
		}
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	var old map[string]*atomic.Uint64
	if m := e.codes.Load(); m != nil {
		old = *m
	}
	n := old[code]
	if n == nil {
		if len(old) >= maxErrorCodes {
			return
		}
		m := maps.Clone(old)
		if m == nil {
			m = map[string]*atomic.Uint64{}
		}
		n = new(atomic.Uint64)
		m[strings.Clone(code)] = n
		e.codes.Store(&m)
	}
	n.Add(1)
}

// ProtocolError returns the error reply to a request that could not be
// parsed, and counts it, as Redis does, among the error replies (INFO
// errorstats, total_error_replies); it is no command's.
func (d *Dispatcher) ProtocolError(err error) string {
	msg := "ERR " + err.Error()
	d.errStats.count(msg)
	return msg
}

// appendErrorStats is INFO errorstats: errorstat_<CODE>:count=<n> for
// every code replied since start or the last CONFIG RESETSTAT, in
// Redis's order (by code).
func (e *errorStats) appendErrorStats(b []byte) []byte {
	m := e.codes.Load()
	if m == nil {
		return b
	}
	for _, c := range slices.Sorted(maps.Keys(*m)) {
		b = append(b, "errorstat_"...)
		b = append(b, c...)
		b = append(b, ":count="...)
		b = strconv.AppendUint(b, (*m)[c].Load(), 10)
		b = append(b, "\r\n"...)
	}
	return b
}

// reset starts the counts again; a count under way as it runs may land in
// the table it replaced, and be lost.
func (e *errorStats) reset() {
	e.mu.Lock()
	e.codes.Store(nil)
	e.total.Store(0)
	e.mu.Unlock()
}

// defaultPercentiles is Redis's latency-tracking-info-percentiles.
var defaultPercentiles = []float64{50, 99, 99.9}

const percentilesParam = "latency-tracking-info-percentiles"

func (d *Dispatcher) percentiles() []float64 { return *d.pcts.Load() }

func formatPercentiles(ps []float64) string {
	parts := make([]string, len(ps))
	for i, p := range ps {
		parts[i] = strconv.FormatFloat(p, 'f', -1, 64)
	}
	return strings.Join(parts, " ")
}

// parsePercentiles parses a latency-tracking-info-percentiles value: up to
// 16 numbers from 0 to 100, separated by spaces.
func parsePercentiles(v string) ([]float64, error) {
	fields := strings.Fields(v)
	if len(fields) > 16 {
		return nil, errors.New("too many percentiles")
	}
	ps := make([]float64, 0, len(fields))
	for _, f := range fields {
		p, err := strconv.ParseFloat(f, 64)
		if err != nil || !(p >= 0 && p <= 100) {
			return nil, errors.New("percentile must be between 0.0 and 100.0")
		}
		ps = append(ps, p)
	}
	return ps, nil
}

// record files one dispatched command's outcome.
func (d *Dispatcher) record(cmd *Command, rejected, failed bool, el time.Duration) {
	if cmd != nil {
		st := &d.cmdStats[cmd.Index]
		switch {
		case rejected:
			st.rejected.Add(1)
		default:
			st.latency.Record(el)
			if failed {
				st.failed.Add(1)
			}
		}
	}
	if d.observe != nil {
		d.observe(cmd, failed || rejected, el)
	}
}

// recordDeferred files the whole time of a deferred command, first
// dispatched at (zero: the command was not deferred): the event loop's
// attempt, the hand-over to a goroutine, and the run that waited for the
// database or a slot.
func (d *Dispatcher) recordDeferred(at time.Time) {
	if !at.IsZero() {
		d.deferredLat.Record(time.Since(at))
	}
}

// appendDeferredStats is INFO persistence's deferred_commands and
// deferred_latency_percentiles_usec, at latencystats' percentiles.
func (d *Dispatcher) appendDeferredStats(b []byte) []byte {
	h := &d.deferredLat
	b = fieldUint(b, "deferred_commands", h.Count())
	ps := d.percentiles()
	if len(ps) == 0 || h.Count() == 0 {
		return b
	}
	b = append(b, "deferred_latency_percentiles_usec:"...)
	b = appendPercentiles(b, h, ps)
	return append(b, "\r\n"...)
}

// appendPercentiles appends p50=...,p99=... of h, in microseconds.
func appendPercentiles(b []byte, h *latency.Histogram, ps []float64) []byte {
	for i, p := range ps {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, 'p')
		b = strconv.AppendFloat(b, p, 'f', -1, 64)
		b = append(b, '=')
		b = strconv.AppendFloat(b, float64(h.Quantile(p/100))/1e3, 'f', 3, 64)
	}
	return b
}

// appendCommandStats is INFO commandstats: Redis's cmdstat_<name> lines
// for every command called since start or the last CONFIG RESETSTAT.
func (d *Dispatcher) appendCommandStats(b []byte) []byte {
	for _, c := range d.cmds {
		st := &d.cmdStats[c.Index]
		calls, rejected := st.latency.Count(), st.rejected.Load()
		if calls == 0 && rejected == 0 {
			continue
		}
		usec := st.latency.Sum().Microseconds()
		perCall := 0.0
		if calls > 0 {
			perCall = float64(st.latency.Sum()) / 1e3 / float64(calls)
		}
		b = append(b, "cmdstat_"...)
		b = append(b, c.Name...)
		b = append(b, ":calls="...)
		b = strconv.AppendUint(b, calls, 10)
		b = append(b, ",usec="...)
		b = strconv.AppendInt(b, usec, 10)
		b = append(b, ",usec_per_call="...)
		b = strconv.AppendFloat(b, perCall, 'f', 2, 64)
		b = append(b, ",rejected_calls="...)
		b = strconv.AppendUint(b, rejected, 10)
		b = append(b, ",failed_calls="...)
		b = strconv.AppendUint(b, st.failed.Load(), 10)
		b = append(b, "\r\n"...)
	}
	return b
}

// appendLatencyStats is INFO latencystats: for every command run since
// start or the last CONFIG RESETSTAT, Redis's
// latency_percentiles_usec_<name>:p50=...,p99=...,p99.9=... line, in
// microseconds, at the percentiles of latency-tracking-info-percentiles
// (p100 is the slowest call). A value is at most 3% above the true one,
// never below.
func (d *Dispatcher) appendLatencyStats(b []byte) []byte {
	ps := d.percentiles()
	if len(ps) == 0 {
		return b
	}
	for _, c := range d.cmds {
		h := &d.cmdStats[c.Index].latency
		if h.Count() == 0 {
			continue
		}
		b = append(b, "latency_percentiles_usec_"...)
		b = append(b, c.Name...)
		b = append(b, ':')
		b = appendPercentiles(b, h, ps)
		b = append(b, "\r\n"...)
	}
	return b
}

// CONFIG RESETSTAT: clears the command statistics (INFO commandstats,
// latencystats and errorstats, and INFO persistence's deferred commands),
// and starts INFO
// stats' counters again from 0, as Redis does. The cache's and the
// write-behind's own counters (INFO keyspace's cache_*, persistence) are
// totals since start, as their Prometheus counters are, and stay.
func configResetStat(_ context.Context, d *Dispatcher, w Writer, _ *Session, _ [][]byte) {
	base := countersOf(d.figures())
	d.statsBase.Store(&base)
	d.deferredLat.Reset()
	d.errStats.reset()
	for i := range d.cmdStats {
		st := &d.cmdStats[i]
		st.latency.Reset()
		st.rejected.Store(0)
		st.failed.Store(0)
	}
	writeOK(w)
}
