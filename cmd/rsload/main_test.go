package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/readstates/readstates/cache"
	"github.com/readstates/readstates/commands"
	"github.com/tidwall/redcon"
)

func TestRequestsAreWellFormed(t *testing.T) {
	for _, redis := range []bool{false, true} {
		c := config{redis: redis, channels: 100}
		var b []byte
		b = request(b, c, opIncr, 1, 2, 0, nil)
		b = request(b, c, opReset, 1, 2, 3, nil)
		b = request(b, c, opGet, 1, 2, 0, nil)
		b = request(b, c, opMGet, 1, 0, 0, []int64{4, 5})
		want := [][]string{
			{"RSINCR", "1", "2", "1"}, {"RSRESET", "1", "2", "3"}, {"RSGET", "1", "2"}, {"RSMGET", "1", "4", "5"},
		}
		if redis {
			want = [][]string{
				{"HINCRBY", "rs:1", "2", "1"}, {"HSET", "rs:1", "2", "0", "m:2", "3"}, {"HMGET", "rs:1", "2", "m:2"}, {"HMGET", "rs:1", "4", "5"},
			}
		}
		rd := redcon.NewReader(bytes.NewReader(b))
		for i, w := range want {
			cmd, err := rd.ReadCommand()
			if err != nil {
				t.Fatalf("redis=%v: command %d: %v", redis, i, err)
			}
			if len(cmd.Args) != len(w) {
				t.Fatalf("redis=%v: command %d = %q, want %q", redis, i, cmd.Args, w)
			}
			for j := range w {
				if string(cmd.Args[j]) != w[j] {
					t.Fatalf("redis=%v: command %d = %q, want %q", redis, i, cmd.Args, w)
				}
			}
		}
	}
}

func TestParseInfo(t *testing.T) {
	text := "# Memory\r\nused_memory_rss:1000\r\nprocess_cpu_seconds:1.5\r\n" +
		"# Stats\r\ngo_gc_cycles:7\r\ncached_read_states:12\r\n"
	s := parseInfo(text)
	if !s.ok || s.rss != 1000 || s.cpu != 1.5 || s.gcCycles != 7 || s.entries != 12 || s.srvP999 != -1 || s.srvMax != -1 {
		t.Fatalf("parseInfo = %+v, want rss 1000, cpu 1.5, 7 GC cycles, 12 entries, no server latency (from LATENCY HISTOGRAM)", s)
	}
	if s := parseInfo("used_cpu_sys:1\r\nused_cpu_user:2\r\n"); s.cpu != 3 {
		t.Fatalf("parseInfo(redis) = %+v, want cpu 3", s)
	}
}

// histReply is a LATENCY HISTOGRAM reply in RESP2 (maps as flat arrays)
// or RESP3: cmds alternates names and entries, an entry alternates
// calls and (bound, cumulative count) pairs.
func histReply(resp3 bool, cmds ...any) string {
	var b strings.Builder
	m := func(n int) {
		if resp3 {
			fmt.Fprintf(&b, "%%%d\r\n", n)
		} else {
			fmt.Fprintf(&b, "*%d\r\n", 2*n)
		}
	}
	m(len(cmds) / 2)
	for i := 0; i < len(cmds); i += 2 {
		e := cmds[i+1].([]int64)
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(cmds[i].(string)), cmds[i])
		m(2)
		fmt.Fprintf(&b, "$5\r\ncalls\r\n:%d\r\n$14\r\nhistogram_usec\r\n", e[0])
		m(len(e[1:]) / 2)
		for _, v := range e[1:] {
			fmt.Fprintf(&b, ":%d\r\n", v)
		}
	}
	return b.String()
}

func parseHistograms(t *testing.T, reply string) (map[string]cdf, error) {
	t.Helper()
	r := bufio.NewReader(strings.NewReader(reply))
	v, err := readValue(r)
	if err != nil {
		t.Fatalf("readValue(%q): %v", reply, err)
	}
	if r.Buffered() != 0 {
		t.Fatalf("readValue(%q) left %d bytes", reply, r.Buffered())
	}
	return histograms(v)
}

