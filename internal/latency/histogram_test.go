package latency

import (
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
