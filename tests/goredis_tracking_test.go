package tests

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/push"
)

// invalidations is a go-redis push handler for "invalidate": it records
// the user_ids named by every invalidation, in the order they came.
//
// go-redis (v9.23) reads RESP3 pushes with its push processor: before it
// reads a command's reply it hands every push in front of that reply to
// the handler registered for the push's name, then reads the reply. An
// idle connection is not read: a push that comes while a Conn is idle is
// handled when the Conn next reads a reply.
type invalidations struct {
	mu    sync.Mutex
	users []string
	bad   []string // pushes that are not ["invalidate", [user_id]]
}

func (h *invalidations) HandlePushNotification(_ context.Context, _ push.NotificationHandlerContext, n []any) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(n) == 2 && n[0] == "invalidate" {
		if ks, ok := n[1].([]any); ok && len(ks) == 1 {
			if u, ok := ks[0].(string); ok {
				h.users = append(h.users, u)
				return nil
			}
		}
	}
	h.bad = append(h.bad, fmt.Sprintf("%#v", n))
	return nil
}

// since returns the user_ids recorded after the first k, and the count.
func (h *invalidations) since(k int) ([]string, int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.users[k:]), len(h.users)
}

func (h *invalidations) count() int {
	_, n := h.since(0)
	return n
}

func (h *invalidations) malformed() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.bad)
}

// doer is what the helpers need of a *redis.Client or *redis.Conn.
type doer interface {
	Do(ctx context.Context, args ...any) *redis.Cmd
}

// trackingInfo returns CLIENT TRACKINGINFO as "flags=a,b redirect=n
// prefixes=n", from the RESP3 map go-redis reads.
func trackingInfo(ctx context.Context, t *testing.T, c doer) string {
	t.Helper()
	v, err := c.Do(ctx, "CLIENT", "TRACKINGINFO").Result()
	if err != nil {
		t.Fatalf("CLIENT TRACKINGINFO: %v", err)
	}
	m, ok := v.(map[any]any)
	if !ok {
		t.Fatalf("CLIENT TRACKINGINFO: got %T %#v, want a RESP3 map", v, v)
	}
	flags, _ := m["flags"].([]any)
	var fs []string
	for _, f := range flags {
		fs = append(fs, fmt.Sprint(f))
	}
	prefixes, ok := m["prefixes"].([]any)
	if !ok {
		t.Fatalf("CLIENT TRACKINGINFO: prefixes is %T %#v, want an array", m["prefixes"], m["prefixes"])
	}
	return fmt.Sprintf("flags=%s redirect=%v prefixes=%d", strings.Join(fs, ","), m["redirect"], len(prefixes))
}

func wantInt64s(ctx context.Context, t *testing.T, c doer, want []int64, args ...any) {
	t.Helper()
	got, err := c.Do(ctx, args...).Int64Slice()
	if err != nil || !slices.Equal(got, want) {
		t.Fatalf("%v: got %v, %v, want %v", args, got, err, want)
	}
}

func wantInt(ctx context.Context, t *testing.T, c doer, want int64, args ...any) {
	t.Helper()
	got, err := c.Do(ctx, args...).Int64()
	if err != nil || got != want {
		t.Fatalf("%v: got %d, %v, want %d", args, got, err, want)
	}
}

func wantStates(ctx context.Context, t *testing.T, c doer, want []state, args ...any) {
	t.Helper()
	v, err := c.Do(ctx, args...).Result()
	if err != nil {
		t.Fatalf("%v: %v", args, err)
	}
	got, err := asStates(v)
	if err != nil || !slices.Equal(got, want) {
		t.Fatalf("%v: got %v, %v, want %v", args, got, err, want)
	}
}

// trackingConn returns a dedicated RESP3 connection with an "invalidate"
// handler, tracking off. EphemeralConn: the connection is dropped, not
// pooled again, when the test ends (its tracking state must not serve
// other callers).
func trackingConn(t *testing.T, c *redis.Client) (*redis.Conn, *invalidations) {
	t.Helper()
	conn := c.EphemeralConn()
	t.Cleanup(func() { conn.Close() })
	h := &invalidations{}
	if err := conn.RegisterPushNotificationHandler("invalidate", h, false); err != nil {
		t.Fatalf("RegisterPushNotificationHandler(invalidate): %v", err)
	}
	return conn, h
}

