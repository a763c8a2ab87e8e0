package commands

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/readstates/readstates/cache"
	"github.com/readstates/readstates/persist"
	"github.com/tidwall/redcon"
)

// memBackend is an in-memory ReadStates with the spec's semantics, for
// logic tests. Users in failUsers make every call fail with that error,
// to test how engine errors become replies.
type memBackend struct {
	mu        sync.Mutex
	txMu      sync.Mutex // held by Atomically
	m         map[cache.Key]cache.State
	failUsers map[int64]error
	calls     int
}

func newMemBackend() *memBackend {
	return &memBackend{
		m: map[cache.Key]cache.State{},
		failUsers: map[int64]error{
			9001: fmt.Errorf("load (9001,1): %w: dial tcp 10.0.0.1:9042: i/o timeout", persist.ErrUnavailable),
			9002: cache.ErrFull,
			9003: errors.New("disk on fire\r\nsecond line"),
			9004: context.Canceled,
			9005: persist.ErrClosed,
		},
	}
}

func (b *memBackend) Incr(_ context.Context, k cache.Key, delta int64) (int32, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.calls++
	if err := b.failUsers[k.User]; err != nil {
		return 0, err
	}
	st := b.m[k]
	n := int64(st.MentionCount)
	switch {
	case delta > 0 && n > math.MaxInt32-delta:
		return 0, fmt.Errorf("incr (%d,%d): %w", k.User, k.Channel, cache.ErrOverflow)
	case delta < 0 && n+delta < 0: // n >= 0, so n+delta cannot wrap
		n = 0
	default:
		n += delta
	}
	st.MentionCount = int32(n)
	b.m[k] = st
	return st.MentionCount, nil
}

func (b *memBackend) Reset(_ context.Context, k cache.Key, msgID int64, setMsg bool) (int32, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.calls++
	if err := b.failUsers[k.User]; err != nil {
		return 0, err
	}
	st := b.m[k]
	prev := st.MentionCount
	st.MentionCount = 0
	if setMsg {
		st.LastMessageID = msgID
	}
	b.m[k] = st
	return prev, nil
}

func (b *memBackend) Get(_ context.Context, k cache.Key) (cache.State, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.calls++
	if err := b.failUsers[k.User]; err != nil {
		return cache.State{}, err
	}
	return b.m[k], nil
}

func (b *memBackend) GetMany(ctx context.Context, user int64, channels []int64, out []cache.State) error {
	for i, c := range channels {
		st, err := b.Get(ctx, cache.Key{User: user, Channel: c})
		if err != nil {
			return err
		}
		out[i] = st
	}
	return nil
}

// Atomically runs fn on b itself: atomic among transactions only (txMu),
// which is what the logic tests need; the engine's atomicity is tested on
// the engine.
func (b *memBackend) Atomically(_ context.Context, _ []cache.Key, fn func(ReadStates)) error {
	b.txMu.Lock()
	defer b.txMu.Unlock()
	fn(b)
	return nil
}

func (b *memBackend) Stats() EngineStats {
	b.mu.Lock()
	defer b.mu.Unlock()
	return EngineStats{
		Entries: int64(len(b.m)), Capacity: 1000, Hits: 7, Misses: 3, Evictions: 1,
		Dirty: 2, Pending: 1, Writes: 11, FlushCycles: 4,
		LastFlush: time.Unix(1_700_000_000, 0),
	}
}

// bufWriter is a Writer that appends RESP to a buffer, with redcon's own
// encoders, so tests see the bytes a client would.
type bufWriter struct{ b []byte }

func (w *bufWriter) WriteError(msg string)       { w.b = redcon.AppendError(w.b, msg) }
func (w *bufWriter) WriteString(str string)      { w.b = redcon.AppendString(w.b, str) }
func (w *bufWriter) WriteBulk(bulk []byte)       { w.b = redcon.AppendBulk(w.b, bulk) }
func (w *bufWriter) WriteBulkString(bulk string) { w.b = redcon.AppendBulkString(w.b, bulk) }
func (w *bufWriter) WriteInt64(num int64)        { w.b = redcon.AppendInt(w.b, num) }
func (w *bufWriter) WriteArray(count int)        { w.b = redcon.AppendArray(w.b, count) }
func (w *bufWriter) WriteNull()                  { w.b = redcon.AppendNull(w.b) }
func (w *bufWriter) WriteRaw(data []byte)        { w.b = append(w.b, data...) }

