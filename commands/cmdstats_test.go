package commands

import (
	"context"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/readstates/readstates/persist"
)

// run dispatches one command on s and returns its raw reply.
func run(d *Dispatcher, s *Session, a ...string) string {
	w := &bufWriter{}
	d.Dispatch(context.Background(), w, s, args(a...))
	return string(w.b)
}

func TestCommandStats(t *testing.T) {
	var observed []string
	d, _ := newTestDispatcher(t, func(c *Config) {
		c.Observe = func(cmd *Command, failed bool, el time.Duration) {
			name := "unknown"
			if cmd != nil {
				name = cmd.Name
			}
			observed = append(observed, name+":"+strconv.FormatBool(failed))
		}
	})
	s := NewSession(1, "127.0.0.1:5000", "b", time.Time{})
	run(d, s, "RSINCR", "1", "2")
	run(d, s, "RSINCR", "1", "2", "5")
	run(d, s, "rsincr", "1", "x") // ran: an error reply
	run(d, s, "RSINCR", "1")      // rejected: arity
	run(d, s, "NOSUCH")           // unknown: not in the stats
	run(d, s, "RSGET", "1", "2")
	info := run(d, s, "INFO", "commandstats")
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`cmdstat_rsincr:calls=3,usec=\d+,usec_per_call=\d+\.\d\d,rejected_calls=1,failed_calls=1\r\n`),
		regexp.MustCompile(`cmdstat_rsget:calls=1,usec=\d+,usec_per_call=\d+\.\d\d,rejected_calls=0,failed_calls=0\r\n`),
	} {
		if !want.MatchString(info) {
			t.Errorf("INFO commandstats = %q, want a line matching %v", info, want)
		}
	}
	if strings.Contains(info, "nosuch") || strings.Contains(info, "cmdstat_rsreset") {
		t.Errorf("INFO commandstats lists a command not run: %q", info)
	}
	// Every error reply counts by its code: the failed call, the rejected
	// one and the unknown command.
	errs := run(d, s, "INFO", "errorstats", "stats")
	for _, want := range []string{"# Errorstats\r\nerrorstat_ERR:count=3\r\n", "total_error_replies:3\r\n"} {
		if !strings.Contains(errs, want) {
			t.Errorf("INFO errorstats stats = %q, want %q in it", errs, want)
		}
	}
	wantObserved := "rsincr:false rsincr:false rsincr:true rsincr:true unknown:true rsget:false info:false info:false"
	if got := strings.Join(observed, " "); got != wantObserved {
		t.Errorf("observed %q, want %q", got, wantObserved)
	}

	lat := run(d, s, "INFO", "latencystats")
	re := regexp.MustCompile(`latency_percentiles_usec_rsincr:p50=(\d+\.\d{3}),p99=(\d+\.\d{3}),p99\.9=(\d+\.\d{3})\r\n`)
	m := re.FindStringSubmatch(lat)
	if m == nil {
		t.Fatalf("INFO latencystats = %q, want %v", lat, re)
	}
	p50, _ := strconv.ParseFloat(m[1], 64)
	p999, _ := strconv.ParseFloat(m[3], 64)
	if p50 > p999 {
		t.Errorf("p50 %v > p99.9 %v", p50, p999)
	}

	// Neither section is in the default INFO; both are in INFO all.
	// Errorstats is in both, as in Redis 7.
	if def := run(d, s, "INFO"); strings.Contains(def, "cmdstat_") || strings.Contains(def, "latency_percentiles") || !strings.Contains(def, "errorstat_ERR") {
		t.Errorf("INFO (default) has command statistics, or lacks the error statistics: %q", def)
	}
	if all := run(d, s, "INFO", "all"); !strings.Contains(all, "# Commandstats") || !strings.Contains(all, "# Latencystats") {
		t.Errorf("INFO all lacks the command statistics: %q", all)
	}

	if got := run(d, s, "CONFIG", "RESETSTAT"); got != "+OK\r\n" {
		t.Fatalf("CONFIG RESETSTAT = %q", got)
	}
	after := run(d, s, "INFO", "commandstats", "latencystats", "errorstats", "stats")
	if strings.Contains(after, "rsincr") || strings.Contains(after, "rsget") || strings.Contains(after, "errorstat_") || !strings.Contains(after, "total_error_replies:0\r\n") {
		t.Errorf("after CONFIG RESETSTAT: %q", after)
	}
}

