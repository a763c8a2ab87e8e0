package commands

import (
	"context"
	"math"
	"os"
	"runtime"
	"runtime/metrics"
	"strconv"
	"strings"
	"time"
)

// INFO [section ...]
//
// Sections as Redis names them, with the fields that mean something here,
// plus the write-behind engine's figures:
//   - server: versions, process, uptime;
//   - clients: connected_clients, maxclients;
//   - memory: used_memory (the Go runtime's) and Go heap and GC figures. The
//     cache arenas are outside the Go heap (see package cache) and show
//     only in used_memory_rss;
//   - persistence: the journal (aof_*: size, fsync policy, status), the
//     write-behind backlog (dirty, pending), the last flush and its lag,
//     store writes, loads and errors, stored stamps seen ahead of the clock,
//     and the commands an event loop deferred to wait for the database (or
//     a moving slot): how many, and percentiles of their whole time, from
//     the loop's first attempt to the answer (cleared by CONFIG RESETSTAT);
//   - stats: connections, commands, cache hits, misses and evictions under
//     Redis's names (keyspace_hits, keyspace_misses, evicted_keys), and
//     error replies (total_error_replies), since start or the last
//     CONFIG RESETSTAT; as in Redis, a command counts
//     one hit or miss per read state it names, however often its
//     read-through looks again (persist.Stats);
//   - replication: role:master, so tools that look for a role find one;
//   - errorstats: error replies by code (errorstat_ERR:count=3), a
//     protocol error's included, since start or the last CONFIG
//     RESETSTAT; their sum is stats' total_error_replies. As in Redis, a
//     command refused before it ran (arity, NOAUTH, its slot served
//     elsewhere or moving, EXEC's included, or refused by MULTI's queue)
//     is its rejected_calls, not its calls;
//   - keyspace: db0 with the cached read states, and the cache figures
//     (totals since start);
//   - commandstats, latencystats: per command, calls, run time and its
//     percentiles (cmdstats.go); as in Redis, only with "all",
//     "everything" or by name.
//
// "default" (or no argument) gives every section but the last two; an
// unknown section gives nothing, as in Redis.
func info(_ context.Context, d *Dispatcher, w Writer, s *Session, args [][]byte) {
	want := map[string]bool{}
	defaults, all := len(args) == 1, false
	for _, a := range args[1:] {
		sec := strings.ToLower(string(a))
		switch sec {
		case "all", "everything":
			defaults, all = true, true
		case "default":
			defaults = true
		default:
			want[sec] = true
		}
	}
	base := d.statsBase.Load() // before the figures: a RESETSTAT's copy is of earlier ones
	es, hs := d.figures()
	now := d.now()
	var b []byte
	section := func(name string, fill func([]byte) []byte) {
		inDefault := name != "Commandstats" && name != "Latencystats"
		if !(all || defaults && inDefault) && !want[strings.ToLower(name)] {
			return
		}
		if len(b) > 0 {
			b = append(b, "\r\n"...)
		}
		b = append(b, "# "...)
		b = append(b, name...)
		b = append(b, "\r\n"...)
		b = fill(b)
	}
	section("Server", func(b []byte) []byte {
		up := int64(now.Sub(d.started) / time.Second)
		b = field(b, "redis_version", RedisVersion)
		b = field(b, "readstates_version", d.version)
		if d.cluster != nil {
			b = field(b, "redis_mode", "cluster")
		} else {
			b = field(b, "redis_mode", "standalone")
		}
		b = field(b, "os", runtime.GOOS+" "+runtime.GOARCH)
		b = field(b, "arch_bits", strconv.Itoa(strconv.IntSize))
		b = field(b, "go_version", runtime.Version())
		b = fieldInt(b, "process_id", int64(os.Getpid()))
		b = field(b, "run_id", d.runID)
		b = fieldInt(b, "tcp_port", int64(hs.Port))
		b = fieldInt(b, "uptime_in_seconds", up)
		b = fieldInt(b, "uptime_in_days", up/86400)
		return b
	})
	section("Clients", func(b []byte) []byte {
		b = fieldInt(b, "connected_clients", int64(hs.ConnectedClients))
		b = fieldInt(b, "maxclients", int64(hs.MaxClients))
		b = field(b, "blocked_clients", "0") // no command blocks; redis-cli --stat reads it
		return b
	})
	section("Memory", func(b []byte) []byte { return appendMemory(b) })
	section("Persistence", func(b []byte) []byte {
		b = field(b, "loading", "0")
		// No child process saves or rewrites anything (redis-cli --stat's
		// "child" column reads these).
		b = field(b, "rdb_bgsave_in_progress", "0")
		b = field(b, "aof_rewrite_in_progress", "0")
		aof := "0"
		if es.JournalOn {
			aof = "1"
		}
		b = field(b, "aof_enabled", aof)
		if es.JournalOn {
			// The journal is this server's append-only file; Redis's
			// names where they mean the same.
			b = field(b, "aof_fsync", es.Journal.Policy)
			b = fieldInt(b, "aof_current_size", es.Journal.Bytes)
			b = fieldInt(b, "aof_segments", es.Journal.Segments)
			b = fieldUint(b, "aof_appended_records", es.Journal.Appended)
			b = fieldUint(b, "aof_fsyncs", es.Journal.Fsyncs)
			status := "ok"
			if es.Journal.Failing {
				status = "err"
			}
			b = field(b, "aof_last_write_status", status)
		}
		b = fieldUint(b, "stamps_ahead_of_clock_total", es.StampsAhead)
		b = fieldInt(b, "rdb_changes_since_last_save", es.Dirty+es.Pending)
		b = fieldInt(b, "rdb_last_save_time", unixOrZero(es.LastFlush))
		b = fieldInt(b, "dirty_read_states", es.Dirty)
		b = fieldInt(b, "pending_read_states", es.Pending)
		b = fieldUint(b, "pinned_refusals_total", es.Pinned)
		b = fieldInt(b, "oldest_pending_seconds", int64(es.OldestPending/time.Second))
		b = fieldInt(b, "last_flush_time", unixOrZero(es.LastFlush))
		lag := int64(-1) // no full flush yet
		if !es.LastFlush.IsZero() {
			lag = int64(now.Sub(es.LastFlush) / time.Second)
		}
		b = fieldInt(b, "flush_lag_seconds", lag)
		b = fieldUint(b, "flush_cycles", es.FlushCycles)
		b = fieldUint(b, "store_writes", es.Writes)
		b = fieldUint(b, "store_write_errors", es.WriteErrors)
		b = fieldUint(b, "store_write_retries", es.Retries)
		b = fieldUint(b, "store_write_users", es.WriteUsers)
		b = fieldInt(b, "store_write_busy_ms", es.WriteBusy.Milliseconds())
		b = fieldUint(b, "store_loads", es.Loads)
		b = fieldUint(b, "store_load_errors", es.LoadErrors)
		b = fieldUint(b, "store_user_loads", es.UserLoads)
		b = fieldUint(b, "store_warm_loads", es.WarmLoads)
		b = fieldUint(b, "misses_without_load", es.MissesWithoutLoad)
		return d.appendDeferredStats(b)
	})
	section("Stats", func(b []byte) []byte {
		c := countersOf(es, hs)
		if base != nil {
			c = c.since(*base)
		}
		b = fieldUint(b, "total_connections_received", c.connections)
		b = fieldUint(b, "total_commands_processed", c.commands)
		b = fieldUint(b, "rejected_connections", c.rejected)
		b = fieldUint(b, "keyspace_hits", c.hits)
		b = fieldUint(b, "keyspace_misses", c.misses)
		b = fieldUint(b, "evicted_keys", c.evictions)
		b = field(b, "expired_keys", "0")
		b = fieldUint(b, "total_error_replies", d.errStats.total.Load())
		return b
	})
	section("Replication", func(b []byte) []byte {
		b = field(b, "role", "master")
		b = field(b, "connected_slaves", "0")
		return b
	})
	section("Errorstats", d.errStats.appendErrorStats)
	section("Cluster", func(b []byte) []byte {
		if d.cluster == nil {
			return field(b, "cluster_enabled", "0")
		}
		return field(b, "cluster_enabled", "1")
	})
	section("Keyspace", func(b []byte) []byte {
		b = append(b, "db0:keys="...)
		b = strconv.AppendInt(b, es.Entries, 10)
		b = append(b, ",expires=0,avg_ttl=0\r\n"...)
		b = fieldInt(b, "cached_read_states", es.Entries)
		b = fieldInt(b, "cache_capacity", es.Capacity)
		b = field(b, "cache_implementation", es.CacheImplementation)
		b = fieldUint(b, "cache_hits", es.Hits)
		b = fieldUint(b, "cache_misses", es.Misses)
		b = fieldUint(b, "cache_evictions", es.Evictions)
		return b
	})
	section("Commandstats", d.appendCommandStats)
	section("Latencystats", d.appendLatencyStats)
	s.writeVerbatim(w, b)
}

