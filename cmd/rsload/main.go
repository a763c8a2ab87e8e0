// Command rsload is an open-loop load generator for readstates: it sends
// read-state commands at a fixed rate, whatever the server's latency, and
// records the latency of every request into one histogram per second, next
// to the server's GC cycles, GC CPU time and RSS (from INFO) and the
// commands' run time inside the server (LATENCY HISTOGRAM). It is the
// measuring tool of scripts/latency.sh and scripts/sweep.sh (BENCHMARKS.md).
//
// Open loop: each connection's sender wakes every millisecond and writes
// every request that is due by then, without waiting for replies; latency
// runs from the moment a request is written to the moment its reply is
// read. A server stall therefore shows in every request sent during it
// (closed-loop tools like redis-benchmark send less while the server
// stalls and hide it: "coordinated omission").
//
// The server-side figures only read the server's statistics: every second
// rsload reads the cumulative per-command histograms of LATENCY HISTOGRAM
// and takes the difference from the second before, so it neither resets
// them (CONFIG RESETSTAT) nor changes the server's configuration, and
// other observers of INFO commandstats and latencystats are undisturbed.
// A server-side percentile is the bound of the histogram bucket that holds
// it, in whole microseconds: against readstates, which has FINE buckets,
// between 1 µs below and 3% above the true value (INFO latencystats'
// precision); Redis has only power-of-two buckets, so against
// redis-server (-target redis) up to twice the true value.
package main

import (
	"bufio"
	"context"
	"encoding/csv"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/readstates/readstates/internal/latency"
)

// Ids are offset to snowflake-like 18-digit values, as real ids are.
const (
	userBase    = 100_000_000_000_000_000
	channelBase = 200_000_000_000_000_000
)

type config struct {
	addr       string
	keys       int64
	channels   int64
	preload    bool
	rate       float64
	conns      int
	duration   time.Duration
	warmup     time.Duration
	mix        mix
	out        string
	label      string
	preloadCon int
	redis      bool // talk to redis-server with hash commands (see request)
}

func main() {
	var c config
	var mixFlag string
	flag.StringVar(&c.addr, "addr", "127.0.0.1:6380", "server address")
	flag.Int64Var(&c.keys, "keys", 1_000_000, "read states in the keyspace (users x channels)")
	flag.Int64Var(&c.channels, "channels", 100, "channels per user")
	flag.BoolVar(&c.preload, "preload", false, "first load every read state into the cache (pipelined RSGET)")
	flag.IntVar(&c.preloadCon, "preload-conns", 4, "connections used by -preload")
	flag.Float64Var(&c.rate, "rate", 20000, "requests per second, over all connections")
	flag.IntVar(&c.conns, "conns", 16, "connections")
	flag.DurationVar(&c.duration, "duration", time.Minute, "how long to send at -rate (0: only preload)")
	flag.DurationVar(&c.warmup, "warmup", 10*time.Second, "leading part of the run left out of the summary")
	flag.StringVar(&mixFlag, "mix", "incr=50,reset=20,get=25,mget=5", "command mix in percent (mget reads 10 channels)")
	flag.StringVar(&c.out, "out", "", "write the per-second figures to this CSV file")
	flag.StringVar(&c.label, "label", "", "name of this run in the summary")
	target := flag.String("target", "readstates", "readstates, or redis: a redis-server sent the hash commands that come closest (HINCRBY, HSET, HMGET), the reference to measure against")
	flag.Parse()
	switch *target {
	case "readstates":
	case "redis":
		c.redis = true
	default:
		fmt.Fprintln(os.Stderr, "rsload: -target must be readstates or redis")
		os.Exit(2)
	}
	m, err := parseMix(mixFlag)
	if err != nil {
		fmt.Fprintln(os.Stderr, "rsload: -mix:", err)
		os.Exit(2)
	}
	c.mix = m
	if c.keys < 1 || c.channels < 1 || c.conns < 1 || c.rate <= 0 {
		fmt.Fprintln(os.Stderr, "rsload: -keys, -channels, -conns and -rate must be positive")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, c); err != nil {
		fmt.Fprintln(os.Stderr, "rsload:", err)
		os.Exit(1)
	}
}

