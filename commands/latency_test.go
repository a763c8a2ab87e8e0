package commands

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// record files durations under a command as if it had run them.
func record(d *Dispatcher, name string, ds ...time.Duration) {
	for _, el := range ds {
		d.record(d.byKey[name], false, false, el)
	}
}

// resp builds the expected reply: "*n"/"%n" for a map of n pairs (by
// protocol), bulk strings and integers.
type resp struct {
	proto int
	b     strings.Builder
}

func (r *resp) m(n int) *resp {
	if r.proto == RESP3 {
		fmt.Fprintf(&r.b, "%%%d\r\n", n)
	} else {
		fmt.Fprintf(&r.b, "*%d\r\n", 2*n)
	}
	return r
}

func (r *resp) bulk(s string) *resp { fmt.Fprintf(&r.b, "$%d\r\n%s\r\n", len(s), s); return r }

func (r *resp) ints(vs ...int64) *resp {
	for _, v := range vs {
		fmt.Fprintf(&r.b, ":%d\r\n", v)
	}
	return r
}

// histogram appends one command's entry: name, calls, then (bound,
// cumulative count) pairs.
func (r *resp) histogram(name string, calls int64, pairs ...int64) *resp {
	r.bulk(name).m(2).bulk("calls").ints(calls).bulk("histogram_usec").m(len(pairs) / 2)
	return r.ints(pairs...)
}

var histDurations = []time.Duration{
	500, 1000, 1024, 3 * time.Microsecond, 40 * time.Microsecond, 2 * time.Second,
}

func TestLatencyHistogram(t *testing.T) {
	for _, proto := range []int{RESP2, RESP3} {
		t.Run(fmt.Sprintf("RESP%d", proto), func(t *testing.T) {
			d, _ := newTestDispatcher(t, nil)
			s := NewSession(1, "127.0.0.1:5000", "b", time.Time{})
			s.proto.Store(int32(proto))
			expect := func() *resp { return &resp{proto: proto} }
			check := func(want *resp, args ...string) {
				t.Helper()
				if got := run(d, s, args...); got != want.b.String() {
					t.Errorf("%q:\ngot  %q\nwant %q", args, got, want.b.String())
				}
			}

			// No calls yet: an empty map, whether named or not.
			check(expect().m(0), "LATENCY", "HISTOGRAM", "rsincr")
			check(expect().m(0), "LATENCY", "HISTOGRAM", "FINE", "rsincr", "rsget")

			record(d, "rsincr", histDurations...)
			record(d, "rsget", 20*time.Microsecond)
			// Redis's buckets: below 2^k ns for k = 10..30, keyed by
			// (2^k-1)/1000 µs, cumulative, empty ones left out; 2 s is
			// counted in the last (Redis tracks up to 1 s).
			rsincr := func(r *resp) *resp {
				return r.histogram("rsincr", 6, 1, 2, 2, 3, 4, 4, 65, 5, 1073741, 6)
			}
			check(rsincr(expect().m(1)), "LATENCY", "HISTOGRAM", "rsincr")
			// Unknown names, subcommands and repeats are left out; the
			// order is the arguments'; names are case-insensitive.
			want := expect().m(2).histogram("rsget", 1, 32, 1)
			check(rsincr(want), "latency", "histogram", "RSGET", "nosuch", "config|get", "RsIncr", "rsget", "rsincr")
			check(expect().m(0), "LATENCY", "HISTOGRAM", "nosuch")

			// FINE: the server's own buckets (within 3% or 1 µs), the same
			// shape, bounds not clamped at 1 s.
			check(expect().m(1).histogram("rsincr", 6, 0, 1, 1, 3, 3, 4, 40, 5, 2013265, 6),
				"LATENCY", "HISTOGRAM", "fine", "rsincr")

			// Without names: every command that ran, in table order. The
			// LATENCY calls above ran too.
			got := run(d, s, "LATENCY", "HISTOGRAM")
			head := rsincr(expect().m(3)).histogram("rsget", 1, 32, 1).b.String()
			if !strings.HasPrefix(got, head+"$7\r\nlatency\r\n") {
				t.Errorf("LATENCY HISTOGRAM = %q, want rsincr, rsget, latency", got)
			}
			if n, err := respValues([]byte(got)); n != 1 || err != nil {
				t.Errorf("LATENCY HISTOGRAM is %d RESP values (%v)", n, err)
			}

			// Reading changes nothing; CONFIG RESETSTAT clears.
			check(rsincr(expect().m(1)), "LATENCY", "HISTOGRAM", "rsincr")
			run(d, s, "CONFIG", "RESETSTAT")
			check(expect().m(0), "LATENCY", "HISTOGRAM", "rsincr", "rsget")
		})
	}
}

// TestLatencyHistogramCountsDispatchedCalls: the histogram is the one the
// dispatcher records into (calls that ran, not those refused).
func TestLatencyHistogramCountsDispatchedCalls(t *testing.T) {
	d, _ := newTestDispatcher(t, nil)
	// Not an admin command: it changes nothing, like INFO latencystats.
	s := NewSession(1, "10.1.2.3:5000", "b", time.Time{})
	for range 5 {
		run(d, s, "RSINCR", "1", "2")
	}
	run(d, s, "RSINCR", "1", "x") // ran, with an error reply: counted
	run(d, s, "RSINCR", "1")      // refused (arity): not counted
	for _, fine := range []bool{false, true} {
		args := []string{"LATENCY", "HISTOGRAM", "rsincr"}
		if fine {
			args = []string{"LATENCY", "HISTOGRAM", "FINE", "rsincr"}
		}
		got := run(d, s, args...)
		const head = "*2\r\n$6\r\nrsincr\r\n*4\r\n$5\r\ncalls\r\n:6\r\n$14\r\nhistogram_usec\r\n*"
		if !strings.HasPrefix(got, head) || !strings.HasSuffix(got, "\r\n:6\r\n") {
			t.Errorf("%q = %q, want 6 calls, the last bucket holding all 6", args, got)
		}
	}
}

func TestCommandCDF(t *testing.T) {
	d, _ := newTestDispatcher(t, nil)
	h := &d.cmdStats[0].latency
	for i := range 10000 {
		h.Record(time.Duration(i) * 997) // 0 to ~10 ms
	}
	for _, fine := range []bool{false, true} {
		calls, pts := commandCDF(h, fine)
		if calls != 10000 || pts[len(pts)-1].count != calls {
			t.Fatalf("fine=%v: calls %d, last count %d", fine, calls, pts[len(pts)-1].count)
		}
		for i, p := range pts {
			// Each count is the calls of at most about p.usec µs: all
			// of those below p.usec µs, none above p.usec+1 µs.
			var below, atMost uint64
			for j := range 10000 {
				ns := int64(j) * 997
				if ns < p.usec*1000 {
					below++
				}
				if ns < (p.usec+1)*1000 {
					atMost++
				}
			}
			if p.count < below || p.count > atMost {
				t.Errorf("fine=%v: %d µs: %d calls, want %d to %d", fine, p.usec, p.count, below, atMost)
			}
			if i > 0 && (p.usec <= pts[i-1].usec || p.count <= pts[i-1].count) {
				t.Errorf("fine=%v: point %d %+v after %+v", fine, i, p, pts[i-1])
			}
		}
		if !fine && len(pts) != 15 { // 1, 2, 4, ... 16777 µs
			t.Errorf("%d power-of-two buckets, want 15: %+v", len(pts), pts)
		}
		if fine && len(pts) < 32*3 {
			t.Errorf("only %d fine buckets", len(pts))
		}
	}
}