func field(b []byte, name, value string) []byte {
	b = append(b, name...)
	b = append(b, ':')
	b = append(b, value...)
	return append(b, '\r', '\n')
}

func fieldInt(b []byte, name string, v int64) []byte {
	b = append(b, name...)
	b = append(b, ':')
	b = strconv.AppendInt(b, v, 10)
	return append(b, '\r', '\n')
}

func fieldUint(b []byte, name string, v uint64) []byte {
	b = append(b, name...)
	b = append(b, ':')
	b = strconv.AppendUint(b, v, 10)
	return append(b, '\r', '\n')
}

func unixOrZero(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.Unix()
}

// appendMemory reports memory and GC figures from runtime/metrics, which
// (unlike runtime.ReadMemStats) does not stop the world. The GC figures are
// cumulative since start, so a client can take differences over a window:
// go_gc_cpu_seconds / process_cpu_seconds is the fraction of the process's
// CPU time spent on garbage collection (the runtime updates its GC CPU
// figure at the end of each cycle).
func appendMemory(b []byte) []byte {
	samples := []metrics.Sample{
		{Name: "/memory/classes/total:bytes"},
		{Name: "/memory/classes/heap/released:bytes"},
		{Name: "/memory/classes/heap/objects:bytes"},
		{Name: "/gc/heap/goal:bytes"},
		{Name: "/gc/cycles/total:gc-cycles"},
		{Name: "/sched/goroutines:goroutines"},
		{Name: "/cpu/classes/gc/total:cpu-seconds"},
		{Name: "/sched/pauses/total/gc:seconds"},
	}
	metrics.Read(samples)
	v := make([]uint64, len(samples))
	f := make([]float64, len(samples))
	for i, s := range samples {
		switch s.Value.Kind() {
		case metrics.KindUint64:
			v[i] = s.Value.Uint64()
		case metrics.KindFloat64:
			f[i] = s.Value.Float64()
		}
	}
	used := v[0] - min(v[1], v[0]) // mapped by the Go runtime and not returned to the OS
	b = fieldUint(b, "used_memory", used)
	b = field(b, "used_memory_human", humanBytes(used))
	if rss, ok := residentBytes(); ok {
		b = fieldUint(b, "used_memory_rss", rss)
		b = field(b, "used_memory_rss_human", humanBytes(rss))
	}
	b = fieldUint(b, "go_heap_objects_bytes", v[2])
	b = fieldUint(b, "go_heap_goal_bytes", v[3])
	b = fieldUint(b, "go_gc_cycles", v[4])
	b = fieldUint(b, "go_goroutines", v[5])
	b = fieldFloat(b, "go_gc_cpu_seconds", f[6])
	if cpu, ok := processCPUSeconds(); ok {
		b = fieldFloat(b, "process_cpu_seconds", cpu)
	}
	var pauses uint64
	var pauseSum, pauseMax float64
	if s := samples[7]; s.Value.Kind() == metrics.KindFloat64Histogram {
		h := s.Value.Float64Histogram()
		for i, n := range h.Counts {
			if n == 0 {
				continue
			}
			// Buckets[i] .. Buckets[i+1]; the outer ones may be infinite.
			lo, hi := h.Buckets[i], h.Buckets[i+1]
			if math.IsInf(lo, -1) {
				lo = 0
			}
			if math.IsInf(hi, 1) {
				hi = lo
			}
			pauses += n
			pauseSum += float64(n) * (lo + hi) / 2
			pauseMax = hi
		}
	}
	b = fieldUint(b, "go_gc_pauses", pauses)
	b = fieldFloat(b, "go_gc_pause_seconds_total", pauseSum)
	b = fieldFloat(b, "go_gc_pause_max_seconds", pauseMax)
	return b
}

