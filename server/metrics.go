package server

import (
	"errors"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/readstates/readstates/commands"
)

// Metrics is the server's Prometheus registry: per-command counts and
// latencies, connections, the engine's figures (read at scrape time), the
// database read latency, and the Go runtime's metrics including the GC
// pause histogram. It has its own registry (no global state).
//
// The per-command series are resolved once, when a Server binds the
// metrics, into a slice indexed by commands.Command.Index: recording a
// command is two atomic adds, with no label lookup and no allocation.
type Metrics struct {
	reg            *prometheus.Registry
	cmdDuration    *prometheus.HistogramVec
	cmdErrors      *prometheus.CounterVec
	loadDuration   prometheus.Histogram
	protocolErrors prometheus.Counter

	// Resolved by bind; read-only afterwards.
	durations []prometheus.Observer
	errs      []prometheus.Counter
	unknownD  prometheus.Observer
	unknownE  prometheus.Counter
}

// NewMetrics returns a registry with the runtime and process collectors.
// Pass it to the engine (ObserveLoad) and in Config.Metrics.
func NewMetrics() *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		cmdDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "readstates_command_duration_seconds",
			Help: "Time to run a command, by command; its _count is the number of commands.",
			// 5µs .. ~1.3s: a cache hit is microseconds, a read-through is
			// a database round trip.
			Buckets: prometheus.ExponentialBuckets(5e-6, 4, 10),
		}, []string{"command"}),
		cmdErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "readstates_command_errors_total",
			Help: "Commands answered with an error reply, by command.",
		}, []string{"command"}),
		loadDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "readstates_store_load_duration_seconds",
			Help:    "Time of a database read made by read-through on a cache miss.",
			Buckets: prometheus.ExponentialBuckets(50e-6, 4, 10),
		}),
		protocolErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "readstates_protocol_errors_total",
			Help: "Connections closed for a malformed or oversized request.",
		}),
	}
	m.reg.MustRegister(
		m.cmdDuration, m.cmdErrors, m.loadDuration, m.protocolErrors,
		collectors.NewGoCollector(collectors.WithGoCollectorRuntimeMetrics(
			collectors.MetricsGC, collectors.MetricsMemory, collectors.MetricsScheduler)),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return m
}

// ObserveLoad records one read-through database read; it fits
// persist.EngineConfig.ObserveLoad.
func (m *Metrics) ObserveLoad(d time.Duration) { m.loadDuration.Observe(d.Seconds()) }

// Handler serves the metrics in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg}))
	return mux
}

// Registry returns the registry, to add metrics of other parts.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// bind resolves the per-command series and registers the server's and the
// engine's collector. A Metrics can be bound to one Server.
func (m *Metrics) bind(s *Server, cmds []*commands.Command, stats commands.StatsSource) error {
	if m.durations != nil {
		return errors.New("metrics already bound to a server")
	}
	m.durations = make([]prometheus.Observer, len(cmds))
	m.errs = make([]prometheus.Counter, len(cmds))
	for i, c := range cmds {
		m.durations[i] = m.cmdDuration.WithLabelValues(c.Name)
		m.errs[i] = m.cmdErrors.WithLabelValues(c.Name)
	}
	m.unknownD = m.cmdDuration.WithLabelValues("unknown")
	m.unknownE = m.cmdErrors.WithLabelValues("unknown")
	return m.reg.Register(&collector{s: s, stats: stats, d: newDescs()})
}

// observe records one command; cmd is nil for an unknown command.
func (m *Metrics) observe(cmd *commands.Command, failed bool, d time.Duration) {
	obs, errs := m.unknownD, m.unknownE
	if cmd != nil {
		obs, errs = m.durations[cmd.Index], m.errs[cmd.Index]
	}
	obs.Observe(d.Seconds())
	if failed {
		errs.Inc()
	}
}

// collector reads the server's and the engine's figures at scrape time,
// so serving commands pays nothing for them.
type collector struct {
	s     *Server
	stats commands.StatsSource
	d     descs
}

func desc(name, help string) *prometheus.Desc {
	return prometheus.NewDesc("readstates_"+name, help, nil, nil)
}

// descs are the collector's metric descriptions.
type descs struct {
	clients, connections, rejected, commands                        *prometheus.Desc
	entries, capacity, hits, misses, evictions, pinned              *prometheus.Desc
	dirty, pending, oldestPending                                   *prometheus.Desc
	loads, loadErrors, writes, writeErrors, retries, flushes, flush *prometheus.Desc
	userLoads, missesWithoutLoad, warmLoads                         *prometheus.Desc
}

func newDescs() descs {
	return descs{
		clients:       desc("connected_clients", "Open client connections."),
		connections:   desc("connections_total", "Client connections accepted."),
		rejected:      desc("rejected_connections_total", "Client connections refused at maxclients."),
		commands:      desc("commands_total", "Commands processed, all connections."),
		entries:       desc("cache_entries", "Read states in the cache."),
		capacity:      desc("cache_capacity", "Read states the cache can hold."),
		hits:          desc("cache_hits_total", "Read states commands found in the cache, one per read state a command names."),
		misses:        desc("cache_misses_total", "Read states commands did not find in the cache, one per read state a command names."),
		evictions:     desc("cache_evictions_total", "Read states evicted from the cache."),
		pinned:        desc("cache_pinned_total", "Dirty read states kept in the cache because the write queue was full."),
		dirty:         desc("dirty_read_states", "Changed read states in the cache, not yet handed to the writer."),
		pending:       desc("pending_read_states", "Read states handed to the writer, not yet written."),
		oldestPending: desc("oldest_pending_seconds", "Age of the oldest unwritten record in the write queue."),
		loads:         desc("store_loads_total", "Database reads made by read-through."),
		loadErrors:    desc("store_load_errors_total", "Database reads that failed."),
		userLoads:     desc("store_user_loads_total", "Database reads of a user's partition, among store_loads_total."),
		warmLoads:     desc("store_warm_loads_total", "Partition reads made by a warm restart or a cluster hand-over, among store_user_loads_total."),
		missesWithoutLoad: desc("misses_without_load_total",
			"Cache misses answered with no database read: the user's partition was all in memory."),
		writes:      desc("store_writes_total", "Read state records written to the database."),
		writeErrors: desc("store_write_errors_total", "Database writes that failed."),
		retries:     desc("store_write_retries_total", "Database writes retried."),
		flushes:     desc("flush_cycles_total", "Completed flushes of every dirty read state."),
		flush:       desc("last_flush_timestamp_seconds", "Start of the last completed flush (Unix time); 0 before the first."),
	}
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	d := &c.d
	for _, x := range []*prometheus.Desc{d.clients, d.connections, d.rejected, d.commands,
		d.entries, d.capacity, d.hits, d.misses, d.evictions, d.pinned, d.dirty, d.pending,
		d.oldestPending, d.loads, d.loadErrors, d.writes, d.writeErrors, d.retries, d.flushes, d.flush,
		d.userLoads, d.missesWithoutLoad, d.warmLoads} {
		ch <- x
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	d := &c.d
	gauge := func(desc *prometheus.Desc, v float64) {
		ch <- prometheus.MustNewConstMetric(desc, prometheus.GaugeValue, v)
	}
	counter := func(desc *prometheus.Desc, v uint64) {
		ch <- prometheus.MustNewConstMetric(desc, prometheus.CounterValue, float64(v))
	}
	hs := (*host)(c.s).HostStats()
	gauge(d.clients, float64(hs.ConnectedClients))
	counter(d.connections, hs.TotalConnections)
	counter(d.rejected, hs.RejectedConnections)
	counter(d.commands, hs.TotalCommands)

	st := c.stats.Stats()
	gauge(d.entries, float64(st.Entries))
	gauge(d.capacity, float64(st.Capacity))
	counter(d.hits, st.Hits)
	counter(d.misses, st.Misses)
	counter(d.evictions, st.Evictions)
	counter(d.pinned, st.Pinned)
	gauge(d.dirty, float64(st.Dirty))
	gauge(d.pending, float64(st.Pending))
	gauge(d.oldestPending, st.OldestPending.Seconds())
	counter(d.loads, st.Loads)
	counter(d.loadErrors, st.LoadErrors)
	counter(d.userLoads, st.UserLoads)
	counter(d.warmLoads, st.WarmLoads)
	counter(d.missesWithoutLoad, st.MissesWithoutLoad)
	counter(d.writes, st.Writes)
	counter(d.writeErrors, st.WriteErrors)
	counter(d.retries, st.Retries)
	counter(d.flushes, st.FlushCycles)
	var last float64
	if !st.LastFlush.IsZero() {
		last = float64(st.LastFlush.UnixNano()) / 1e9
	}
	gauge(d.flush, last)
}
