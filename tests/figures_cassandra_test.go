//go:build cassandra

package tests

import (
	"bytes"
	"fmt"
	"slices"
	"sync"
	"time"
)

// Measuring helpers of the Cassandra fault and load tests (their figures
// go into RELIABILITY.md); the rest are in figures_test.go.

// rssSampler samples a process's RSS every interval, and keeps the largest
// sample overall and under each label (the test's phase at the time).
type rssSampler struct {
	mu      sync.Mutex
	max     int64
	byLabel map[string]int64
	samples int
	stop    chan struct{}
	done    chan struct{}
}

func sampleRSS(pid int, every time.Duration, label func() string) *rssSampler {
	s := &rssSampler{byLabel: map[string]int64{}, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			if rss, ok := procRSS(pid); ok {
				l := label()
				s.mu.Lock()
				s.samples++
				s.max = max(s.max, rss)
				s.byLabel[l] = max(s.byLabel[l], rss)
				s.mu.Unlock()
			}
			select {
			case <-s.stop:
				return
			case <-tick.C:
			}
		}
	}()
	return s
}

// Stop ends the sampling (idempotent) and returns the largest sample.
func (s *rssSampler) Stop() int64 {
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.max
}

// String is the largest sample per label, in the order of labels.
func (s *rssSampler) String(labels []string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var b bytes.Buffer
	fmt.Fprintf(&b, "max RSS %s (%d samples)", mib(s.max), s.samples)
	for _, l := range labels {
		if v, ok := s.byLabel[l]; ok {
			fmt.Fprintf(&b, "; %s %s", l, mib(v))
		}
	}
	return b.String()
}

// latencies collects durations under labels.
type latencies struct {
	mu sync.Mutex
	d  map[string][]time.Duration
}

func (l *latencies) add(label string, d time.Duration) {
	l.mu.Lock()
	if l.d == nil {
		l.d = map[string][]time.Duration{}
	}
	l.d[label] = append(l.d[label], d)
	l.mu.Unlock()
}

// latSummary is the distribution of one label's durations.
type latSummary struct {
	n                   int
	p50, p99, p999, max time.Duration
}

func (l *latencies) summary(label string) latSummary {
	l.mu.Lock()
	d := slices.Clone(l.d[label])
	l.mu.Unlock()
	if len(d) == 0 {
		return latSummary{}
	}
	slices.Sort(d)
	at := func(p float64) time.Duration { return d[min(len(d)-1, int(p*float64(len(d))))] }
	return latSummary{n: len(d), p50: at(0.50), p99: at(0.99), p999: at(0.999), max: d[len(d)-1]}
}

func (s latSummary) String() string {
	if s.n == 0 {
		return "no samples"
	}
	r := func(d time.Duration) string {
		switch {
		case d >= time.Second:
			return d.Round(10 * time.Millisecond).String()
		case d >= time.Millisecond:
			return d.Round(10 * time.Microsecond).String()
		default:
			return d.Round(time.Microsecond).String()
		}
	}
	return fmt.Sprintf("n=%d p50=%s p99=%s p99.9=%s max=%s", s.n, r(s.p50), r(s.p99), r(s.p999), r(s.max))
}
