package cache

import (
	"sync"
	"testing"
)

// TestAtomically: a key that is not cached stops the transaction before fn
// runs; concurrent transactions moving counts between random pairs of
// keys, mixed with plain operations, neither deadlock nor let a reader in
// a transaction see a move half done, and keep the total.
func TestAtomically(t *testing.T) {
	tb := newTable(t, Config{Entries: 4096, Shards: 16})
	const n = 64
	keys := make([]Key, n)
	for i := range keys {
		keys[i] = Key{User: int64(i), Channel: 1}
		load(t, tb, keys[i], State{MentionCount: 100})
	}
	if k, ok := tb.Lookups(true).Atomically([]Key{keys[0], {User: 999, Channel: 1}}, func(Locked) { t.Error("fn ran with a key not cached") }); ok || k.User != 999 {
		t.Fatalf("Atomically with a missing key: %v, %v", k, ok)
	}
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range 2000 {
				a, b := keys[(i*7+w)%n], keys[(i*13+w*5+1)%n]
				if a == b {
					continue
				}
				tb.Lookups(true).Atomically([]Key{a, b}, func(l Locked) {
					if _, err := l.Incr(a, -1); err != nil {
						t.Error(err)
					}
					if _, err := l.Incr(b, 1); err != nil {
						t.Error(err)
					}
				})
			}
		})
	}
	wg.Go(func() { // a reader of the whole table, in one transaction
		for range 200 {
			tb.Lookups(true).Atomically(keys, func(l Locked) {
				sum := int32(0)
				for _, k := range keys {
					st, _ := l.Get(k)
					sum += st.MentionCount
				}
				if sum != 100*n {
					t.Errorf("a transaction saw a total of %d, want %d", sum, 100*n)
				}
			})
		}
	})
	wg.Go(func() { // plain operations in between, one shard at a time
		for i := range 5000 {
			tb.Lookups(true).Get(keys[i%n])
			tb.Lookups(true).Incr(keys[i%n], 0)
		}
	})
	wg.Wait()
	sum := int32(0)
	for _, k := range keys {
		st, _ := tb.Lookups(true).Get(k)
		sum += st.MentionCount
	}
	if sum != 100*n {
		t.Errorf("total %d after the moves, want %d", sum, 100*n)
	}
}

// TestLockedRefusesAShardNotLocked: an operation of the Locked view on a
// key whose shard the transaction did not lock, cached or not, returns
// ErrMiss and changes nothing, instead of racing with that shard's lock.
func TestLockedRefusesAShardNotLocked(t *testing.T) {
	tb := newTable(t, Config{Entries: 4096, Shards: 16})
	declared := Key{User: 1, Channel: 1}
	other := Key{User: 2, Channel: 1}
	for tb.ShardOf(other.User) == tb.ShardOf(declared.User) {
		other.User++
	}
	load(t, tb, declared, State{})
	load(t, tb, other, State{MentionCount: 7})
	if _, ok := tb.Lookups(true).Atomically([]Key{declared}, func(l Locked) {
		if _, err := l.Incr(other, 1); err != ErrMiss {
			t.Errorf("Incr of a key of a shard not locked: %v, want ErrMiss", err)
		}
		if _, err := l.Reset(other, 9, true); err != ErrMiss {
			t.Errorf("Reset of a key of a shard not locked: %v, want ErrMiss", err)
		}
		if _, err := l.Get(other); err != ErrMiss {
			t.Errorf("Get of a key of a shard not locked: %v, want ErrMiss", err)
		}
		if _, err := l.Incr(declared, 1); err != nil {
			t.Errorf("Incr of the declared key: %v", err)
		}
	}); !ok {
		t.Fatal("Atomically of a cached key did not run")
	}
	if st, err := tb.Lookups(true).Get(other); err != nil || st != (State{MentionCount: 7}) {
		t.Fatalf("the key of the other shard: %+v, %v; want it unchanged", st, err)
	}
}