func TestLatencyPercentilesConfig(t *testing.T) {
	d, _ := newTestDispatcher(t, nil)
	s := NewSession(1, "127.0.0.1:5000", "b", time.Time{})
	get := func() string { return run(d, s, "CONFIG", "GET", "latency-tracking-info-percentiles") }
	if got, want := get(), "*2\r\n$33\r\nlatency-tracking-info-percentiles\r\n$10\r\n50 99 99.9\r\n"; got != want {
		t.Fatalf("CONFIG GET = %q, want %q", got, want)
	}
	for _, bad := range []string{"50 101", "x", "-1", "NaN", strings.Repeat("1 ", 17)} {
		got := run(d, s, "CONFIG", "SET", "latency-tracking-info-percentiles", bad)
		if !strings.HasPrefix(got, "-ERR CONFIG SET failed") {
			t.Errorf("CONFIG SET percentiles %q = %q, want an error", bad, got)
		}
	}
	// A bad pair anywhere sets nothing.
	if got := run(d, s, "CONFIG", "SET", "latency-tracking-info-percentiles", "90", "appendonly", "yes"); !strings.HasPrefix(got, "-ERR") {
		t.Errorf("CONFIG SET with a bad pair = %q, want an error", got)
	}
	if got := get(); !strings.HasSuffix(got, "$10\r\n50 99 99.9\r\n") {
		t.Errorf("after failed sets, CONFIG GET = %q", got)
	}
	if got := run(d, s, "CONFIG", "SET", "latency-tracking-info-percentiles", "50 99.99 100"); got != "+OK\r\n" {
		t.Fatalf("CONFIG SET = %q", got)
	}
	run(d, s, "PING")
	lat := run(d, s, "INFO", "latencystats")
	if !regexp.MustCompile(`latency_percentiles_usec_ping:p50=\d+\.\d{3},p99\.99=\d+\.\d{3},p100=\d+\.\d{3}\r\n`).MatchString(lat) {
		t.Errorf("INFO latencystats = %q", lat)
	}
	if got := run(d, s, "CONFIG", "SET", "latency-tracking-info-percentiles", ""); got != "+OK\r\n" {
		t.Fatalf("CONFIG SET empty = %q", got)
	}
	if lat := run(d, s, "INFO", "latencystats"); strings.Contains(lat, "latency_percentiles_usec") {
		t.Errorf("with no percentiles, INFO latencystats = %q", lat)
	}
}

func TestResetStatIsAdmin(t *testing.T) {
	d, _ := newTestDispatcher(t, nil)
	remote := NewSession(1, "10.1.2.3:5000", "b", time.Time{})
	if got := run(d, remote, "CONFIG", "RESETSTAT"); !strings.HasPrefix(got, "-DENIED CONFIG RESETSTAT") {
		t.Errorf("CONFIG RESETSTAT from another host = %q, want DENIED", got)
	}
}

