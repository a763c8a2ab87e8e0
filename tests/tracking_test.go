package tests

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/redis/rueidis"
)

// TestTrackingRueidisDefaults: rueidis connects with its default options
// (HELLO 3, CLIENT TRACKING ON OPTIN, client-side caching on), serves
// DoCache of RSGET and RSMGET from its cache, and drops them when another
// client changes one of the user's read states; on both drivers.
func TestTrackingRueidisDefaults(t *testing.T) {
	for _, loops := range []string{"2", "-1"} {
		t.Run("event-loops="+loops, func(t *testing.T) {
			sp := startServer(t, "--event-loops", loops)
			c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{sp.addr}, DisableRetry: true})
			if err != nil {
				t.Fatalf("rueidis.NewClient with its defaults: %v", err)
			}
			defer c.Close()
			other := sp.goRedis(t, 2)
			ctx := testCtx(t)
			if err := other.Do(ctx, "RSINCR", 42, 7, 5).Err(); err != nil {
				t.Fatal(err)
			}
			get := func() rueidis.Cacheable {
				return rueidis.Cacheable(c.B().Arbitrary("RSGET").Keys("42").Args("7").Build())
			}
			mget := func() rueidis.Cacheable {
				return rueidis.Cacheable(c.B().Arbitrary("RSMGET").Keys("42").Args("7", "8").Build())
			}
			read := func(cmd rueidis.Cacheable) (string, bool) {
				r := c.DoCache(ctx, cmd, time.Minute)
				v, err := r.ToAny()
				if err != nil {
					t.Fatalf("DoCache: %v", err)
				}
				return fmt.Sprint(v), r.IsCacheHit()
			}
			if v, hit := read(get()); v != "[5 0]" || hit {
				t.Fatalf("first RSGET 42 7: %s (cache hit %v), want [5 0] from the server", v, hit)
			}
			if v, _ := read(mget()); v != "[[5 0] [0 0]]" {
				t.Fatalf("first RSMGET 42 7 8: %s", v)
			}
			if v, hit := read(get()); v != "[5 0]" || !hit {
				t.Fatalf("second RSGET 42 7: %s (cache hit %v), want [5 0] from the cache", v, hit)
			}
			if err := other.Do(ctx, "RSINCR", 42, 8, 2).Err(); err != nil {
				t.Fatal(err)
			}
			// The invalidation of user 42 reaches the idle rueidis
			// connection; its cache drops both entries.
			deadline := time.Now().Add(5 * time.Second)
			for {
				v, hit := read(mget())
				if !hit && v == "[[5 0] [2 0]]" {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("RSMGET 42 7 8 after another client's RSINCR 42 8: %s (cache hit %v), still stale after 5 s", v, hit)
				}
				time.Sleep(10 * time.Millisecond)
			}
			if v, hit := read(get()); v != "[5 0]" || hit {
				t.Fatalf("RSGET 42 7 after the invalidation: %s (cache hit %v), want a fresh read", v, hit)
			}
		})
	}
}

// TestTrackingOrder: a RESP3 client that tracks user 42 and pipelines
// RSMGET after another client's change gets the invalidation before the
// reply that shows the change; an idle one gets it at once.
func TestTrackingOrder(t *testing.T) {
	sp := startServer(t)
	a := sp.dial(t)
	_ = a.SetDeadline(time.Now().Add(30 * time.Second))
	r := bufio.NewReader(a)
	send := func(c net.Conn, args ...string) {
		if _, err := c.Write([]byte(respCmd(args...))); err != nil {
			t.Fatal(err)
		}
	}
	reply := func() string {
		s, err := readReply(r)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	send(a, "HELLO", "3")
	reply()
	send(a, "CLIENT", "TRACKING", "ON")
	if got := reply(); got != "+OK\r\n" {
		t.Fatalf("CLIENT TRACKING ON: %q", got)
	}
	send(a, "RSGET", "42", "7")
	reply()
	b := sp.goRedis(t, 2)
	ctx := context.Background()
	if err := b.Do(ctx, "RSINCR", 42, 7).Err(); err != nil {
		t.Fatal(err)
	}
	// Idle: the push comes without asking.
	if got := reply(); !strings.HasPrefix(got, ">2\r\n$10\r\ninvalidate\r\n*1\r\n$2\r\n42\r\n") {
		t.Fatalf("after another client's change: %q, want the invalidation of 42", got)
	}
	// Tracked again by this read; the change is made, then this client
	// reads the user: the push comes no later than the reply showing it.
	send(a, "RSGET", "42", "7")
	reply()
	if err := b.Do(ctx, "RSINCR", 42, 8, 3).Err(); err != nil {
		t.Fatal(err)
	}
	send(a, "RSMGET", "42", "7", "8")
	seenPush := false
	for {
		got := reply()
		if strings.HasPrefix(got, ">2") {
			seenPush = true
			continue
		}
		if !strings.Contains(got, ":3\r\n") {
			t.Fatalf("RSMGET 42 7 8: %q", got)
		}
		if !seenPush {
			t.Fatalf("the reply showing the change came before the invalidation")
		}
		break
	}
	send(a, "CLIENT", "TRACKING", "OFF")
	for got := reply(); got != "+OK\r\n"; got = reply() {
		if !strings.HasPrefix(got, ">2") {
			t.Fatalf("CLIENT TRACKING OFF: %q", got)
		}
	}
}