func fieldFloat(b []byte, name string, v float64) []byte {
	b = append(b, name...)
	b = append(b, ':')
	b = strconv.AppendFloat(b, v, 'f', 6, 64)
	return append(b, '\r', '\n')
}

// residentBytes reads the process's resident set from /proc (Linux); the
// cache arenas live outside the Go heap and only show here.
func residentBytes() (uint64, bool) {
	data, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0, false
	}
	f := strings.Fields(string(data))
	if len(f) < 2 {
		return 0, false
	}
	pages, err := strconv.ParseUint(f[1], 10, 64)
	if err != nil {
		return 0, false
	}
	return pages * uint64(os.Getpagesize()), true
}

func humanBytes(n uint64) string {
	const units = "BKMGTP"
	f := float64(n)
	i := 0
	for f >= 1024 && i < len(units)-1 {
		f /= 1024
		i++
	}
	if i == 0 {
		return strconv.FormatUint(n, 10) + "B"
	}
	return strconv.FormatFloat(f, 'f', 2, 64) + units[i:i+1]
}

// statCounters are the counters of INFO stats that CONFIG RESETSTAT
// resets in Redis. Here their sources are totals since start (they are
// Prometheus counters too), so RESETSTAT keeps a copy and INFO shows the
// difference.
type statCounters struct {
	connections, commands, rejected uint64
	hits, misses, evictions         uint64
}

