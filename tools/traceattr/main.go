// Command traceattr says where the time of a slow command went, from the
// traces the server's --trace-slow writes: for each file, the command's
// goroutine is found by the log event that ends it (slowtrace's), and the
// command's run time before it is split by what the goroutine was doing
// (running, waiting for a P, blocked and why, in a system call), next to
// the stop-the-world pauses in it and the goroutines that ran on the Ps
// while it waited.
//
//	go run ./traceattr data/traces/slow-*.trace
//
// One line per trace, then the totals; figures in milliseconds.
package main

import (
	"cmp"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/exp/trace"
)

// logCategory is internal/slowtrace.LogCategory (another module).
const logCategory = "slowtrace"

func main() {
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: traceattr TRACE...")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() == 0 {
		flag.Usage()
		os.Exit(2)
	}
	var total attribution
	n := 0
	for _, path := range flag.Args() {
		a, err := attribute(path)
		if err != nil {
			fmt.Fprintf(os.Stderr, "%s: %v\n", path, err)
			continue
		}
		fmt.Printf("%s: %s\n", path, a)
		total.add(a)
		n++
	}
	if n > 1 {
		fmt.Printf("all %d: %s\n", n, &total)
	}
}

// attribution is where one slow command's time went.
type attribution struct {
	took    trace.Time            // the command's run time
	state   map[string]trace.Time // its goroutine's time by state ("blocked: reason")
	stw     map[string]trace.Time // stop-the-world pauses overlapping it, by name
	others  map[string]trace.Time // others running while it was runnable, by start function
	waitedP trace.Time            // its runnable time
}

func newAttribution() *attribution {
	return &attribution{state: map[string]trace.Time{}, stw: map[string]trace.Time{}, others: map[string]trace.Time{}}
}

func (a *attribution) add(b *attribution) {
	if a.state == nil {
		*a = *newAttribution()
	}
	a.took += b.took
	a.waitedP += b.waitedP
	for _, m := range [][2]map[string]trace.Time{{a.state, b.state}, {a.stw, b.stw}, {a.others, b.others}} {
		for k, v := range m[1] {
			m[0][k] += v
		}
	}
}

func ms(t trace.Time) string { return strconv.FormatFloat(float64(t)/1e6, 'f', 2, 64) }

// top formats the largest entries of m.
func top(m map[string]trace.Time, k int) string {
	keys := slices.SortedFunc(maps.Keys(m), func(x, y string) int { return cmp.Compare(m[y], m[x]) })
	var parts []string
	for _, key := range keys[:min(k, len(keys))] {
		parts = append(parts, key+" "+ms(m[key]))
	}
	return strings.Join(parts, ", ")
}

func (a *attribution) String() string {
	s := "took " + ms(a.took) + ": " + top(a.state, 6)
	if len(a.stw) > 0 {
		s += "; stop-the-world: " + top(a.stw, 3)
	}
	if a.waitedP > 0 {
		s += "; running while it waited for a P: " + top(a.others, 4)
	}
	return s
}

