package tailwatch

import (
	"math"
	"os"
	"runtime/metrics"
	"strconv"
	"strings"
	"time"
)

// GCPauses is the longest stop-the-world pause of the garbage collector
// in the window (runtime/metrics, to the histogram's bucket: the bucket's
// upper bound).
func GCPauses() Source {
	return Source{Name: "gc_pause", Worst: histogramPeak("/sched/pauses/total/gc:seconds")}
}

// SchedLatency is the longest time a goroutine of the process waited,
// runnable, for a P in the window: the Go scheduler's delay, which two
// busy cores, a long GC assist or a P held in a system call make long.
func SchedLatency() Source {
	return Source{Name: "go_sched", Worst: histogramPeak("/sched/latencies:seconds")}
}

// histogramPeak returns a Worst of a runtime/metrics histogram of
// seconds: the upper bound of the highest bucket that counted something
// since the last call.
func histogramPeak(name string) func() (time.Duration, bool) {
	sample := []metrics.Sample{{Name: name}}
	var prev []uint64
	return func() (time.Duration, bool) {
		metrics.Read(sample)
		if sample[0].Value.Kind() != metrics.KindFloat64Histogram {
			return 0, false
		}
		h := sample[0].Value.Float64Histogram()
		if prev == nil { // counts since start, not a window
			prev = append([]uint64(nil), h.Counts...)
			return 0, false
		}
		var worst time.Duration
		for i := len(h.Counts) - 1; i >= 0; i-- {
			if i < len(prev) && h.Counts[i] <= prev[i] {
				continue
			}
			hi := h.Buckets[i+1]
			if math.IsInf(hi, 1) {
				hi = h.Buckets[i]
			}
			worst = time.Duration(hi * 1e9)
			break
		}
		prev = append(prev[:0], h.Counts...)
		return worst, true
	}
}

// ThreadRunDelay is the most time one thread of the process spent
// runnable but off its CPU in the window, waiting for the kernel to run
// it (the run delay of /proc/self/task/*/schedstat, Linux with schedstats:
// ok false elsewhere). It is a thread's total over the window, so it
// bounds any single wait from above: a figure below half the slowest
// command clears the kernel, one above it does not by itself convict it.
func ThreadRunDelay() Source {
	prev := map[string]int64{}
	return Source{Name: "thread_off_cpu", Worst: func() (time.Duration, bool) {
		tasks, err := os.ReadDir("/proc/self/task")
		if err != nil {
			return 0, false
		}
		cur := make(map[string]int64, len(tasks))
		var worst int64
		for _, t := range tasks {
			b, err := os.ReadFile("/proc/self/task/" + t.Name() + "/schedstat")
			if err != nil {
				continue // the thread ended
			}
			f := strings.Fields(string(b))
			if len(f) < 2 {
				continue
			}
			delay, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil {
				continue
			}
			cur[t.Name()] = delay
			if p, ok := prev[t.Name()]; ok {
				worst = max(worst, delay-p)
			}
		}
		first := len(prev) == 0
		prev = cur
		if first || len(cur) == 0 {
			return 0, false
		}
		return time.Duration(worst), true
	}}
}
