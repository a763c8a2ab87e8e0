// Package tailwatch names what held the server up in its slow seconds.
// Every second it takes the slowest command's run time and, from each of
// a list of sources, the worst delay of that source's kind in the same
// second (a garbage-collection pause, a goroutine waiting for a P, a
// thread waiting for a CPU, a lock held by the flush, ...). A second whose
// slowest command took at least the threshold is a slow second: it is
// logged with every source's figure and counted under its cause.
//
// The cause is the first source, in the order given, whose worst delay is
// at least half the slowest command's run time: a delay that long
// explains the command, and the order puts the specific ahead of the
// general (a GC pause also makes goroutines wait for a P). A slow second
// no source explains is counted as "unexplained", which is a finding too.
//
// Invariants: Observe never blocks and allocates nothing; every source is
// read once a second whether or not the second was slow, so each figure
// covers exactly one window.
package tailwatch

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/readstates/readstates/internal/latency"
)

// Unexplained is the cause of a slow second no source explains.
const Unexplained = "unexplained"

// Source is one kind of delay. Worst returns the longest delay of the kind
// since its last call (and so starts a new window); ok false means the
// figure is not available (it is then left out).
type Source struct {
	Name  string
	Worst func() (d time.Duration, ok bool)
}

// Config says what is slow and where to look.
type Config struct {
	Threshold time.Duration // a second whose slowest command took this long is slow
	Interval  time.Duration // the window (default 1s)
	Sources   []Source      // in the order causes are tried
	Logger    *slog.Logger
}

// Watch watches the seconds. Observe is given every command's run time.
type Watch struct {
	cfg    Config
	worst  latency.Peak
	counts []atomic.Uint64 // by cause: Sources, then Unexplained
	slow   atomic.Uint64
}

// New returns a Watch for cfg; Run starts it.
func New(cfg Config) (*Watch, error) {
	if cfg.Threshold <= 0 {
		return nil, errors.New("tailwatch: the threshold must be positive")
	}
	if cfg.Interval <= 0 {
		cfg.Interval = time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Watch{cfg: cfg, counts: make([]atomic.Uint64, len(cfg.Sources)+1)}, nil
}

// Observe records a command's run time.
func (w *Watch) Observe(d time.Duration) { w.worst.Record(d) }

// Run closes a window every Interval until ctx ends.
func (w *Watch) Run(ctx context.Context) {
	t := time.NewTicker(w.cfg.Interval)
	defer t.Stop()
	w.tick() // the first window starts now
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			w.tick()
		}
	}
}

// tick closes a window: it reads every source, and judges the second.
func (w *Watch) tick() {
	worst := w.worst.Take()
	figures := make([]time.Duration, len(w.cfg.Sources))
	have := make([]bool, len(w.cfg.Sources))
	for i, s := range w.cfg.Sources {
		figures[i], have[i] = s.Worst()
	}
	if worst < w.cfg.Threshold {
		return
	}
	cause := len(w.cfg.Sources)
	for i := range figures {
		if have[i] && 2*figures[i] >= worst {
			cause = i
			break
		}
	}
	w.slow.Add(1)
	w.counts[cause].Add(1)
	attrs := make([]any, 0, 4+2*len(figures))
	attrs = append(attrs, "cause", w.causeName(cause), "slowest", worst)
	for i, s := range w.cfg.Sources {
		if have[i] {
			attrs = append(attrs, s.Name, figures[i])
		}
	}
	w.cfg.Logger.Warn("slow second", attrs...)
}

func (w *Watch) causeName(i int) string {
	if i == len(w.cfg.Sources) {
		return Unexplained
	}
	return w.cfg.Sources[i].Name
}

// Count is the number of slow seconds put down to one cause.
type Count struct {
	Cause   string
	Seconds uint64
}

// Counts returns the slow seconds so far, by cause (every cause, in
// order, Unexplained last), and their total.
func (w *Watch) Counts() (by []Count, total uint64) {
	by = make([]Count, len(w.counts))
	for i := range w.counts {
		by[i] = Count{w.causeName(i), w.counts[i].Load()}
	}
	return by, w.slow.Load()
}
