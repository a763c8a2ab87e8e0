package latency

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

func TestBucketsAreMonotonicAndContiguous(t *testing.T) {
	for i := 1; i < nBucket-subN; i++ {
		if lowOf(i) <= lowOf(i-1) {
			t.Fatalf("lowOf(%d)=%d <= lowOf(%d)=%d", i, lowOf(i), i-1, lowOf(i-1))
		}
		if got := bucketOf(lowOf(i)); got != i {
			t.Fatalf("bucketOf(lowOf(%d)=%d) = %d", i, lowOf(i), got)
		}
		if got := bucketOf(lowOf(i) - 1); got != i-1 {
			t.Fatalf("bucketOf(lowOf(%d)-1) = %d, want %d", i, got, i-1)
		}
	}
}

func TestQuantileWithinBucketError(t *testing.T) {
	var h Histogram
	r := rand.New(rand.NewPCG(1, 2))
	var all []time.Duration
	for range 100000 {
		d := time.Duration(r.ExpFloat64() * float64(200*time.Microsecond))
		all = append(all, d)
		h.Record(d)
	}
	slices.Sort(all)
	for _, q := range []float64{0.5, 0.99, 0.999, 1} {
		exact := all[min(int(q*float64(len(all))+0.5), len(all))-1]
		got := h.Quantile(q)
		if got < exact || float64(got) > float64(exact)*(1+2.0/subN)+1 {
			t.Errorf("quantile(%v) = %v, exact %v", q, got, exact)
		}
	}
	if h.Quantile(1) != all[len(all)-1] {
		t.Errorf("max = %v, want %v", h.Quantile(1), all[len(all)-1])
	}
}

func TestRecordDoesNotAllocate(t *testing.T) {
	var h Histogram
	if n := testing.AllocsPerRun(1000, func() { h.Record(123456) }); n != 0 {
		t.Fatalf("record allocates %v times", n)
	}
}

func TestSumCountMergeReset(t *testing.T) {
	var a, b Histogram
	a.Record(time.Millisecond)
	a.Record(-time.Second) // counts as 0
	b.Record(3 * time.Millisecond)
	a.Merge(&b)
	if a.Count() != 3 || a.Sum() != 4*time.Millisecond || a.Max() != 3*time.Millisecond {
		t.Fatalf("after merge: count %d sum %v max %v, want 3, 4ms, 3ms", a.Count(), a.Sum(), a.Max())
	}
	if got := a.Quantile(0); got != 0 {
		t.Fatalf("Quantile(0) = %v, want 0", got)
	}
	a.Reset()
	if a.Count() != 0 || a.Sum() != 0 || a.Max() != 0 || a.Quantile(0.5) != 0 {
		t.Fatalf("after reset: count %d sum %v max %v p50 %v, want zeros", a.Count(), a.Sum(), a.Max(), a.Quantile(0.5))
	}
}

func TestBucketsArePowerOfTwoAligned(t *testing.T) {
	// Every power of two from 32 ns up is a bucket bound.
	for k := subBits; k < 63; k++ {
		p := int64(1) << k
		if bucketOf(p) == bucketOf(p-1) {
			t.Fatalf("2^%d ns shares a bucket with 2^%d-1", k, k)
		}
	}
}

func TestBucketsWalk(t *testing.T) {
	var h Histogram
	h.Buckets(func(time.Duration, uint64) { t.Fatal("bucket in an empty histogram") })
	for _, d := range []time.Duration{0, 5, 5, 1023, 1024, 1024, 2047, 2048, time.Millisecond, 1<<63 - 1} {
		h.Record(d)
	}
	type bucket struct {
		high time.Duration
		n    uint64
	}
	var got []bucket
	var total uint64
	h.Buckets(func(high time.Duration, n uint64) {
		if len(got) > 0 && high <= got[len(got)-1].high {
			t.Fatalf("bound %v after %v", high, got[len(got)-1].high)
		}
		got = append(got, bucket{high, n})
		total += n
	})
	if total != h.Count() {
		t.Fatalf("buckets hold %d, Count %d", total, h.Count())
	}
	// Counts below a power of two are exact.
	below := func(lim time.Duration) (n uint64) {
		for _, b := range got {
			if b.high <= lim {
				n += b.n
			}
		}
		return n
	}
	for _, c := range []struct {
		lim  time.Duration
		want uint64
	}{{1, 1}, {1024, 4}, {2048, 7}, {4096, 8}, {1 << 20, 9}, {1 << 62, 9}} {
		if n := below(c.lim); n != c.want {
			t.Errorf("below %v: %d, want %d (buckets %v)", c.lim, n, c.want, got)
		}
	}
	if last := got[len(got)-1]; last.high != math.MaxInt64 || last.n != 1 {
		t.Errorf("last bucket %+v, want bound MaxInt64 holding 1", last)
	}
	// Bucket widths: 1 ns below 32 ns, then at most 1/SubBuckets.
	h.Reset()
	for d := time.Duration(1); d < time.Second; d = d*9/8 + 1 {
		h.Record(d)
	}
	h.Buckets(func(high time.Duration, _ uint64) {
		low := lowOf(bucketOf(int64(high) - 1))
		if w := int64(high) - low; w > max(1, low/SubBuckets) {
			t.Errorf("bucket [%d, %v) is %d ns wide", low, high, w)
		}
	})
}

func TestPeak(t *testing.T) {
	var p Peak
	if d := p.Take(); d != 0 {
		t.Fatalf("empty: %v", d)
	}
	done := make(chan struct{})
	for g := range 4 {
		go func() {
			defer func() { done <- struct{}{} }()
			for i := range 1000 {
				p.Record(time.Duration(g*1000 + i))
			}
		}()
	}
	for range 4 {
		<-done
	}
	if d := p.Take(); d != 3999 {
		t.Fatalf("peak of 0..3999: %v", d)
	}
	if d := p.Take(); d != 0 {
		t.Fatalf("a new window is empty, got %v", d)
	}
}
