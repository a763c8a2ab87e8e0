package tests

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// TestLatencyHistogram: after some RSINCRs, LATENCY HISTOGRAM rsincr
// reports them, through go-redis in RESP2 and RESP3 and through
// redis-cli, and reading it changes nothing (no reset).
func TestLatencyHistogram(t *testing.T) {
	sp := startServer(t)
	ctx := testCtx(t)
	const n = 25
	calls := int64(0)
	for _, proto := range protocols {
		c := sp.goRedis(t, proto)
		for i := range n {
			if err := c.Do(ctx, "RSINCR", 42, i).Err(); err != nil {
				t.Fatal(err)
			}
		}
		calls += n
		for _, args := range [][]any{
			{"LATENCY", "HISTOGRAM", "rsincr"},
			{"LATENCY", "HISTOGRAM", "RSINCR", "nosuch", "rsreset"},
			{"LATENCY", "HISTOGRAM", "FINE", "rsincr"},
		} {
			v, err := c.Do(ctx, args...).Result()
			if err != nil {
				t.Fatalf("RESP%d %v: %v", proto, args, err)
			}
			h, err := histogramOf(v, "rsincr")
			if err != nil {
				t.Fatalf("RESP%d %v: %v", proto, args, err)
			}
			if h.calls != calls || len(h.cum) == 0 || h.cum[len(h.cum)-1] != calls {
				t.Errorf("RESP%d %v: %+v, want %d calls, all in the last bucket", proto, args, h, calls)
			}
		}
		// A command that never ran has no histogram.
		v, err := c.Do(ctx, "LATENCY", "HISTOGRAM", "rsreset").Result()
		if m, ok := v.(map[any]any); err != nil || (ok && len(m) != 0) {
			t.Errorf("RESP%d LATENCY HISTOGRAM rsreset = %#v, %v; want empty", proto, v, err)
		}
		if a, ok := v.([]any); ok && len(a) != 0 {
			t.Errorf("RESP%d LATENCY HISTOGRAM rsreset = %#v; want empty", proto, v)
		}
	}

	requireTool(t, "redis-cli")
	out := redisCLI(t, sp, "", "--no-raw", "LATENCY", "HISTOGRAM", "rsincr")
	head := "1) \"rsincr\"\n2) 1) \"calls\"\n   2) (integer) " + strconv.FormatInt(calls, 10) + "\n   3) \"histogram_usec\"\n   4) "
	// Then (bound, count) pairs, numbered (right-aligned past 9 items).
	pair := regexp.MustCompile(`^ *\d+\) \(integer\) \d+$`)
	rest, ok := strings.CutPrefix(out, head)
	lines := strings.Split(strings.TrimSuffix(rest, "\n"), "\n")
	if !ok || len(lines)%2 != 0 {
		t.Fatalf("redis-cli LATENCY HISTOGRAM rsincr:\n%s\nwant it to start with\n%s\nthen bucket pairs", out, head)
	}
	for i, l := range lines {
		if i > 0 {
			l = strings.TrimPrefix(l, "      ")
		}
		if !pair.MatchString(l) {
			t.Errorf("redis-cli LATENCY HISTOGRAM rsincr: line %q is not a bucket:\n%s", l, out)
		}
	}
	if !strings.HasSuffix(out, ") (integer) "+strconv.FormatInt(calls, 10)+"\n") {
		t.Errorf("redis-cli LATENCY HISTOGRAM rsincr: the last bucket must hold every call:\n%s", out)
	}
	// Redis's other subcommands are refused as unknown (not DOCTOR or
	// GRAPH: redis-cli prints their replies raw).
	if out := redisCLI(t, sp, "", "--no-raw", "LATENCY", "RESET"); out != "(error) ERR unknown subcommand 'RESET'. Try LATENCY HELP.\n" {
		t.Errorf("redis-cli LATENCY RESET = %q", out)
	}
}

type histogram struct {
	calls  int64
	bounds []int64 // µs
	cum    []int64
}

// histogramOf finds one command's entry in a LATENCY HISTOGRAM reply as
// go-redis returns it: flat arrays in RESP2, maps in RESP3.
func histogramOf(v any, name string) (histogram, error) {
	var h histogram
	entry, ok := lookup(v, name)
	if !ok {
		return h, fmt.Errorf("no %q in %#v", name, v)
	}
	calls, _ := lookup(entry, "calls")
	if h.calls, ok = calls.(int64); !ok {
		return h, fmt.Errorf("no integer calls in %#v", entry)
	}
	buckets, ok := lookup(entry, "histogram_usec")
	if !ok {
		return h, fmt.Errorf("no histogram_usec in %#v", entry)
	}
	var pairs []any
	switch b := buckets.(type) {
	case []any:
		pairs = b
	case map[any]any:
		for k, c := range b {
			pairs = append(pairs, k, c)
		}
	default:
		return h, fmt.Errorf("histogram_usec is %T", buckets)
	}
	if len(pairs)%2 != 0 {
		return h, fmt.Errorf("histogram_usec has %d elements", len(pairs))
	}
	type point struct{ bound, cum int64 }
	var pts []point
	for i := 0; i < len(pairs); i += 2 {
		b, ok1 := pairs[i].(int64)
		c, ok2 := pairs[i+1].(int64)
		if !ok1 || !ok2 {
			return h, fmt.Errorf("bucket %#v: %#v", pairs[i], pairs[i+1])
		}
		pts = append(pts, point{b, c})
	}
	// A map's order is lost in RESP3: sort by bound.
	for i := 1; i < len(pts); i++ {
		for j := i; j > 0 && pts[j].bound < pts[j-1].bound; j-- {
			pts[j], pts[j-1] = pts[j-1], pts[j]
		}
	}
	for i, p := range pts {
		if i > 0 && p.cum <= pts[i-1].cum {
			return h, fmt.Errorf("counts not cumulative: %v", pts)
		}
		h.bounds = append(h.bounds, p.bound)
		h.cum = append(h.cum, p.cum)
	}
	return h, nil
}

// lookup finds key in a map reply: a map in RESP3, alternating keys and
// values in RESP2.
func lookup(v any, key string) (any, bool) {
	switch m := v.(type) {
	case map[any]any:
		x, ok := m[key]
		return x, ok
	case map[string]any:
		x, ok := m[key]
		return x, ok
	case []any:
		for i := 0; i+1 < len(m); i += 2 {
			if k, _ := m[i].(string); k == key {
				return m[i+1], true
			}
		}
	}
	return nil, false
}
