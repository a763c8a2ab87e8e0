package main

import (
	"math/bits"
	"sync/atomic"
	"time"
)

// A histogram of durations with log-linear buckets: 2^subBits buckets per
// power of two, so a percentile is within 1/2^subBits (3%) of the true
// value. It is a fixed array of counters, filled with atomics by many
// goroutines and read once they are done: recording never allocates, so
// the load generator's own GC cannot show up in what it measures.
const (
	subBits = 5
	subN    = 1 << subBits
	nBucket = (64 - subBits + 1) * subN
)

type histogram struct {
	counts [nBucket]atomic.Uint32
	max    atomic.Int64
	n      atomic.Uint64
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

func (h *histogram) record(d time.Duration) {
	ns := int64(d)
	h.counts[bucketOf(ns)].Add(1)
	h.n.Add(1)
	for {
		m := h.max.Load()
		if ns <= m || h.max.CompareAndSwap(m, ns) {
			return
		}
	}
}

// merge adds o to h. Neither may be recorded into meanwhile.
func (h *histogram) merge(o *histogram) {
	for i := range o.counts {
		if c := o.counts[i].Load(); c != 0 {
			h.counts[i].Add(c)
		}
	}
	h.n.Add(o.n.Load())
	if m := o.max.Load(); m > h.max.Load() {
		h.max.Store(m)
	}
}

// quantile returns the upper edge of the bucket holding the q-quantile
// (so it never under-reports), capped at the maximum seen.
func (h *histogram) quantile(q float64) time.Duration {
	n := h.n.Load()
	if n == 0 {
		return 0
	}
	rank := uint64(q*float64(n) + 0.5)
	rank = min(max(rank, 1), n)
	var seen uint64
	for i := range h.counts {
		seen += uint64(h.counts[i].Load())
		if seen >= rank {
			return time.Duration(min(lowOf(i+1)-1, h.max.Load()))
		}
	}
	return time.Duration(h.max.Load())
}
