// Package slowtrace keeps the last moments of the runtime's execution
// trace in memory (runtime/trace's flight recorder) and writes them to a
// file when a command runs slower than a threshold: an operator then sees
// what the process did in its slowest moment, which goroutine ran and
// which waited (for a lock, a P, the network), and where the garbage
// collector stopped the world (`go tool trace FILE`).
//
// Invariants: Observe never blocks, and below the threshold it is one
// comparison and allocates nothing; at most one
// trace is written at a time, and none within MinGap of the last one
// begun; files are named slow-<unix nanoseconds>.trace in Dir, and only
// the newest Keep of them are kept.
package slowtrace

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/trace"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// LogCategory is the category of the trace log event (runtime/trace.Log)
// that ends a traced command, on its goroutine, with its run time in
// nanoseconds as the message.
const LogCategory = "slowtrace"

// Config says what is slow and where its traces go.
type Config struct {
	Dir       string        // created if missing
	Threshold time.Duration // a command at least this slow is traced
	// Window is how much of the past a trace holds (default 2s): the
	// flight recorder's minimum age.
	Window time.Duration
	// MinGap is the least time between two traces (default 10s), so a
	// slow period costs one trace, not one per command.
	MinGap time.Duration
	Keep   int // traces kept in Dir (default 10)
	Logger *slog.Logger
}

// Recorder is a running flight recorder; Close stops it.
type Recorder struct {
	cfg       Config
	fr        *trace.FlightRecorder
	threshold int64
	last      atomic.Int64 // unix nanoseconds of the last trace begun
	writing   atomic.Bool
	wg        sync.WaitGroup
}

// Start starts the flight recorder. Only one may run in a process.
func Start(cfg Config) (*Recorder, error) {
	if cfg.Threshold <= 0 || cfg.Dir == "" {
		return nil, errors.New("slowtrace: a threshold and a directory are needed")
	}
	cfg.Window = cmp.Or(cfg.Window, 2*time.Second)
	cfg.MinGap = cmp.Or(cfg.MinGap, 10*time.Second)
	cfg.Keep = cmp.Or(cfg.Keep, 10)
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("slowtrace: %w", err)
	}
	fr := trace.NewFlightRecorder(trace.FlightRecorderConfig{MinAge: cfg.Window})
	if err := fr.Start(); err != nil {
		return nil, fmt.Errorf("slowtrace: start the flight recorder: %w", err)
	}
	return &Recorder{cfg: cfg, fr: fr, threshold: int64(cfg.Threshold)}, nil
}

// Observe is given the run time of a command; if it is over the
// threshold, the recorder's window is written to a file in the
// background (unless one is being written, or was begun within MinGap).
func (r *Recorder) Observe(d time.Duration) {
	if int64(d) < r.threshold {
		return
	}
	now := time.Now().UnixNano()
	if now-r.last.Load() < int64(r.cfg.MinGap) || !r.writing.CompareAndSwap(false, true) {
		return
	}
	r.last.Store(now)
	// Marks the command's end, and its goroutine, in the trace: tools/
	// traceattr starts there.
	trace.Log(context.Background(), LogCategory, strconv.FormatInt(int64(d), 10))
	r.wg.Go(func() {
		defer r.writing.Store(false)
		r.write(now, d)
	})
}

func (r *Recorder) write(at int64, d time.Duration) {
	path := filepath.Join(r.cfg.Dir, fmt.Sprintf("slow-%d.trace", at))
	err := writeFile(path, r.fr)
	if err != nil {
		r.cfg.Logger.Warn("slow command: its trace could not be written", "took", d, "err", err)
		return
	}
	r.cfg.Logger.Warn("slow command: trace written", "took", d, "threshold", r.cfg.Threshold, "file", path)
	r.prune()
}

func writeFile(path string, fr *trace.FlightRecorder) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := fr.WriteTo(f); err != nil {
		f.Close()
		os.Remove(path)
		return err
	}
	return f.Close()
}

// prune removes all but the newest Keep traces.
func (r *Recorder) prune() {
	ents, err := os.ReadDir(r.cfg.Dir)
	if err != nil {
		return
	}
	var names []string
	for _, e := range ents {
		if n := e.Name(); strings.HasPrefix(n, "slow-") && strings.HasSuffix(n, ".trace") {
			names = append(names, n)
		}
	}
	// Same-length decimal nanoseconds sort as numbers do.
	slices.SortFunc(names, func(a, b string) int { return cmp.Or(cmp.Compare(len(a), len(b)), strings.Compare(a, b)) })
	for _, n := range names[:max(0, len(names)-r.cfg.Keep)] {
		os.Remove(filepath.Join(r.cfg.Dir, n))
	}
}

// Close waits for a trace being written, then stops the recorder. No
// Observe may run during or after it.
func (r *Recorder) Close() {
	r.wg.Wait()
	r.fr.Stop()
}