// TestGoRedisTracking: CLIENT TRACKING with go-redis in RESP3. The
// invalidations reach a push handler registered through go-redis's API,
// before the reply that shows the change, and go-redis stays in step (every
// reply is the one for its command) with pushes in between plain commands,
// pipelines and transactions.
func TestGoRedisTracking(t *testing.T) {
	sp := startServer(t)
	other := sp.goRedis(t, 2) // the writer: a plain RESP2 client

	t.Run("default", func(t *testing.T) {
		ctx := testCtx(t)
		conn, h := trackingConn(t, sp.goRedis(t, 3))
		const u = 7001
		us := fmt.Sprint(u)
		if got := trackingInfo(ctx, t, conn); got != "flags=off redirect=-1 prefixes=0" {
			t.Errorf("CLIENT TRACKINGINFO before: %s", got)
		}
		wantInt(ctx, t, conn, -1, "CLIENT", "GETREDIR")
		if got, err := conn.ClientTrackingOn(ctx, nil).Result(); err != nil || got != "OK" {
			t.Fatalf("ClientTrackingOn: %q, %v", got, err)
		}
		if got := trackingInfo(ctx, t, conn); got != "flags=on redirect=0 prefixes=0" {
			t.Errorf("CLIENT TRACKINGINFO: %s", got)
		}
		wantInt(ctx, t, conn, 0, "CLIENT", "GETREDIR")

		// The change is made, then this connection reads the user: the
		// reply shows the change, so the push is in front of it and
		// go-redis has handed it to the handler when Do returns.
		wantInt64s(ctx, t, conn, []int64{0, 0}, "RSGET", u, 7)
		wantInt(ctx, t, other, 1, "RSINCR", u, 7)
		wantInt64s(ctx, t, conn, []int64{1, 0}, "RSGET", u, 7)
		if got, _ := h.since(0); !slices.Equal(got, []string{us}) {
			t.Fatalf("invalidations before the reply showing another client's change: %v, want [%s]", got, us)
		}

		// An idle connection: the push comes at once but go-redis reads
		// it only with the next reply; PINGs until it is handled, each
		// answered PONG.
		wantInt(ctx, t, other, 2, "RSINCR", u, 7)
		deadline := time.Now().Add(5 * time.Second)
		pings := 0
		for h.count() < 2 {
			if time.Now().After(deadline) {
				t.Fatalf("no invalidation handled after %d PINGs in 5 s", pings)
			}
			if got, err := conn.Ping(ctx).Result(); err != nil || got != "PONG" {
				t.Fatalf("PING #%d on the tracking connection: %q, %v", pings, got, err)
			}
			pings++
			time.Sleep(5 * time.Millisecond)
		}
		if got, _ := h.since(1); !slices.Equal(got, []string{us}) {
			t.Fatalf("invalidation to the idle connection: %v, want [%s]", got, us)
		}
		// Forgotten until read again: no push for the next change.
		wantInt(ctx, t, other, 3, "RSINCR", u, 7)
		wantInt(ctx, t, other, 1, "RSINCR", u+1, 1) // a user never read
		time.Sleep(200 * time.Millisecond)
		wantStates(ctx, t, conn, []state{{3, 0}, {0, 0}}, "RSMGET", u, 7, 8)
		if got, n := h.since(2); len(got) != 0 {
			t.Fatalf("pushes for a user not read since its invalidation, or never read: %v (%d in all)", got, n)
		}

		// Own change: the push comes before the reply (and may come again
		// after it, the command having run while it was queued).
		k := h.count()
		wantInt(ctx, t, conn, 4, "RSINCR", u, 7)
		if got, _ := h.since(k); len(got) < 1 || got[0] != us {
			t.Fatalf("own RSINCR: invalidations before its reply: %v, want [%s]", got, us)
		}
		if got, err := conn.Ping(ctx).Result(); err != nil || got != "PONG" {
			t.Fatalf("PING after the own change: %q, %v", got, err)
		}
		if got, _ := h.since(k); len(got) > 2 || slices.ContainsFunc(got, func(s string) bool { return s != us }) {
			t.Fatalf("own RSINCR: invalidations %v, want [%s] once or twice", got, us)
		}

		// A pipeline: another client's changes ahead of it, its own in it.
		wantInt64s(ctx, t, conn, []int64{4, 0}, "RSGET", u, 7) // tracked again
		wantInt(ctx, t, other, 5, "RSINCR", u, 7)
		m := map[int64]int64{7: 5, 8: 0, 9: 0}
		var cmds []*redis.Cmd
		var wants []string
		_, err := conn.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i := range 30 {
				ch := int64(7 + i%3)
				cmds = append(cmds, p.Do(ctx, "RSGET", u, ch))
				wants = append(wants, fmt.Sprint([]any{m[ch], int64(0)}))
				m[ch]++
				cmds = append(cmds, p.Do(ctx, "RSINCR", u, ch))
				wants = append(wants, fmt.Sprint(m[ch]))
				cmds = append(cmds, p.Do(ctx, "RSMGET", u, 7, 8, 9))
				wants = append(wants, fmt.Sprint([]any{[]any{m[7], int64(0)}, []any{m[8], int64(0)}, []any{m[9], int64(0)}}))
			}
			return nil
		})
		if err != nil {
			t.Fatalf("pipeline: %v", err)
		}
		for i, c := range cmds {
			if got := fmt.Sprint(c.Val()); got != wants[i] || c.Err() != nil {
				t.Fatalf("pipeline command %d %v: got %s, %v, want %s", i, c.Args(), got, c.Err(), wants[i])
			}
		}

		// A transaction (MULTI ... EXEC), another client's change first.
		wantInt(ctx, t, other, m[8]+1, "RSINCR", u, 8)
		m[8]++
		var incr, get *redis.Cmd
		_, err = conn.TxPipelined(ctx, func(p redis.Pipeliner) error {
			incr = p.Do(ctx, "RSINCR", u, 8)
			get = p.Do(ctx, "RSMGET", u, 7, 8)
			return nil
		})
		m[8]++
		if err != nil {
			t.Fatalf("MULTI ... EXEC: %v", err)
		}
		if got, err := incr.Int64(); err != nil || got != m[8] {
			t.Fatalf("RSINCR in MULTI: %d, %v, want %d", got, err, m[8])
		}
		if v, _ := get.Result(); fmt.Sprint(v) != fmt.Sprint([]any{[]any{m[7], int64(0)}, []any{m[8], int64(0)}}) {
			t.Fatalf("RSMGET in MULTI: %v", v)
		}
		wantStates(ctx, t, conn, []state{{m[7], 0}, {m[8], 0}, {m[9], 0}}, "RSMGET", u, 7, 8, 9)
		if got, _ := h.since(0); slices.ContainsFunc(got, func(s string) bool { return s != us }) {
			t.Errorf("invalidations of other users: %v", got)
		}
		if bad := h.malformed(); len(bad) > 0 {
			t.Errorf("pushes not [invalidate [user_id]]: %v", bad)
		}

		if got, err := conn.ClientTrackingOff(ctx).Result(); err != nil || got != "OK" {
			t.Fatalf("ClientTrackingOff: %q, %v", got, err)
		}
		if got := trackingInfo(ctx, t, conn); got != "flags=off redirect=-1 prefixes=0" {
			t.Errorf("CLIENT TRACKINGINFO after OFF: %s", got)
		}
		wantInt(ctx, t, conn, -1, "CLIENT", "GETREDIR")
		k = h.count()
		wantInt64s(ctx, t, conn, []int64{m[7], 0}, "RSGET", u, 7)
		wantInt(ctx, t, other, m[7]+1, "RSINCR", u, 7)
		wantInt64s(ctx, t, conn, []int64{m[7] + 1, 0}, "RSGET", u, 7)
		if got, _ := h.since(k); len(got) > 0 {
			t.Errorf("invalidations after CLIENT TRACKING OFF: %v", got)
		}
	})

	t.Run("optin", func(t *testing.T) {
		ctx := testCtx(t)
		conn, h := trackingConn(t, sp.goRedis(t, 3))
		const u = 7101
		if got, err := conn.ClientTrackingOn(ctx, &redis.ClientTrackingOptions{OptIn: true}).Result(); err != nil || got != "OK" {
			t.Fatalf("ClientTrackingOn OPTIN: %q, %v", got, err)
		}
		if got := trackingInfo(ctx, t, conn); got != "flags=on,optin redirect=0 prefixes=0" {
			t.Errorf("CLIENT TRACKINGINFO: %s", got)
		}
		// Not opted in: no push even in front of a reply showing a change.
		wantInt64s(ctx, t, conn, []int64{0, 0}, "RSGET", u, 1)
		wantInt(ctx, t, other, 1, "RSINCR", u, 1)
		wantInt64s(ctx, t, conn, []int64{1, 0}, "RSGET", u, 1)
		if n := h.count(); n != 0 {
			t.Fatalf("%d invalidations for reads without CLIENT CACHING YES", n)
		}
		if got, err := conn.Do(ctx, "CLIENT", "CACHING", "YES").Text(); err != nil || got != "OK" {
			t.Fatalf("CLIENT CACHING YES: %q, %v", got, err)
		}
		if got := trackingInfo(ctx, t, conn); got != "flags=on,optin,caching-yes redirect=0 prefixes=0" {
			t.Errorf("CLIENT TRACKINGINFO right after CLIENT CACHING YES: %s", got)
		}
		// Opted in (a pipeline: CLIENT CACHING YES and the read in one write).
		cmds, err := conn.Pipelined(ctx, func(p redis.Pipeliner) error {
			p.Do(ctx, "CLIENT", "CACHING", "YES")
			p.Do(ctx, "RSGET", u, 1)
			return nil
		})
		if err != nil || fmt.Sprint(cmds[1].(*redis.Cmd).Val()) != "[1 0]" {
			t.Fatalf("CLIENT CACHING YES + RSGET: %v, %v", cmds, err)
		}
		wantInt(ctx, t, other, 2, "RSINCR", u, 1)
		wantInt64s(ctx, t, conn, []int64{2, 0}, "RSGET", u, 1)
		if got, _ := h.since(0); !slices.Equal(got, []string{fmt.Sprint(u)}) {
			t.Fatalf("invalidations after an opted-in read: %v, want [%d]", got, u)
		}
		wantRedisError(t, conn.Do(ctx, "CLIENT", "CACHING", "NO").Err(),
			"ERR CLIENT CACHING NO is only valid when tracking is enabled in OPTOUT mode")
		wantInt64s(ctx, t, conn, []int64{2, 0}, "RSGET", u, 1)
	})

	t.Run("optout", func(t *testing.T) {
		ctx := testCtx(t)
		conn, h := trackingConn(t, sp.goRedis(t, 3))
		const u = 7201
		if got, err := conn.ClientTrackingOn(ctx, &redis.ClientTrackingOptions{OptOut: true}).Result(); err != nil || got != "OK" {
			t.Fatalf("ClientTrackingOn OPTOUT: %q, %v", got, err)
		}
		if got := trackingInfo(ctx, t, conn); got != "flags=on,optout redirect=0 prefixes=0" {
			t.Errorf("CLIENT TRACKINGINFO: %s", got)
		}
		if err := conn.Do(ctx, "CLIENT", "CACHING", "NO").Err(); err != nil {
			t.Fatalf("CLIENT CACHING NO: %v", err)
		}
		wantInt64s(ctx, t, conn, []int64{0, 0}, "RSGET", u, 1) // opted out
		wantInt(ctx, t, other, 1, "RSINCR", u, 1)
		wantInt64s(ctx, t, conn, []int64{1, 0}, "RSGET", u, 1) // tracked
		if n := h.count(); n != 0 {
			t.Fatalf("%d invalidations for an opted-out read", n)
		}
		wantInt(ctx, t, other, 2, "RSINCR", u, 1)
		wantInt64s(ctx, t, conn, []int64{2, 0}, "RSGET", u, 1)
		if got, _ := h.since(0); !slices.Equal(got, []string{fmt.Sprint(u)}) {
			t.Fatalf("invalidations after a tracked read: %v, want [%d]", got, u)
		}
	})

	t.Run("refused", func(t *testing.T) {
		ctx := testCtx(t)
		conn, _ := trackingConn(t, sp.goRedis(t, 3))
		wantRedisError(t, conn.ClientTrackingOn(ctx, &redis.ClientTrackingOptions{Bcast: true}).Err(),
			"ERR CLIENT TRACKING BCAST and PREFIX are not supported")
		wantRedisError(t, conn.ClientTrackingOn(ctx, &redis.ClientTrackingOptions{Bcast: true, Prefixes: []string{"1"}}).Err(),
			"ERR CLIENT TRACKING BCAST and PREFIX are not supported")
		id, err := other.ClientID(ctx).Result()
		if err != nil {
			t.Fatal(err)
		}
		wantRedisError(t, conn.ClientTrackingOn(ctx, &redis.ClientTrackingOptions{Redirect: id}).Err(),
			"ERR CLIENT TRACKING REDIRECT is not supported")
		if got := trackingInfo(ctx, t, conn); got != "flags=off redirect=-1 prefixes=0" {
			t.Errorf("CLIENT TRACKINGINFO after the refusals: %s", got)
		}
		two := other.Conn()
		defer two.Close()
		err = two.ClientTrackingOn(ctx, nil).Err()
		wantRedisError(t, err, "ERR ")
		if err == nil || !strings.Contains(err.Error(), "RESP3") {
			t.Errorf("CLIENT TRACKING ON in RESP2: %v, want an error naming RESP3", err)
		}
	})

	// A pooled client (PoolSize 1) that turned tracking on with a plain
	// Do: an invalidation waiting on the idle pooled connection must not
	// make go-redis drop it (redis-py's pool does, see
	// redispy_tracking.py), and the handler registered on the client
	// gets it.
	t.Run("pooled", func(t *testing.T) {
		ctx := testCtx(t)
		c := sp.goRedis(t, 3, func(o *redis.Options) { o.PoolSize = 1 })
		h := &invalidations{}
		if err := c.RegisterPushNotificationHandler("invalidate", h, false); err != nil {
			t.Fatal(err)
		}
		const u = 7301
		id, err := c.ClientID(ctx).Result()
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Do(ctx, "CLIENT", "TRACKING", "ON").Err(); err != nil {
			t.Fatal(err)
		}
		for i := range int64(5) {
			wantInt64s(ctx, t, c, []int64{i, 0}, "RSGET", u, 1)
			wantInt(ctx, t, other, i+1, "RSINCR", u, 1)
			time.Sleep(50 * time.Millisecond) // the push waits on the idle connection
			if got, err := c.ClientID(ctx).Result(); err != nil || got != id {
				t.Fatalf("round %d: CLIENT ID %d, %v, want %d: the pooled connection was replaced", i, got, err, id)
			}
		}
		if got := trackingInfo(ctx, t, c); got != "flags=on redirect=0 prefixes=0" {
			t.Errorf("CLIENT TRACKINGINFO at the end: %s", got)
		}
		// The last push may come after the last reply: PING for it.
		for deadline := time.Now().Add(5 * time.Second); h.count() < 5 && time.Now().Before(deadline); {
			if err := c.Ping(ctx).Err(); err != nil {
				t.Fatal(err)
			}
			time.Sleep(5 * time.Millisecond)
		}
		if got, _ := h.since(0); len(got) != 5 || slices.ContainsFunc(got, func(s string) bool { return s != fmt.Sprint(u) }) {
			t.Errorf("invalidations through the pooled client: %v, want [%d] 5 times", got, u)
		}
	})

	// No handler: go-redis drops the pushes (no handler for their name)
	// and every reply is still the one for its command.
	t.Run("no-handler", func(t *testing.T) {
		ctx := testCtx(t)
		conn := sp.goRedis(t, 3).EphemeralConn()
		defer conn.Close()
		const u = 7401
		if err := conn.ClientTrackingOn(ctx, nil).Err(); err != nil {
			t.Fatal(err)
		}
		m := map[int64]int64{}
		for i := range 200 {
			ch := int64(i % 4)
			wantInt64s(ctx, t, conn, []int64{m[ch], 0}, "RSGET", u, ch)
			m[ch]++
			wantInt(ctx, t, other, m[ch], "RSINCR", u, ch)
			if i%3 == 0 {
				m[ch]++
				wantInt(ctx, t, conn, m[ch], "RSINCR", u, ch)
			}
			if i%10 == 0 {
				wantStates(ctx, t, conn, []state{{m[0], 0}, {m[1], 0}, {m[2], 0}, {m[3], 0}}, "RSMGET", u, 0, 1, 2, 3)
			}
		}
		if got, err := conn.Ping(ctx).Result(); err != nil || got != "PONG" {
			t.Fatalf("PING at the end: %q, %v", got, err)
		}
	})
}