// fakeHost is a Host for INFO, CLIENT LIST and SHUTDOWN tests.
type fakeHost struct {
	mu        sync.Mutex
	sessions  []*Session
	shutdowns int
	failStop  bool
}

// Kill marks the matching sessions closing (as a server's closed
// connection would stop them) and drops them from the list.
func (h *fakeHost) Kill(match func(*Session) bool) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	kept := h.sessions[:0]
	for _, s := range h.sessions {
		if match(s) {
			n++
			continue
		}
		kept = append(kept, s)
	}
	h.sessions = kept
	return n
}

func (h *fakeHost) HostStats() HostStats {
	h.mu.Lock()
	defer h.mu.Unlock()
	return HostStats{Port: 6380, ConnectedClients: len(h.sessions), MaxClients: 10000,
		TotalConnections: 5, RejectedConnections: 1, TotalCommands: 42}
}

func (h *fakeHost) EachSession(fn func(*Session)) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, s := range h.sessions {
		fn(s)
	}
}

func (h *fakeHost) Shutdown() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.failStop {
		return errors.New("no")
	}
	h.shutdowns++
	return nil
}

// testClock is a settable clock.
type testClock struct{ t time.Time }

func (c *testClock) now() time.Time { return c.t }

// newTestDispatcher returns a dispatcher over a fresh memBackend.
func newTestDispatcher(t testing.TB, mod func(*Config)) (*Dispatcher, *memBackend) {
	t.Helper()
	b := newMemBackend()
	clock := &testClock{t: time.Unix(1_700_000_100, 0)}
	cfg := Config{Backend: b, Stats: b, Version: "test", Now: clock.now,
		Params: []Param{{"maxclients", "10000"}, {"timeout", "0"}}}
	if mod != nil {
		mod(&cfg)
	}
	d, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return d, b
}

// respValues parses a buffer of RESP2/RESP3 replies and returns how many
// top-level values it holds; it fails on anything malformed or left over.
func respValues(b []byte) (int, error) {
	n := 0
	for len(b) > 0 {
		rest, err := respSkip(b, 0)
		if err != nil {
			return n, err
		}
		b = rest
		n++
	}
	return n, nil
}

func respLine(b []byte) (line, rest []byte, err error) {
	for i := 0; i+1 < len(b); i++ {
		if b[i] == '\r' && b[i+1] == '\n' {
			return b[:i], b[i+2:], nil
		}
		if b[i] == '\r' || b[i] == '\n' {
			return nil, nil, fmt.Errorf("bare CR or LF in %q", b)
		}
	}
	return nil, nil, fmt.Errorf("unterminated line %q", b)
}

func respSkip(b []byte, depth int) ([]byte, error) {
	if depth > 16 {
		return nil, errors.New("too deep")
	}
	if len(b) == 0 {
		return nil, errors.New("missing value")
	}
	kind := b[0]
	line, rest, err := respLine(b[1:])
	if err != nil {
		return nil, err
	}
	switch kind {
	case '+', '-', ':', '_', ',', '#':
		return rest, nil
	case '$', '=':
		n, err := strconv.Atoi(string(line))
		if err != nil || n < -1 {
			return nil, fmt.Errorf("bad bulk length %q", line)
		}
		if n == -1 {
			return rest, nil
		}
		if len(rest) < n+2 || rest[n] != '\r' || rest[n+1] != '\n' {
			return nil, fmt.Errorf("bad bulk body")
		}
		return rest[n+2:], nil
	case '*', '~', '%':
		n, err := strconv.Atoi(string(line))
		if err != nil || n < -1 {
			return nil, fmt.Errorf("bad aggregate length %q", line)
		}
		if kind == '%' {
			n *= 2
		}
		for range n {
			if rest, err = respSkip(rest, depth+1); err != nil {
				return nil, err
			}
		}
		return rest, nil
	}
	return nil, fmt.Errorf("unknown type %q", kind)
}
