// Command floor measures the machine's scheduling floor: a process that
// does nothing but sleep for a short period and note how late it woke.
// Run beside the server under load, its lateness is what any process on
// the machine suffers from the kernel and the other processes; a server
// tail no longer than the floor's is the machine's, not the server's.
//
// It writes one CSV row a second (unix second, wake-ups, the latest
// wake-up's lateness in µs, wake-ups at least -late late) to -out, and a
// summary to stdout when -duration is over or on SIGTERM/SIGINT: the
// per-second worst, and the percentiles of every wake-up's lateness,
// which compare with a latency percentile of the server's (a deferred
// command waits for at least one such wake-up of a thread).
//
//	floor -duration 10m -out floor.csv
package main

import (
	"context"
	"encoding/csv"
	"flag"
	"fmt"
	"math"
	"os"
	"os/signal"
	"runtime"
	"slices"
	"strconv"
	"syscall"
	"time"
)

func main() {
	period := flag.Duration("period", time.Millisecond, "sleep between wake-ups")
	duration := flag.Duration("duration", time.Minute, "how long to measure")
	late := flag.Duration("late", time.Millisecond, "lateness counted as a late wake-up")
	out := flag.String("out", "floor.csv", "per-second CSV")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, *duration)
	defer cancel()
	if err := run(ctx, *period, *late, *out); err != nil {
		fmt.Fprintln(os.Stderr, "floor:", err)
		os.Exit(1)
	}
}

type second struct {
	unix       int64
	wakeups    int
	worst      time.Duration
	lateWakeup int
	// lateness is every wake-up's, in µs.
	lateness []int32
}

func run(ctx context.Context, period, late time.Duration, out string) error {
	// One P and one goroutine: the probe waits for nothing of its own,
	// only for the kernel to run its thread.
	runtime.GOMAXPROCS(1)
	var secs []second
	cur := second{unix: time.Now().Unix()}
	for ctx.Err() == nil {
		want := time.Now().Add(period)
		time.Sleep(period)
		now := time.Now()
		if u := now.Unix(); u != cur.unix {
			secs = append(secs, cur)
			cur = second{unix: u}
		}
		d := max(now.Sub(want), 0)
		cur.wakeups++
		cur.worst = max(cur.worst, d)
		cur.lateness = append(cur.lateness, int32(min(d.Microseconds(), math.MaxInt32)))
		if d >= late {
			cur.lateWakeup++
		}
	}
	if len(secs) > 0 {
		secs = secs[1:] // the first second was not whole
	}
	if err := writeCSV(out, secs); err != nil {
		return err
	}
	summarize(secs, late)
	return nil
}

func writeCSV(path string, secs []second) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := csv.NewWriter(f)
	w.Write([]string{"unix_second", "wakeups", "worst_late_us", "late_wakeups"})
	for _, s := range secs {
		w.Write([]string{strconv.FormatInt(s.unix, 10), strconv.Itoa(s.wakeups),
			strconv.FormatFloat(float64(s.worst)/1e3, 'f', 1, 64), strconv.Itoa(s.lateWakeup)})
	}
	w.Flush()
	if err := w.Error(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func summarize(secs []second, late time.Duration) {
	if len(secs) == 0 {
		fmt.Println("floor: no whole second measured")
		return
	}
	worsts := make([]time.Duration, len(secs))
	var over, wakeups, lateWakeups int
	for i, s := range secs {
		worsts[i] = s.worst
		wakeups += s.wakeups
		lateWakeups += s.lateWakeup
		if s.worst >= late {
			over++
		}
	}
	slices.Sort(worsts)
	fmt.Printf("floor: %d s, %d wake-ups; per second, the latest wake-up: median %v, p99 %v, max %v; %d seconds (%.1f%%) with a wake-up %v or more late (%d wake-ups)\n",
		len(secs), wakeups, worsts[len(worsts)/2].Round(time.Microsecond),
		worsts[min(len(worsts)*99/100, len(worsts)-1)].Round(time.Microsecond), worsts[len(worsts)-1].Round(time.Microsecond),
		over, 100*float64(over)/float64(len(secs)), late, lateWakeups)
	var all []int32
	for _, s := range secs {
		all = append(all, s.lateness...)
	}
	slices.Sort(all)
	at := func(q float64) time.Duration {
		return time.Duration(all[min(int(q*float64(len(all))), len(all)-1)]) * time.Microsecond
	}
	fmt.Printf("floor: every wake-up's lateness: p50 %v, p99 %v, p99.9 %v, p99.99 %v, max %v\n",
		at(0.5), at(0.99), at(0.999), at(0.9999), at(1))
}