// attribute reads path twice: for the end of the slow command, then for
// what happened before it.
func attribute(path string) (*attribution, error) {
	var (
		end   trace.Time
		g     trace.GoID
		took  trace.Time
		found bool
	)
	err := each(path, func(ev trace.Event) {
		if ev.Kind() == trace.EventLog && ev.Log().Category == logCategory && !found {
			d, err := strconv.ParseInt(ev.Log().Message, 10, 64)
			if err == nil {
				end, g, took, found = ev.Time(), ev.Goroutine(), trace.Time(d), true
			}
		}
	})
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, errors.New("no slow command in it")
	}
	start := end - took
	a := newAttribution()
	a.took = took
	overlap := func(from, to trace.Time) trace.Time {
		return max(0, min(to, end)-max(from, start))
	}
	var (
		gState     = "unknown (before the trace)"
		gSince     = start
		running    = map[trace.GoID]trace.Time{} // since when, for goroutines running now
		names      = map[trace.GoID]string{}
		stwSince   = map[string]trace.Time{}
		waitFrom   trace.Time // g runnable since, or -1
		runnableOf []struct{ from, to trace.Time }
	)
	waitFrom = -1
	err = each(path, func(ev trace.Event) {
		t := ev.Time()
		if t > end {
			return
		}
		switch ev.Kind() {
		case trace.EventRangeBegin, trace.EventRangeActive:
			if name := ev.Range().Name; strings.HasPrefix(name, "stop-the-world") {
				stwSince[name] = t
			}
		case trace.EventRangeEnd:
			if name := ev.Range().Name; strings.HasPrefix(name, "stop-the-world") {
				if from, ok := stwSince[name]; ok {
					if o := overlap(from, t); o > 0 {
						a.stw[name] += o
					}
					delete(stwSince, name)
				}
			}
		case trace.EventStateTransition:
			st := ev.StateTransition()
			if st.Resource.Kind != trace.ResourceGoroutine {
				return
			}
			id := st.Resource.Goroutine()
			from, to := st.Goroutine()
			if name, ok := names[id]; !ok || name == "?" {
				names[id] = startFunc(st.Stack, ev.Stack())
			}
			if from == trace.GoRunning {
				if since, ok := running[id]; ok {
					if id != g {
						for _, w := range runnableOf {
							if o := max(0, min(t, w.to)-max(since, w.from)); o > 0 {
								a.others[names[id]] += o
							}
						}
						if waitFrom >= 0 {
							if o := max(0, t-max(since, waitFrom)); o > 0 {
								a.others[names[id]] += o
							}
						}
					}
					delete(running, id)
				}
			}
			if to == trace.GoRunning {
				running[id] = t
			}
			if id != g {
				return
			}
			if o := overlap(gSince, t); o > 0 {
				a.state[gState] += o
			}
			if waitFrom >= 0 {
				runnableOf = append(runnableOf, struct{ from, to trace.Time }{max(waitFrom, start), t})
				// What ran from then on was counted for the spans ended.
				waitFrom = -1
			}
			gState, gSince = stateName(to, st.Reason), t
			if to == trace.GoWaiting || to == trace.GoSyscall {
				gState += " in " + leafFunc(ev.Stack())
			}
			if to == trace.GoRunnable && t < end {
				waitFrom = max(t, start)
			}
		}
	})
	if err != nil {
		return nil, err
	}
	if o := overlap(gSince, end); o > 0 {
		a.state[gState] += o
	}
	for _, w := range runnableOf {
		a.waitedP += max(0, min(w.to, end)-max(w.from, start))
	}
	return a, nil
}

func stateName(s trace.GoState, reason string) string {
	switch s {
	case trace.GoRunning:
		return "running"
	case trace.GoRunnable:
		return "waiting for a P"
	case trace.GoSyscall:
		return "in a system call"
	case trace.GoWaiting:
		return "blocked (" + cmp.Or(reason, "?") + ")"
	}
	return s.String()
}

// startFunc names a goroutine by the outermost function of its start
// stack outside the runtime and sync's WaitGroup.Go (or of the stack it
// was first seen with).
func startFunc(stacks ...trace.Stack) string {
	for _, st := range stacks {
		var last string
		for f := range st.Frames() {
			if f.Func != "" && !strings.HasPrefix(f.Func, "runtime.") && !strings.HasPrefix(f.Func, "sync.") {
				last = f.Func
			}
		}
		if last != "" {
			return last
		}
	}
	return "?"
}

// leafFunc names the innermost function of st outside the runtime and
// the sync and syscall packages: where the goroutine blocked.
func leafFunc(st trace.Stack) string {
	for f := range st.Frames() {
		if f.Func != "" && !strings.HasPrefix(f.Func, "runtime.") && !strings.HasPrefix(f.Func, "sync.") &&
			!strings.HasPrefix(f.Func, "internal/") && !strings.HasPrefix(f.Func, "syscall.") &&
			!strings.HasPrefix(f.Func, "golang.org/x/sys/") {
			return f.Func
		}
	}
	return "?"
}

// each calls fn with every event of the trace at path.
func each(path string, fn func(trace.Event)) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	r, err := trace.NewReader(f)
	if err != nil {
		return err
	}
	for {
		ev, err := r.ReadEvent()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		fn(ev)
	}
}