// TestDeferred: a command whose backend call would block writes nothing,
// is left Deferred and uncounted, and runs normally the next time.
func TestDeferred(t *testing.T) {
	d, b := newTestDispatcher(t, nil)
	s := NewSession(1, "127.0.0.1:5000", "b", time.Time{})
	for _, cmd := range [][]string{
		{"RSINCR", "9006", "1"}, {"RSRESET", "9006", "1", "5"}, {"RSGET", "9006", "1"}, {"RSMGET", "9006", "1", "2"},
	} {
		b.failUsers[9006] = persist.ErrWouldBlock
		if got := run(d, s, cmd...); got != "" || !s.Deferred() {
			t.Fatalf("%v: reply %q, deferred %v; want no reply, deferred", cmd, got, s.Deferred())
		}
		if n := s.Commands(); n != 0 {
			t.Fatalf("%v: %d commands counted, want 0", cmd, n)
		}
		delete(b.failUsers, 9006)
		if got := run(d, s, cmd...); got == "" || s.Deferred() {
			t.Fatalf("%v again: reply %q, deferred %v; want a reply", cmd, got, s.Deferred())
		}
		if n := s.Commands(); n != 1 {
			t.Fatalf("%v: %d commands counted, want 1", cmd, n)
		}
		s.commands.Store(0)
	}
	if st := run(d, s, "INFO", "commandstats"); !strings.Contains(st, "cmdstat_rsincr:calls=1,") {
		t.Errorf("deferred runs counted in INFO commandstats: %q", st)
	}
	// Each deferred command once, from its first dispatch to its answer.
	st := run(d, s, "INFO", "persistence")
	if !strings.Contains(st, "\r\ndeferred_commands:4\r\n") ||
		!regexp.MustCompile(`\r\ndeferred_latency_percentiles_usec:p50=\d+\.\d{3},p99=\d+\.\d{3},p99\.9=\d+\.\d{3}\r\n`).MatchString(st) {
		t.Errorf("INFO persistence after 4 deferred commands = %q", st)
	}
	run(d, s, "CONFIG", "RESETSTAT")
	if st := run(d, s, "INFO", "persistence"); !strings.Contains(st, "\r\ndeferred_commands:0\r\n") || strings.Contains(st, "deferred_latency") {
		t.Errorf("INFO persistence after CONFIG RESETSTAT = %q", st)
	}
}

// movingFigures is a StatsSource and Host whose counters a test moves.
type movingFigures struct {
	fakeHost
	mu sync.Mutex
	es EngineStats
	hs HostStats
}

func (m *movingFigures) Stats() EngineStats {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.es
}

func (m *movingFigures) HostStats() HostStats {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.hs
}

func (m *movingFigures) add(hits, misses, evictions, commands uint64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.es.Hits += hits
	m.es.Misses += misses
	m.es.Evictions += evictions
	m.hs.TotalCommands += commands
	m.hs.TotalConnections++
}

// TestResetStatRestartsInfoStats: CONFIG RESETSTAT starts INFO stats'
// counters again from 0, as Redis does, while INFO keyspace's cache_*
// counters stay totals since start (as the Prometheus counters do).
func TestResetStatRestartsInfoStats(t *testing.T) {
	f := &movingFigures{}
	f.add(7, 3, 1, 42)
	d, _ := newTestDispatcher(t, func(c *Config) { c.Stats, c.Host = f, f })
	s := NewSession(1, "127.0.0.1:5000", "a", time.Time{})
	has := func(section string, fields ...string) {
		t.Helper()
		got := run(d, s, "INFO", section)
		for _, f := range fields {
			if !strings.Contains(got, "\r\n"+f+"\r\n") {
				t.Errorf("INFO %s lacks %q: %q", section, f, got)
			}
		}
	}
	has("stats", "keyspace_hits:7", "keyspace_misses:3", "evicted_keys:1", "total_commands_processed:42", "total_connections_received:1")
	if got := run(d, s, "CONFIG", "RESETSTAT"); got != "+OK\r\n" {
		t.Fatalf("CONFIG RESETSTAT = %q", got)
	}
	has("stats", "keyspace_hits:0", "keyspace_misses:0", "evicted_keys:0", "total_commands_processed:0", "total_connections_received:0")
	// The commands counter dips while a deferred command waits for its
	// run again: 0, not a wrapped-around difference.
	f.mu.Lock()
	f.hs.TotalCommands--
	f.mu.Unlock()
	has("stats", "total_commands_processed:0")
	f.mu.Lock()
	f.hs.TotalCommands++
	f.mu.Unlock()
	f.add(5, 2, 0, 8)
	has("stats", "keyspace_hits:5", "keyspace_misses:2", "evicted_keys:0", "total_commands_processed:8", "total_connections_received:1")
	has("keyspace", "cache_hits:12", "cache_misses:5", "cache_evictions:1")
}