func TestReadHistograms(t *testing.T) {
	want := map[string]cdf{
		"rsincr": {calls: 6, bounds: []int64{1, 2, 4, 65, 1073741}, counts: []uint64{2, 3, 4, 5, 6}},
		"rsget":  {calls: 1, bounds: []int64{32}, counts: []uint64{1}},
	}
	for _, resp3 := range []bool{false, true} {
		reply := histReply(resp3, "rsincr", []int64{6, 1, 2, 2, 3, 4, 4, 65, 5, 1073741, 6}, "rsget", []int64{1, 32, 1})
		got, err := parseHistograms(t, reply)
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("resp3=%v: histograms = %+v, %v; want %+v", resp3, got, err, want)
		}
		if got, err := parseHistograms(t, histReply(resp3)); err != nil || len(got) != 0 {
			t.Errorf("resp3=%v: empty reply: %+v, %v", resp3, got, err)
		}
	}
	for _, bad := range []string{
		"-ERR unknown command 'LATENCY', with args beginning with: 'HISTOGRAM' \r\n",
		":1\r\n",
		"*1\r\n$6\r\nrsincr\r\n",
		histReply(false, "rsincr", []int64{3, 4, 2, 2, 3}), // bounds not increasing
		histReply(false, "rsincr", []int64{3, 2, 2, 4, 1}), // counts not cumulative
	} {
		if got, err := parseHistograms(t, bad); err == nil {
			t.Errorf("histograms(%q) = %+v, want an error", bad, got)
		}
	}
}

func TestServerLatency(t *testing.T) {
	h := func(calls uint64, pairs ...int64) cdf {
		c := cdf{calls: calls}
		for i := 0; i < len(pairs); i += 2 {
			c.bounds = append(c.bounds, pairs[i])
			c.counts = append(c.counts, uint64(pairs[i+1]))
		}
		return c
	}
	prev := map[string]cdf{"rsincr": h(100, 10, 90, 20, 99, 40, 100)}
	// In between: 900 calls of at most 10 µs, 99 up to 20 µs, 1 up to 80
	// µs; and rsget's first 10 calls, up to 5 µs.
	cur := map[string]cdf{
		"rsincr": h(1100, 10, 990, 20, 1098, 40, 1099, 80, 1100),
		"rsget":  h(10, 5, 10),
	}
	if got := window(prev["rsincr"], cur["rsincr"]); !reflect.DeepEqual(got, []uint64{900, 999, 999, 1000}) {
		t.Errorf("window = %v, want [900 999 999 1000]", got)
	}
	w := window(prev["rsincr"], cur["rsincr"])
	for _, c := range []struct {
		q    float64
		want int64
	}{{0, 10}, {0.5, 10}, {0.9, 10}, {0.99, 20}, {0.999, 20}, {1, 80}} {
		if got, ok := quantile(cur["rsincr"].bounds, w, c.q); !ok || got != c.want {
			t.Errorf("quantile(%v) = %v, %v; want %v", c.q, got, ok, c.want)
		}
	}
	if p, m := serverLatency(prev, cur, 0.999); p != 20 || m != 80 {
		t.Errorf("serverLatency = p99.9 %v, max %v; want 20, 80 (rsincr's, the slowest)", p, m)
	}
	// A second without calls is not reported; nor is one without a
	// reading before it.
	if p, m := serverLatency(cur, cur, 0.999); p != -1 || m != -1 {
		t.Errorf("serverLatency without calls = %v, %v; want -1, -1", p, m)
	}
	if p, m := serverLatency(nil, cur, 0.999); p != -1 || m != -1 {
		t.Errorf("serverLatency without a previous reading = %v, %v; want -1, -1", p, m)
	}
	// Statistics reset in between (CONFIG RESETSTAT by someone else): the
	// calls since the reset.
	reset := map[string]cdf{"rsincr": h(3, 10, 2, 160, 3)}
	if p, m := serverLatency(cur, reset, 0.999); p != 160 || m != 160 {
		t.Errorf("serverLatency after a reset = %v, %v; want 160, 160", p, m)
	}
	// Redis's power-of-two buckets work the same way.
	redisPrev := map[string]cdf{"hincrby": h(1000, 1, 600, 2, 990, 4, 1000)}
	redisCur := map[string]cdf{"hincrby": h(3000, 1, 1600, 2, 2900, 4, 2998, 33, 3000)}
	// In between: 1000 up to 1 µs, 910 up to 2, 88 up to 4, 2 up to 33.
	if p, m := serverLatency(redisPrev, redisCur, 0.999); p != 4 || m != 33 {
		t.Errorf("serverLatency (Redis) = %v, %v; want 4, 33", p, m)
	}
}

