package tests

import (
	"fmt"
	"strconv"
	"sync"
	"testing"

	"github.com/redis/go-redis/v9"
)

// TestTransactionGoRedis: go-redis's TxPipelined (MULTI, the commands,
// EXEC in one round trip) gets Redis's replies, on both protocols.
func TestTransactionGoRedis(t *testing.T) {
	sp := startServer(t)
	ctx := testCtx(t)
	for _, proto := range protocols {
		c := sp.goRedis(t, proto)
		user := strconv.Itoa(100 + proto)
		var incr, reset *redis.Cmd
		var get *redis.Cmd
		cmds, err := c.TxPipelined(ctx, func(p redis.Pipeliner) error {
			incr = p.Do(ctx, "RSINCR", user, 7, 5)
			reset = p.Do(ctx, "RSRESET", user, 7, 1000)
			get = p.Do(ctx, "RSMGET", user, 7, 8)
			return nil
		})
		if err != nil {
			t.Fatalf("RESP%d: TxPipelined: %v (%v)", proto, err, cmds)
		}
		if n, _ := incr.Int64(); n != 5 {
			t.Errorf("RESP%d: RSINCR in the transaction: %v", proto, incr)
		}
		if n, _ := reset.Int64(); n != 5 {
			t.Errorf("RESP%d: RSRESET in the transaction: %v", proto, reset)
		}
		v, _ := get.Result()
		if got := fmt.Sprint(v); got != "[[0 1000] [0 0]]" {
			t.Errorf("RESP%d: RSMGET in the transaction: %s", proto, got)
		}
		// A command refused while queueing aborts the whole transaction.
		_, err = c.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.Do(ctx, "RSINCR", user, 9)
			p.Do(ctx, "RSGET", user) // wrong arity
			return nil
		})
		if err == nil || err.Error() != "EXECABORT Transaction discarded because of previous errors." {
			t.Errorf("RESP%d: a transaction with a bad command: %v, want EXECABORT", proto, err)
		}
		if v, _ := c.Do(ctx, "RSGET", user, 9).Result(); fmt.Sprint(v) != "[0 0]" {
			t.Errorf("RESP%d: the aborted transaction changed RSGET %s 9: %s", proto, user, fmt.Sprint(v))
		}
	}
}

// TestTransactionAtomic: transactions that move a mention from one read
// state to another (RSINCR a -1, RSINCR b +1, over many users, most of
// them not cached, so EXEC reads through) run as one unit: another client
// reading both in a transaction always sees their sum unchanged, and the
// final counts are exact. A tiny cache makes every EXEC load and evict.
func TestTransactionAtomic(t *testing.T) {
	sp := startServer(t, "--cache-entries", "2000")
	ctx := testCtx(t)
	const users, moves = 50, 400
	setup := sp.goRedis(t, 2)
	for u := range users {
		if err := setup.Do(ctx, "RSINCR", u, 1, 1000).Err(); err != nil {
			t.Fatal(err)
		}
	}
	// Push them out of the cache, so transactions read through.
	for i := range 5000 {
		setup.Do(ctx, "RSGET", 1_000_000+i, 1)
	}
	var wg sync.WaitGroup
	errs := make(chan string, 100)
	done := make(chan struct{})
	for w := range 4 {
		c := sp.goRedis(t, 2)
		wg.Go(func() {
			for i := range moves {
				u := (i*7 + w) % users
				_, err := c.TxPipelined(ctx, func(p redis.Pipeliner) error {
					p.Do(ctx, "RSINCR", u, 1, -1)
					p.Do(ctx, "RSINCR", u, 2, 1)
					return nil
				})
				if err != nil {
					errs <- "move: " + err.Error()
					return
				}
			}
		})
	}
	reader := sp.goRedis(t, 3)
	var readerWG sync.WaitGroup
	reads := 0
	readerWG.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-done:
				return
			default:
			}
			u := i % users
			var a, b *redis.Cmd
			if _, err := reader.TxPipelined(ctx, func(p redis.Pipeliner) error {
				a = p.Do(ctx, "RSGET", u, 1)
				b = p.Do(ctx, "RSGET", u, 2)
				return nil
			}); err != nil {
				errs <- "read: " + err.Error()
				return
			}
			av, _ := a.Result()
			bv, _ := b.Result()
			if sum := first(av) + first(bv); sum != 1000 {
				errs <- "user " + strconv.Itoa(u) + ": read " + fmt.Sprint(av) + " and " + fmt.Sprint(bv) + " in one transaction: a move was seen half done"
				return
			}
			reads++
		}
	})
	wg.Wait()
	close(done)
	readerWG.Wait()
	close(errs)
	for e := range errs {
		t.Fatal(e)
	}
	total := int64(0)
	for u := range users {
		v, err := setup.Do(ctx, "RSMGET", u, 1, 2).Result()
		if err != nil {
			t.Fatal(err)
		}
		l := v.([]any)
		a, b := first(l[0]), first(l[1])
		if a+b != 1000 {
			t.Errorf("user %d: %d + %d after the moves, want 1000", u, a, b)
		}
		total += b
	}
	if total != 4*moves {
		t.Errorf("%d moves made, want %d", total, 4*moves)
	}
	t.Logf("%d moves, %d transactional reads, all consistent", 4*moves, reads)
}

// first returns the mention_count of an RSGET reply.
func first(v any) int64 {
	l, ok := v.([]any)
	if !ok || len(l) == 0 {
		return -1
	}
	n, _ := l[0].(int64)
	return n
}