func countersOf(es EngineStats, hs HostStats) statCounters {
	return statCounters{
		connections: hs.TotalConnections, commands: hs.TotalCommands, rejected: hs.RejectedConnections,
		hits: es.Hits, misses: es.Misses, evictions: es.Evictions,
	}
}

// since returns c less base, each at least 0: a copy taken by a
// RESETSTAT that ran while the figures were read can be ahead of them, and
// total_commands_processed dips while a deferred command waits for its
// run again (Dispatcher.dispatch).
func (c statCounters) since(base statCounters) statCounters {
	sub := func(a, b uint64) uint64 { return a - min(a, b) }
	return statCounters{
		connections: sub(c.connections, base.connections), commands: sub(c.commands, base.commands),
		rejected: sub(c.rejected, base.rejected), hits: sub(c.hits, base.hits),
		misses: sub(c.misses, base.misses), evictions: sub(c.evictions, base.evictions),
	}
}

// figures returns the engine's and the host's figures, zero for either
// the Dispatcher was not given.
func (d *Dispatcher) figures() (EngineStats, HostStats) {
	var es EngineStats
	if d.stats != nil {
		es = d.stats.Stats()
	}
	var hs HostStats
	if d.host != nil {
		hs = d.host.HostStats()
	}
	return es, hs
}
