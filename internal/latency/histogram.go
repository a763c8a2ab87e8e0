// Package latency holds a histogram of durations that records without
// allocating or locking: the server's per-command latency statistics
// (INFO latencystats, commandstats) and the load generator's per-second
// figures are both made of it.
//
// Buckets are log-linear: 2^subBits buckets per power of two of
// nanoseconds, so a quantile is within 1/2^subBits (3%) above the true
// value and never below it. Every power of two from 32 ns up is a bucket
// bound (see Buckets). A Histogram is a fixed array of counters,
// about 15 KiB, updated with atomics by any number of goroutines.
package latency

import (
	"math"
	"math/bits"
	"sync/atomic"
	"time"
)

const (
	subBits = 5
	subN    = 1 << subBits
	nBucket = (64 - subBits + 1) * subN
)

// Histogram counts durations. The zero value is empty and ready to use.
// Record may be called concurrently with anything; a Quantile read during
// Records sees some of them.
type Histogram struct {
	counts [nBucket]atomic.Uint64
	max    atomic.Int64
	n      atomic.Uint64
	sum    atomic.Int64 // nanoseconds
}

func bucketOf(ns int64) int {
	if ns < subN {
		return int(max(ns, 0))
	}
	u := uint64(ns)
	exp := bits.Len64(u) - subBits // >= 1
	return exp*subN + int(u>>uint(exp-1)) - subN
}

// lowOf is the smallest duration in bucket i; the bucket spans up to the
// next one's low.
func lowOf(i int) int64 {
	if i < subN {
		return int64(i)
	}
	exp := i / subN
	m := int64(i%subN + subN)
	return m << uint(exp-1)
}

// Record adds one duration (negative counts as 0).
func (h *Histogram) Record(d time.Duration) {
	ns := max(int64(d), 0)
	h.counts[bucketOf(ns)].Add(1)
	h.n.Add(1)
	h.sum.Add(ns)
	for {
		m := h.max.Load()
		if ns <= m || h.max.CompareAndSwap(m, ns) {
			return
		}
	}
}

// Count is the number of durations recorded.
func (h *Histogram) Count() uint64 { return h.n.Load() }

// Sum is the total of the durations recorded.
func (h *Histogram) Sum() time.Duration { return time.Duration(h.sum.Load()) }

// Max is the largest duration recorded (0 if none).
func (h *Histogram) Max() time.Duration { return time.Duration(h.max.Load()) }

// Merge adds o to h. o must not be recorded into meanwhile.
func (h *Histogram) Merge(o *Histogram) {
	for i := range o.counts {
		if c := o.counts[i].Load(); c != 0 {
			h.counts[i].Add(c)
		}
	}
	h.n.Add(o.n.Load())
	h.sum.Add(o.sum.Load())
	for m := o.max.Load(); ; {
		cur := h.max.Load()
		if m <= cur || h.max.CompareAndSwap(cur, m) {
			break
		}
	}
}

// Reset empties h. Durations recorded while it runs may be kept in part.
func (h *Histogram) Reset() {
	for i := range h.counts {
		h.counts[i].Store(0)
	}
	h.n.Store(0)
	h.sum.Store(0)
	h.max.Store(0)
}

// Buckets calls fn for every non-empty bucket, in increasing order, with
// the bucket's upper bound (exclusive) and the number of durations
// recorded in it. Buckets are contiguous: a bucket holds the durations from
// the previous bucket's bound (empty or not) up to its own, so the sum of
// the counts up to a bound is the number of durations below it, exactly.
// The bounds are 1 ns apart below 32 ns, then SubBuckets per power of two,
// and every power of two of nanoseconds from 32 ns up is a bound: counts
// below 2^k ns (k >= 5) can be read off exactly. The last bucket's bound
// is capped at math.MaxInt64. A walk during Records sees some of them.
func (h *Histogram) Buckets(fn func(high time.Duration, n uint64)) {
	for i := range h.counts {
		c := h.counts[i].Load()
		if c == 0 {
			continue
		}
		high := lowOf(i + 1)
		if high <= 0 { // past 2^63 ns
			high = math.MaxInt64
		}
		fn(time.Duration(high), c)
	}
}

// SubBuckets is the number of buckets per power of two of nanoseconds
// (above 32 ns): a bucket is at most 1/SubBuckets of its lower bound wide.
const SubBuckets = subN

// Quantile returns the upper edge of the bucket holding the q-quantile (q
// in [0, 1]), so it never under-reports, capped at the maximum recorded;
// Quantile(1) is the maximum. It is 0 for an empty histogram.
func (h *Histogram) Quantile(q float64) time.Duration {
	n := h.n.Load()
	if n == 0 {
		return 0
	}
	rank := uint64(q*float64(n) + 0.5)
	rank = min(max(rank, 1), n)
	var seen uint64
	for i := range h.counts {
		seen += h.counts[i].Load()
		if seen >= rank {
			return time.Duration(min(lowOf(i+1)-1, h.max.Load()))
		}
	}
	return time.Duration(h.max.Load())
}