// TestPollOnlyReads runs poll against a fake server: every second it sends
// INFO and LATENCY HISTOGRAM, nothing else (no CONFIG SET, no CONFIG
// RESETSTAT), and each sample's server latency is the difference of two
// readings.
func TestPollOnlyReads(t *testing.T) {
	readings := []string{
		histReply(false, "rsincr", []int64{100, 10, 90, 20, 99, 40, 100}),
		histReply(false, "rsincr", []int64{1100, 10, 990, 20, 1098, 40, 1099, 80, 1100}, "rsget", []int64{10, 5, 10}),
		histReply(false, "rsincr", []int64{1100, 10, 990, 20, 1098, 40, 1099, 80, 1100}, "rsget", []int64{20, 5, 15, 300, 20}),
	}
	want := [][2]float64{{-1, -1}, {20, 80}, {300, 300}}
	for _, redis := range []bool{false, true} {
		got, sent := pollFake(t, redis, readings)
		for i, w := range want {
			if got[i].rss != 1000 || got[i].srvP999 != w[0] || got[i].srvMax != w[1] {
				t.Errorf("redis=%v: sample %d = %+v, want rss 1000, server p99.9 %v, max %v", redis, i, got[i], w[0], w[1])
			}
		}
		hist := "LATENCY HISTOGRAM FINE rsincr rsreset rsget rsmget"
		if redis {
			hist = "LATENCY HISTOGRAM hincrby hset hmget"
		}
		wantSent := strings.Repeat("INFO default|"+hist+"|", len(readings))
		if sent != wantSent {
			t.Errorf("redis=%v: poll sent %q, want %q", redis, sent, wantSent)
		}
	}
	// A server without LATENCY HISTOGRAM: INFO's figures, no server latency.
	old := "-ERR unknown command 'LATENCY', with args beginning with: 'HISTOGRAM' \r\n"
	got, _ := pollFake(t, false, []string{old, old})
	for i, s := range got {
		if s.rss != 1000 || s.srvP999 != -1 || s.srvMax != -1 {
			t.Errorf("old server: sample %d = %+v", i, s)
		}
	}
}

// pollFake runs poll against a server that answers INFO with a fixed text
// and LATENCY with the next reading, and returns the samples and the
// commands it received ("|"-separated).
func pollFake(t *testing.T, redis bool, readings []string) ([]sample, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	sent := make(chan string, 1)
	go func() {
		var log strings.Builder
		defer func() { sent <- log.String() }()
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		r := bufio.NewReader(conn)
		next := 0
		for {
			v, err := readValue(r)
			if err != nil {
				return
			}
			var args []string
			for _, a := range v.([]any) {
				args = append(args, a.(string))
			}
			log.WriteString(strings.Join(args, " ") + "|")
			switch strings.ToUpper(args[0]) {
			case "INFO":
				info := "# Memory\r\nused_memory_rss:1000\r\n"
				fmt.Fprintf(conn, "$%d\r\n%s\r\n", len(info), info)
			case "LATENCY":
				conn.Write([]byte(readings[next]))
				next++
			default:
				conn.Write([]byte("-ERR unexpected\r\n"))
			}
		}
	}()
	samples := make([]sample, len(readings))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// A start an hour ago: every sample is due at once.
	poll(ctx, config{addr: ln.Addr().String(), redis: redis}, time.Now().Add(-time.Hour), samples)
	cancel()
	return samples, <-sent
}

