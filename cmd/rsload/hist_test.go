package main

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
	var h histogram
	r := rand.New(rand.NewPCG(1, 2))
	var all []time.Duration
	for range 100000 {
		d := time.Duration(r.ExpFloat64() * float64(200*time.Microsecond))
		all = append(all, d)
		h.record(d)
	}
	slices.Sort(all)
	for _, q := range []float64{0.5, 0.99, 0.999, 1} {
		exact := all[min(int(q*float64(len(all))+0.5), len(all))-1]
		got := h.quantile(q)
		if got < exact || float64(got) > float64(exact)*(1+2.0/subN)+1 {
			t.Errorf("quantile(%v) = %v, exact %v", q, got, exact)
		}
	}
	if h.quantile(1) != all[len(all)-1] {
		t.Errorf("max = %v, want %v", h.quantile(1), all[len(all)-1])
	}
}

func TestRecordDoesNotAllocate(t *testing.T) {
	var h histogram
	if n := testing.AllocsPerRun(1000, func() { h.record(123456) }); n != 0 {
		t.Fatalf("record allocates %v times", n)
	}
}
