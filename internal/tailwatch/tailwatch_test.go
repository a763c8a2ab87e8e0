package tailwatch

import (
	"bytes"
	"context"
	"log/slog"
	"runtime"
	"strings"
	"testing"
	"time"
)

// fixed is a source that reports d (and counts its reads).
func fixed(name string, d time.Duration, reads *int) Source {
	return Source{Name: name, Worst: func() (time.Duration, bool) { *reads++; return d, true }}
}

func TestSlowSecondCause(t *testing.T) {
	for _, tc := range []struct {
		name    string
		slowest time.Duration
		a, b    time.Duration
		want    string // "" for a second that is not slow
	}{
		{"quiet", 900 * time.Microsecond, time.Second, time.Second, ""},
		{"first explaining source", 4 * time.Millisecond, 2 * time.Millisecond, 10 * time.Millisecond, "a"},
		{"a too short to explain", 4 * time.Millisecond, 1999 * time.Microsecond, 3 * time.Millisecond, "b"},
		{"nothing explains", 4 * time.Millisecond, time.Millisecond, time.Millisecond, Unexplained},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var log bytes.Buffer
			var readsA, readsB int
			w, err := New(Config{
				Threshold: time.Millisecond,
				Sources:   []Source{fixed("a", tc.a, &readsA), fixed("b", tc.b, &readsB), {Name: "absent", Worst: func() (time.Duration, bool) { return time.Hour, false }}},
				Logger:    slog.New(slog.NewTextHandler(&log, nil)),
			})
			if err != nil {
				t.Fatal(err)
			}
			w.Observe(tc.slowest / 2)
			w.Observe(tc.slowest)
			w.Observe(tc.slowest / 3)
			w.tick()
			if readsA != 1 || readsB != 1 {
				t.Fatalf("sources read %d and %d times in one window, want once each", readsA, readsB)
			}
			by, total := w.Counts()
			if tc.want == "" {
				if total != 0 || log.Len() != 0 {
					t.Fatalf("a quiet second was counted (%d) or logged: %s", total, log.String())
				}
				return
			}
			if total != 1 {
				t.Fatalf("%d slow seconds, want 1", total)
			}
			for _, c := range by {
				if want := uint64(0); c.Cause == tc.want {
					want = 1
					if c.Seconds != want {
						t.Fatalf("cause %s: %d seconds, want 1 (%+v)", c.Cause, c.Seconds, by)
					}
				} else if c.Seconds != want {
					t.Fatalf("cause %s: %d seconds, want 0 (%+v)", c.Cause, c.Seconds, by)
				}
			}
			line := log.String()
			for _, s := range []string{"slow second", "cause=" + tc.want, "slowest=" + tc.slowest.String(), "a=" + tc.a.String(), "b=" + tc.b.String()} {
				if !strings.Contains(line, s) {
					t.Errorf("log line lacks %q: %s", s, line)
				}
			}
			if strings.Contains(line, "absent=") {
				t.Errorf("a source without a figure was logged: %s", line)
			}
			// The next window starts empty.
			log.Reset()
			w.tick()
			if _, total := w.Counts(); total != 1 || log.Len() != 0 {
				t.Fatalf("an empty window was slow: %d, %s", total, log.String())
			}
		})
	}
}

func TestRunStops(t *testing.T) {
	w, err := New(Config{Threshold: time.Millisecond, Interval: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); w.Run(ctx) }()
	w.Observe(time.Second)
	time.Sleep(20 * time.Millisecond)
	cancel()
	<-done
	if by, total := w.Counts(); total != 1 || by[0].Cause != Unexplained || by[0].Seconds != 1 {
		t.Fatalf("one slow window with no sources: %+v, %d", by, total)
	}
}

func TestNewRejectsNoThreshold(t *testing.T) {
	if _, err := New(Config{}); err == nil {
		t.Fatal("no threshold accepted")
	}
}

func TestGCPausesSeesAGC(t *testing.T) {
	src := GCPauses()
	if _, ok := src.Worst(); ok {
		t.Fatal("the first read covers the time since start, not a window: want ok false")
	}
	runtime.GC()
	d, ok := src.Worst()
	if !ok || d <= 0 {
		t.Fatalf("after a GC: %v, %v; want a pause", d, ok)
	}
	if d, ok := src.Worst(); !ok || d != 0 {
		t.Fatalf("a window with no GC: %v, %v; want 0", d, ok)
	}
}

func TestSchedLatencyWindows(t *testing.T) {
	src := SchedLatency()
	src.Worst()
	done := make(chan struct{})
	for range 4 * runtime.GOMAXPROCS(0) {
		go func() {
			for i := 0; i < 1e6; i++ {
				if i%1000 == 0 {
					runtime.Gosched()
				}
			}
			done <- struct{}{}
		}()
	}
	for range 4 * runtime.GOMAXPROCS(0) {
		<-done
	}
	if d, ok := src.Worst(); !ok || d <= 0 {
		t.Fatalf("goroutines waited for a P: %v, %v; want a delay", d, ok)
	}
}

func TestThreadRunDelay(t *testing.T) {
	src := ThreadRunDelay()
	if _, ok := src.Worst(); ok {
		t.Fatal("the first read is not a window: want ok false")
	}
	d, ok := src.Worst()
	if !ok {
		t.Skip("no /proc/self/task/*/schedstat here")
	}
	if d < 0 {
		t.Fatalf("negative run delay %v", d)
	}
}