type mix struct{ incr, reset, get, mget int }

func parseMix(s string) (mix, error) {
	var m mix
	for _, part := range strings.Split(s, ",") {
		name, val, ok := strings.Cut(strings.TrimSpace(part), "=")
		n, err := strconv.Atoi(val)
		if !ok || err != nil || n < 0 {
			return m, fmt.Errorf("%q is not name=percent", part)
		}
		switch name {
		case "incr":
			m.incr = n
		case "reset":
			m.reset = n
		case "get":
			m.get = n
		case "mget":
			m.mget = n
		default:
			return m, fmt.Errorf("unknown command %q (incr, reset, get, mget)", name)
		}
	}
	if m.incr+m.reset+m.get+m.mget != 100 {
		return m, errors.New("percentages must add up to 100")
	}
	return m, nil
}

func run(ctx context.Context, c config) error {
	if c.preload {
		if err := preload(ctx, c); err != nil {
			return err
		}
	}
	if c.duration <= 0 {
		return nil
	}
	return measure(ctx, c)
}

func dial(addr string) (net.Conn, *bufio.Reader, error) {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, nil, err
	}
	return conn, bufio.NewReaderSize(conn, 64<<10), nil
}

func key(c config, k int64) (user, channel int64) {
	return userBase + k/c.channels, channelBase + k%c.channels
}