// TestReadsTheServersReply: rsload reads what the server's LATENCY
// HISTOGRAM writes (commands.Dispatcher), in RESP2 and RESP3.
func TestReadsTheServersReply(t *testing.T) {
	d, err := commands.New(commands.Config{Backend: nopBackend{}})
	if err != nil {
		t.Fatal(err)
	}
	for _, proto := range []string{"2", "3"} {
		s := commands.NewSession(1, "127.0.0.1:1", "127.0.0.1:2", time.Now())
		w := &respWriter{}
		do := func(args ...string) string {
			w.b.Reset()
			var a [][]byte
			for _, x := range args {
				a = append(a, []byte(x))
			}
			d.Dispatch(context.Background(), w, s, a)
			return w.b.String()
		}
		do("HELLO", proto)
		read := func() map[string]cdf {
			t.Helper()
			hs, err := parseHistograms(t, do(histogramRequest(config{})...))
			if err != nil {
				t.Fatal(err)
			}
			return hs
		}
		before := read()
		for range 7 {
			do("RSINCR", "1", "2")
		}
		for range 3 {
			do("RSGET", "1", "2")
		}
		after := read()
		for name, n := range map[string]uint64{"rsincr": 7, "rsget": 3} {
			h := after[name]
			if got := h.calls - before[name].calls; got != n {
				t.Errorf("RESP%s: %s: %d calls in between, want %d", proto, name, got, n)
			}
			if len(h.counts) == 0 || h.counts[len(h.counts)-1] != h.calls {
				t.Errorf("RESP%s: %s: %+v: the last bucket must hold every call", proto, name, h)
			}
		}
		if _, ok := after["rsreset"]; ok {
			t.Errorf("RESP%s: rsreset never ran but has a histogram", proto)
		}
		if p, m := serverLatency(before, after, 0.999); p < 0 || m < p {
			t.Errorf("RESP%s: serverLatency = p99.9 %v, max %v", proto, p, m)
		}
	}
}

// nopBackend is a ReadStates in which every read state is zero.
type nopBackend struct{}

func (nopBackend) Incr(context.Context, cache.Key, int64) (int32, error) { return 1, nil }
func (nopBackend) Reset(context.Context, cache.Key, int64, bool) (int32, error) {
	return 0, nil
}
func (nopBackend) Get(context.Context, cache.Key) (cache.State, error) { return cache.State{}, nil }
func (nopBackend) GetMany(context.Context, int64, []int64, []cache.State) error {
	return nil
}
func (b nopBackend) Atomically(_ context.Context, _ []cache.Key, fn func(commands.ReadStates)) error {
	fn(b)
	return nil
}

// respWriter is a commands.Writer that encodes RESP2 into a buffer.
type respWriter struct{ b bytes.Buffer }

func (w *respWriter) WriteError(msg string)  { fmt.Fprintf(&w.b, "-%s\r\n", msg) }
func (w *respWriter) WriteString(str string) { fmt.Fprintf(&w.b, "+%s\r\n", str) }
func (w *respWriter) WriteBulk(bulk []byte)  { w.WriteBulkString(string(bulk)) }
func (w *respWriter) WriteBulkString(bulk string) {
	fmt.Fprintf(&w.b, "$%d\r\n%s\r\n", len(bulk), bulk)
}
func (w *respWriter) WriteInt64(num int64) { fmt.Fprintf(&w.b, ":%d\r\n", num) }
func (w *respWriter) WriteArray(count int) { fmt.Fprintf(&w.b, "*%d\r\n", count) }
func (w *respWriter) WriteNull()           { w.b.WriteString("$-1\r\n") }
func (w *respWriter) WriteRaw(data []byte) { w.b.Write(data) }

func TestSkipReply(t *testing.T) {
	r := bufio.NewReader(bytes.NewReader([]byte("*2\r\n:1\r\n$-1\r\n-ERR x\r\n%1\r\n+a\r\n:2\r\n")))
	for i, wantErr := range []bool{false, true, false} {
		err := skipReply(r)
		if (err != nil) != wantErr {
			t.Fatalf("reply %d: err %v, want error %v", i, err, wantErr)
		}
	}
}