// preload reads every read state once, pipelined, so the cache holds the
// whole keyspace (a miss loads it through from the store); against Redis
// it writes every one, so the keyspace exists.
func preload(ctx context.Context, c config) error {
	start := time.Now()
	var done atomic.Int64
	errc := make(chan error, c.preloadCon)
	per := (c.keys + int64(c.preloadCon) - 1) / int64(c.preloadCon)
	for i := range c.preloadCon {
		go func(lo, hi int64) {
			errc <- preloadRange(ctx, c, lo, min(hi, c.keys), &done)
		}(int64(i)*per, int64(i+1)*per)
	}
	tick := time.NewTicker(10 * time.Second)
	defer tick.Stop()
	var errs []error
	for left := c.preloadCon; left > 0; {
		select {
		case err := <-errc:
			errs = append(errs, err)
			left--
		case <-tick.C:
			n := done.Load()
			fmt.Printf("preload: %d/%d (%.0f/s)\n", n, c.keys, float64(n)/time.Since(start).Seconds())
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("preload: %w", err)
	}
	el := time.Since(start)
	fmt.Printf("preload: %d read states in %v (%.0f/s)\n", c.keys, el.Round(time.Millisecond), float64(c.keys)/el.Seconds())
	return nil
}

func preloadRange(ctx context.Context, c config, lo, hi int64, done *atomic.Int64) error {
	conn, r, err := dial(c.addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	const depth = 256
	buf := make([]byte, 0, depth*80)
	for k := lo; k < hi && ctx.Err() == nil; {
		n := min(int64(depth), hi-k)
		buf = buf[:0]
		for j := range n {
			u, ch := key(c, k+j)
			if c.redis {
				buf = request(buf, c, opReset, u, ch, 0, nil)
			} else {
				buf = request(buf, c, opGet, u, ch, 0, nil)
			}
		}
		if _, err := conn.Write(buf); err != nil {
			return err
		}
		for range n {
			if err := skipReply(r); err != nil {
				return fmt.Errorf("RSGET: %w", err)
			}
		}
		k += n
		done.Add(n)
	}
	return ctx.Err()
}

// second holds what happened to the requests sent in one second.
type second struct {
	h    latency.Histogram
	errs atomic.Uint64
}

// sample is the server's INFO figures at the start of a second, and its
// command run time (LATENCY HISTOGRAM) over the second before.
type sample struct {
	ok                                        bool
	gcCycles, gcPauses                        float64
	gcCPU, cpu, pauseSum, pauseMax, rss, heap float64
	entries                                   float64
	// The slowest command's p99.9 and p100 run time, in µs, since the
	// previous sample (-1: not reported): the bounds of the histogram
	// buckets that hold them (see serverLatency).
	srvP999, srvMax float64
}

type batch struct {
	at time.Duration // since the start of the run
	n  int
}

func measure(ctx context.Context, c config) error {
	nsec := int((c.duration + time.Second - 1) / time.Second)
	secs := make([]second, nsec+30) // replies may arrive after the end
	samples := make([]sample, nsec+1)
	var firstErr atomic.Value

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	start := time.Now()
	var wg sync.WaitGroup
	perConn := c.rate / float64(c.conns)
	for i := range c.conns {
		conn, r, err := dial(c.addr)
		if err != nil {
			return err
		}
		defer conn.Close()
		fifo := make(chan batch, 1<<16)
		wg.Add(2)
		go func() {
			defer wg.Done()
			defer close(fifo)
			if err := send(ctx, c, conn, fifo, start, perConn, uint64(i)); err != nil && ctx.Err() == nil {
				firstErr.CompareAndSwap(nil, err)
				cancel()
			}
		}()
		go func() {
			defer wg.Done()
			if err := receive(r, fifo, start, secs); err != nil {
				firstErr.CompareAndSwap(nil, err)
				cancel()
				conn.Close()
			}
		}()
	}
	var whole wholeRun
	wg.Add(1)
	go func() {
		defer wg.Done()
		whole = poll(ctx, c, start, samples)
	}()
	wg.Wait()
	if err, _ := firstErr.Load().(error); err != nil {
		return err
	}
	return report(c, secs[:nsec], samples, whole)
}

// send writes the requests due every millisecond until the run's end.
func send(ctx context.Context, c config, conn net.Conn, fifo chan<- batch, start time.Time, rate float64, seed uint64) error {
	rng := rand.New(rand.NewPCG(seed, uint64(start.UnixNano())))
	w := bufio.NewWriterSize(conn, 64<<10)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	var sent int64
	var msg int64 = 1
	var chans10 [10]int64
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		now := time.Since(start)
		if now >= c.duration {
			return nil
		}
		n := int(int64(now.Seconds()*rate) - sent)
		if n <= 0 {
			continue
		}
		for range n {
			u, ch := key(c, rng.Int64N(c.keys))
			p := rng.IntN(100)
			op, chans := opMGet, []int64(nil)
			switch {
			case p < c.mix.incr:
				op = opIncr
			case p < c.mix.incr+c.mix.reset:
				op = opReset
				msg++
			case p < c.mix.incr+c.mix.reset+c.mix.get:
				op = opGet
			default:
				first := rng.Int64N(c.channels)
				for j := range int64(len(chans10)) {
					chans10[j] = channelBase + (first+j)%c.channels
				}
				chans = chans10[:]
			}
			w.Write(request(w.AvailableBuffer(), c, op, u, ch, msg, chans))
		}
		fifo <- batch{at: time.Since(start), n: n}
		if err := w.Flush(); err != nil {
			return err
		}
		sent += int64(n)
	}
}

const (
	opIncr = iota
	opReset
	opGet
	opMGet
)

// request appends one request of the mix. Against Redis, a read state is
// field <channel> (the mention count) and field m:<channel> (the last
// message id) of hash rs:<user>; RSRESET's atomic read-and-clear has no
// one-command equivalent there, so it becomes a plain HSET.
func request(b []byte, c config, op int, u, ch, msg int64, chans []int64) []byte {
	if !c.redis {
		switch op {
		case opIncr:
			return appendCommand(b, "RSINCR", u, ch, 1)
		case opReset:
			return appendCommand(b, "RSRESET", u, ch, msg)
		case opGet:
			return appendCommand(b, "RSGET", u, ch)
		}
		return appendMulti(b, "RSMGET", "", u, chans)
	}
	switch op {
	case opIncr:
		b = appendArray(b, 4)
		b = appendBulk(b, "HINCRBY")
		b = appendBulkInt(b, "rs:", u)
		b = appendBulkInt(b, "", ch)
		return appendBulk(b, "1")
	case opReset:
		b = appendArray(b, 6)
		b = appendBulk(b, "HSET")
		b = appendBulkInt(b, "rs:", u)
		b = appendBulkInt(b, "", ch)
		b = appendBulk(b, "0")
		b = appendBulkInt(b, "m:", ch)
		return appendBulkInt(b, "", msg)
	case opGet:
		b = appendArray(b, 4)
		b = appendBulk(b, "HMGET")
		b = appendBulkInt(b, "rs:", u)
		b = appendBulkInt(b, "", ch)
		return appendBulkInt(b, "m:", ch)
	}
	return appendMulti(b, "HMGET", "rs:", u, chans)
}

// appendMulti appends name key chans...: a multi-get of one user's channels.
func appendMulti(b []byte, name, keyPrefix string, u int64, chans []int64) []byte {
	b = appendArray(b, 2+len(chans))
	b = appendBulk(b, name)
	b = appendBulkInt(b, keyPrefix, u)
	for _, x := range chans {
		b = appendBulkInt(b, "", x)
	}
	return b
}

// receive reads the replies in order and files each latency under the
// second its request was sent in.
func receive(r *bufio.Reader, fifo <-chan batch, start time.Time, secs []second) error {
	for b := range fifo {
		s := &secs[min(int(b.at/time.Second), len(secs)-1)]
		for range b.n {
			err := skipReply(r)
			var er errReply
			switch {
			case errors.As(err, &er):
				s.errs.Add(1)
			case err != nil:
				return fmt.Errorf("read reply: %w", err)
			}
			s.h.Record(time.Since(start) - b.at)
		}
	}
	return nil
}

// poll samples the server at the start of every second: INFO, and the
// cumulative histograms of the mix's commands (LATENCY HISTOGRAM), whose
// difference from the previous second's is the second's distribution. It
// only reads: it sets and resets nothing on the server.
func poll(ctx context.Context, c config, start time.Time, samples []sample) (whole wholeRun) {
	conn, r, err := dial(c.addr)
	if err != nil {
		return whole
	}
	defer conn.Close()
	go func() { <-ctx.Done(); conn.SetDeadline(time.Now()) }()
	req := appendStrings(nil, "INFO", "default")
	req = appendStrings(req, histogramRequest(c)...)
	var prev map[string]cdf
	for i := range samples {
		select {
		case <-ctx.Done():
			return whole
		case <-time.After(time.Until(start.Add(time.Duration(i) * time.Second))):
		}
		if _, err := conn.Write(req); err != nil {
			return whole
		}
		text, err := readBulk(r)
		if err != nil {
			return whole
		}
		samples[i] = parseInfo(text)
		v, err := readValue(r)
		if err != nil {
			return whole
		}
		cur, err := histograms(v)
		if err != nil && (prev != nil || i == 0) {
			fmt.Fprintln(os.Stderr, "rsload: no server-side latency: LATENCY HISTOGRAM:", err)
		}
		samples[i].srvP999, samples[i].srvMax = serverLatency(prev, cur, 0.999)
		prev = cur
		if cur != nil {
			if i <= int(c.warmup/time.Second) {
				whole.first = cur
			}
			whole.last = cur
		}
	}
	return whole
}

// wholeRun is LATENCY HISTOGRAM at the end of the warm-up and at the end
// of the run: the server's figures over the measured run.
type wholeRun struct{ first, last map[string]cdf }

// histogramRequest is the LATENCY HISTOGRAM of the mix's commands: with
// readstates' FINE buckets, or Redis's own.
func histogramRequest(c config) []string {
	if c.redis {
		return []string{"LATENCY", "HISTOGRAM", "hincrby", "hset", "hmget"}
	}
	return []string{"LATENCY", "HISTOGRAM", "FINE", "rsincr", "rsreset", "rsget", "rsmget"}
}

// cdf is one command's entry of LATENCY HISTOGRAM: its calls, and for each
// bucket bound (µs, increasing) the calls that took at most that long.
// Buckets in which no call fell are left out.
type cdf struct {
	calls  uint64
	bounds []int64
	counts []uint64 // cumulative
}

// at returns the cumulative count at bound b: that of the largest bound
// up to b (the buckets left out added nothing).
func (h cdf) at(b int64) uint64 {
	i, _ := slices.BinarySearch(h.bounds, b+1)
	if i == 0 {
		return 0
	}
	return h.counts[i-1]
}

// window returns the cumulative distribution of the calls between two
// readings, prev and cur, on cur's bounds. A count that went down means
// the statistics were reset in between (another client's CONFIG
// RESETSTAT): then the calls since the reset, cur alone.
func window(prev, cur cdf) []uint64 {
	out := make([]uint64, len(cur.counts))
	if cur.calls < prev.calls {
		return append(out[:0], cur.counts...)
	}
	for i, b := range cur.bounds {
		p := prev.at(b)
		if cur.counts[i] < p {
			return append(out[:0], cur.counts...)
		}
		out[i] = cur.counts[i] - p
	}
	return out
}

// quantile returns the bound of the bucket holding the q-quantile of a
// cumulative distribution, and false if it is empty. The rank is
// internal/latency's (so the client-side figures and these agree).
func quantile(bounds []int64, cum []uint64, q float64) (int64, bool) {
	if len(cum) == 0 || cum[len(cum)-1] == 0 {
		return 0, false
	}
	n := cum[len(cum)-1]
	rank := min(max(uint64(q*float64(n)+0.5), 1), n)
	i, _ := slices.BinarySearch(cum, rank)
	return bounds[i], true
}

// serverLatency is the slowest command's q-quantile and maximum run time,
// in µs, between two readings of LATENCY HISTOGRAM; -1 if either is missing
// or no command ran. Each is the bound of the bucket that holds it, in
// whole µs (truncated): from 1 µs below to 3% above the true value with
// readstates' FINE buckets, up to twice it with Redis's powers of two.
func serverLatency(prev, cur map[string]cdf, q float64) (pq, maxUs float64) {
	pq, maxUs = -1, -1
	if prev == nil || cur == nil {
		return pq, maxUs
	}
	for name, h := range cur {
		cum := window(prev[name], h)
		if p, ok := quantile(h.bounds, cum, q); ok {
			pq = max(pq, float64(p))
		}
		if m, ok := quantile(h.bounds, cum, 1); ok {
			maxUs = max(maxUs, float64(m))
		}
	}
	return pq, maxUs
}

func parseInfo(text string) sample {
	f := map[string]float64{}
	for _, line := range strings.Split(text, "\r\n") {
		name, val, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		if v, err := strconv.ParseFloat(val, 64); err == nil {
			f[name] = v
		}
	}
	cpu, ok := f["process_cpu_seconds"]
	if !ok { // redis-server
		cpu = f["used_cpu_sys"] + f["used_cpu_user"]
	}
	return sample{
		ok:       true,
		gcCycles: f["go_gc_cycles"],
		gcPauses: f["go_gc_pauses"],
		gcCPU:    f["go_gc_cpu_seconds"],
		cpu:      cpu,
		pauseSum: f["go_gc_pause_seconds_total"],
		pauseMax: f["go_gc_pause_max_seconds"],
		rss:      f["used_memory_rss"],
		heap:     f["go_heap_objects_bytes"],
		entries:  f["cached_read_states"],
		srvP999:  -1,
		srvMax:   -1,
	}
}

func us(d time.Duration) string { return strconv.FormatFloat(float64(d)/1e3, 'f', 1, 64) }

func report(c config, secs []second, samples []sample, whole wholeRun) error {
	if c.out != "" {
		if err := writeCSV(c.out, secs, samples); err != nil {
			return err
		}
	}
	skip := min(int(c.warmup/time.Second), len(secs)-1)
	var all latency.Histogram
	var errs uint64
	var worst999, worstMax time.Duration
	var p999s []time.Duration
	for i := skip; i < len(secs); i++ {
		s := &secs[i]
		all.Merge(&s.h)
		errs += s.errs.Load()
		if s.h.Count() == 0 {
			continue
		}
		p := s.h.Quantile(0.999)
		p999s = append(p999s, p)
		worst999 = max(worst999, p)
		worstMax = max(worstMax, s.h.Max())
	}
	el := float64(len(secs) - skip)
	label := c.label
	if label == "" {
		label = c.addr
	}
	fmt.Printf("== %s: %d requests in %.0f s (%.0f/s, target %.0f/s), %d error replies\n",
		label, all.Count(), el, float64(all.Count())/el, c.rate, errs)
	fmt.Printf("latency: p50 %s µs, p99 %s µs, p99.9 %s µs, max %s µs; per second: median p99.9 %s µs, worst p99.9 %s µs, worst max %s µs\n",
		us(all.Quantile(0.5)), us(all.Quantile(0.99)), us(all.Quantile(0.999)), us(all.Quantile(1)),
		us(median(p999s)), us(worst999), us(worstMax))
	// Sample i+1 holds the server's latency over second i.
	var srv999 []time.Duration
	var srvWorst999, srvMax float64
	for i := skip + 1; i < len(samples); i++ {
		if p := samples[i]; p.ok && p.srvP999 >= 0 {
			srv999 = append(srv999, time.Duration(p.srvP999*1e3))
			srvWorst999 = max(srvWorst999, p.srvP999)
			srvMax = max(srvMax, p.srvMax)
		}
	}
	if len(srv999) > 0 {
		fmt.Printf("server-side (command run time, slowest command): per second: median p99.9 %s µs, worst p99.9 %.1f µs, max %.1f µs",
			us(median(srv999)), srvWorst999, srvMax)
		if p, m := serverLatency(whole.first, whole.last, 0.9999); p >= 0 {
			fmt.Printf("; whole run after the warm-up: p99.99 %.1f µs, max %.1f µs", p, m)
		}
		fmt.Println()
	}
	a, b := samples[skip], samples[len(samples)-1]
	if a.ok && b.ok {
		gcFrac := 0.0
		if b.cpu > a.cpu {
			gcFrac = (b.gcCPU - a.gcCPU) / (b.cpu - a.cpu)
		}
		meanPause := 0.0
		if n := b.gcPauses - a.gcPauses; n > 0 {
			meanPause = (b.pauseSum - a.pauseSum) / n
		}
		perEntry := 0.0
		if b.entries > 0 {
			perEntry = b.rss / b.entries
		}
		fmt.Printf("server: %.0f GC cycles, GC CPU %.2f%% of %.1f CPU s, %.0f GC pauses (mean %s µs, longest since start %s µs), RSS %.0f MB, Go heap %.0f MB, %.0f read states cached, %.1f B RSS per read state\n",
			b.gcCycles-a.gcCycles, 100*gcFrac, b.cpu-a.cpu, b.gcPauses-a.gcPauses,
			us(time.Duration(meanPause*1e9)), us(time.Duration(b.pauseMax*1e9)),
			b.rss/1e6, b.heap/1e6, b.entries, perEntry)
	}
	return nil
}

func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	for i := 1; i < len(s); i++ { // insertion sort: a few hundred values
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
	return s[len(s)/2]
}

func writeCSV(path string, secs []second, samples []sample) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := csv.NewWriter(f)
	w.Write([]string{"second", "requests", "errors", "p50_us", "p99_us", "p999_us", "max_us",
		"gc_cycles", "gc_cpu_s", "cpu_s", "rss_bytes", "heap_bytes", "server_p999_us", "server_max_us"})
	for i := range secs {
		s := &secs[i]
		row := []string{strconv.Itoa(i), strconv.FormatUint(s.h.Count(), 10), strconv.FormatUint(s.errs.Load(), 10),
			us(s.h.Quantile(0.5)), us(s.h.Quantile(0.99)), us(s.h.Quantile(0.999)), us(s.h.Quantile(1))}
		if i < len(samples) && samples[i].ok {
			p := samples[i]
			row = append(row, ff(p.gcCycles), ff(p.gcCPU), ff(p.cpu), ff(p.rss), ff(p.heap))
		} else {
			row = append(row, "", "", "", "", "")
		}
		if i+1 < len(samples) && samples[i+1].ok && samples[i+1].srvP999 >= 0 {
			p := samples[i+1]
			row = append(row, ff(p.srvP999), ff(p.srvMax))
		} else {
			row = append(row, "", "")
		}
		w.Write(row)
	}
	w.Flush()
	return errors.Join(w.Error(), f.Close())
}

func ff(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }
