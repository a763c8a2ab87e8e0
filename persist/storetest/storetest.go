// Package storetest is the conformance suite of the persist.Store
// contract, which every store runs against a real instance of its
// database, and scenarios of the write-behind engine over a real store.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/readstates/readstates/cache"
	"github.com/readstates/readstates/persist"
)

// Run is the conformance suite of the persist.Store contract (see persist.Store and
// persist.Record): every implementation runs it.
//
// open is called once per subtest; the store it returns is closed by
// whoever opened it (a t.Cleanup). It may hand out one store to several
// subtests (a Cassandra keyspace is slow to create): each subtest keys its
// records under its own random user ids, except the extreme-value subtest,
// which runs once per call of Run.
func Run(t *testing.T, open func(t *testing.T) persist.Store) {
	t.Run("NeverWrittenIsZero", func(t *testing.T) {
		s := open(t)
		u := User()
		for _, k := range []cache.Key{{User: u, Channel: 1}, {User: u, Channel: math.MaxInt64}} {
			WantState(t, s, k, cache.State{})
		}
	})

	// The stamp comes back with the state: the engine's next write of the
	// key must go above it, whatever the wall clock says.
	t.Run("LoadReturnsStamp", func(t *testing.T) {
		s := open(t)
		k := cache.Key{User: User(), Channel: 9}
		wantStamp := func(want int64, st cache.State) {
			t.Helper()
			var got cache.State
			var stamp int64
			var err error
			for try := 0; try < 5; try++ { // a freshly started node may time out once
				if got, stamp, err = s.Load(t.Context(), k); err == nil {
					break
				}
			}
			if err != nil || stamp != want || got != st {
				t.Fatalf("Load(%v): got %+v stamp %d err %v, want %+v stamp %d", k, got, stamp, err, st, want)
			}
		}
		wantStamp(0, cache.State{})
		// An hour ahead of the clock, as a run with a fast clock leaves it.
		ahead := time.Now().Add(time.Hour).UnixMicro()
		Write(t, s, persist.Record{Key: k, State: cache.State{MentionCount: 5}, Stamp: ahead})
		wantStamp(ahead, cache.State{MentionCount: 5})
		Write(t, s, persist.Record{Key: k, State: cache.State{LastMessageID: 1100}, Stamp: time.Now().UnixMicro()})
		wantStamp(ahead, cache.State{MentionCount: 5}) // the lower stamp lost
		Write(t, s, persist.Record{Key: k, State: cache.State{LastMessageID: 1100}, Stamp: ahead + 1})
		wantStamp(ahead+1, cache.State{LastMessageID: 1100})
	})

	// A user's partition in one read: every record with its stamp, the
	// newest of each key, nothing of other users, at most the limit.
	t.Run("LoadUser", func(t *testing.T) {
		s := open(t)
		u := User()
		var want []persist.Record
		for c := range int64(30) {
			ch := c*1000 - 5000 // negative channel ids too
			want = append(want, persist.Record{Key: cache.Key{User: u, Channel: ch},
				State: cache.State{MentionCount: int32(c), LastMessageID: 100 + c}, Stamp: Stamp() + c})
		}
		Write(t, s, want...)
		// An older write of one key loses; the neighbours' rows stay out.
		Write(t, s, persist.Record{Key: want[3].Key, State: cache.State{MentionCount: 99}, Stamp: Stamp() - 1},
			persist.Record{Key: cache.Key{User: u + 1, Channel: 1}, State: cache.State{MentionCount: 1}, Stamp: Stamp()},
			persist.Record{Key: cache.Key{User: u - 1, Channel: 1}, State: cache.State{MentionCount: 1}, Stamp: Stamp()})
		var got []persist.Record
		if err := Retry(t, func() (err error) { got, err = s.LoadUser(t.Context(), u, 1000); return err }); err != nil {
			t.Fatalf("LoadUser: %v", err)
		}
		byKey := make(map[cache.Key]persist.Record)
		for _, r := range got {
			byKey[r.Key] = r
		}
		if len(got) != len(want) || len(byKey) != len(want) {
			t.Fatalf("LoadUser: %d records (%d keys), want %d: %+v", len(got), len(byKey), len(want), got)
		}
		for _, w := range want {
			if r, ok := byKey[w.Key]; !ok || r != w {
				t.Fatalf("LoadUser: %v is %+v, want %+v", w.Key, r, w)
			}
		}
		if err := Retry(t, func() (err error) { got, err = s.LoadUser(t.Context(), u, 7); return err }); err != nil || len(got) != 7 {
			t.Fatalf("LoadUser with limit 7: %d records, %v", len(got), err)
		}
		if err := Retry(t, func() (err error) { got, err = s.LoadUser(t.Context(), User(), 10); return err }); err != nil || len(got) != 0 {
			t.Fatalf("LoadUser of a user never written: %+v, %v", got, err)
		}
	})

	t.Run("EmptyWriteIsNoop", func(t *testing.T) {
		s := open(t)
		ctx := t.Context()
		if err := s.Write(ctx, nil); err != nil {
			t.Fatalf("Write(nil): got %v, want nil", err)
		}
		if err := s.Write(ctx, []persist.Record{}); err != nil {
			t.Fatalf("Write([]persist.Record{}): got %v, want nil", err)
		}
	})

	t.Run("RoundTripExtremes", func(t *testing.T) {
		s := open(t)
		const maxID = math.MaxInt64
		recs := []persist.Record{
			{Key: cache.Key{User: 0, Channel: 0}, State: cache.State{MentionCount: 1, LastMessageID: 2}},
			{Key: cache.Key{User: 0, Channel: maxID}, State: cache.State{MentionCount: math.MaxInt32, LastMessageID: maxID}},
			{Key: cache.Key{User: maxID, Channel: 0}, State: cache.State{MentionCount: math.MaxInt32, LastMessageID: 0}},
			{Key: cache.Key{User: maxID, Channel: maxID}, State: cache.State{MentionCount: 0, LastMessageID: maxID}},
		}
		stamp := Stamp()
		for i := range recs {
			recs[i].Stamp = stamp
		}
		Write(t, s, recs...)
		for _, r := range recs {
			WantState(t, s, r.Key, r.State)
		}
		// A newer zero State is a real value, not "absent": it must replace
		// the old one.
		zero := make([]persist.Record, len(recs))
		for i, r := range recs {
			zero[i] = persist.Record{Key: r.Key, Stamp: stamp + 1}
		}
		Write(t, s, zero...)
		for _, r := range recs {
			WantState(t, s, r.Key, cache.State{})
		}
	})

	t.Run("LastWriterWins", func(t *testing.T) {
		s := open(t)
		k := cache.Key{User: User(), Channel: 7}
		base := Stamp()
		newer := cache.State{MentionCount: 5, LastMessageID: 500}
		older := cache.State{MentionCount: 3, LastMessageID: 300}

		Write(t, s, persist.Record{Key: k, State: newer, Stamp: base + 5})
		Write(t, s, persist.Record{Key: k, State: older, Stamp: base + 3})
		WantState(t, s, k, newer)

		// A retry of an already applied write changes nothing.
		Write(t, s, persist.Record{Key: k, State: newer, Stamp: base + 5})
		WantState(t, s, k, newer)

		newest := cache.State{MentionCount: 0, LastMessageID: 700}
		Write(t, s, persist.Record{Key: k, State: newest, Stamp: base + 7})
		WantState(t, s, k, newest)

		// Within one Write, order does not matter either.
		k2 := cache.Key{User: k.User, Channel: 8}
		Write(t, s,
			persist.Record{Key: k2, State: cache.State{MentionCount: 10}, Stamp: base + 10},
			persist.Record{Key: k2, State: cache.State{MentionCount: 9}, Stamp: base + 9},
		)
		WantState(t, s, k2, cache.State{MentionCount: 10})
	})

	t.Run("ManyUsersAndChannels", func(t *testing.T) {
		s := open(t)
		const n = 1000
		stamp := Stamp()
		recs := make([]persist.Record, 0, 2*n)
		// n users with one channel each: many partitions.
		u0 := User()
		for i := range int64(n) {
			recs = append(recs, persist.Record{
				Key:   cache.Key{User: u0 + i, Channel: 42},
				State: cache.State{MentionCount: int32(i), LastMessageID: i * 1000},
				Stamp: stamp,
			})
		}
		// One user in n channels: one big partition, split into batches.
		u1 := User()
		for i := range int64(n) {
			recs = append(recs, persist.Record{
				Key:   cache.Key{User: u1, Channel: i * 7919},
				State: cache.State{MentionCount: int32(n - i), LastMessageID: math.MaxInt64 - i},
				Stamp: stamp,
			})
		}
		// The engine hands over records in no particular order.
		rand.Shuffle(len(recs), func(i, j int) { recs[i], recs[j] = recs[j], recs[i] })
		Write(t, s, recs...)
		LoadAll(t, s, recs)

		// Overwrite half with newer stamps and half with older ones.
		for i := range recs {
			if i%2 == 0 {
				recs[i].Stamp = stamp + 1
				recs[i].State.MentionCount++
			}
		}
		stale := make([]persist.Record, 0, len(recs)/2)
		for i := range recs {
			if i%2 == 1 {
				stale = append(stale, persist.Record{Key: recs[i].Key, State: cache.State{MentionCount: 12345, LastMessageID: 12345}, Stamp: stamp - 1})
			}
		}
		Write(t, s, append(stale, recs...)...)
		LoadAll(t, s, recs)
	})

	t.Run("ConcurrentWritesAndLoads", func(t *testing.T) {
		s := open(t)
		const workers, rounds = 8, 40
		user := User()
		shared := cache.Key{User: user, Channel: 1}
		// Each state carries its own stamp, so a Load shows which write it
		// observes.
		var clock atomic.Int64
		clock.Store(Stamp())
		var wg sync.WaitGroup
		errs := make(chan error, workers)
		for w := range workers {
			wg.Go(func() {
				own := cache.Key{User: user, Channel: int64(100 + w)}
				for range rounds {
					st := clock.Add(1)
					state := cache.State{MentionCount: int32(st % math.MaxInt32), LastMessageID: st}
					err := Retry(t, func() error {
						return s.Write(t.Context(), []persist.Record{
							{Key: shared, State: state, Stamp: st},
							{Key: own, State: state, Stamp: st},
						})
					})
					if err != nil {
						errs <- fmt.Errorf("write stamp %d: %w", st, err)
						return
					}
					// Read-your-writes: our write or a newer one.
					got, err := Load(t, s, shared)
					if err != nil {
						errs <- fmt.Errorf("load shared: %w", err)
						return
					}
					if got.LastMessageID < st {
						errs <- fmt.Errorf("load shared after writing stamp %d: got stamp %d", st, got.LastMessageID)
						return
					}
					got, err = Load(t, s, own)
					if err != nil {
						errs <- fmt.Errorf("load own: %w", err)
						return
					}
					if got != state {
						errs <- fmt.Errorf("load own %v: got %+v, want %+v", own, got, state)
						return
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		last := clock.Load()
		WantState(t, s, shared, cache.State{MentionCount: int32(last % math.MaxInt32), LastMessageID: last})
	})
}

// Stamp returns the base Stamp of a subtest: a realistic value
// (about 1970 plus 13 days in microseconds) with room below it for "older"
// writes. Subtests never share keys, so they may share the base.
func Stamp() int64 { return 1 << 40 }

// User returns a user id no other subtest uses.
func User() int64 { return rand.Int64N(1<<62) + 1<<40 }

// Retry runs op until it succeeds, fails with an error other than
// persist.ErrUnavailable, or has failed 5 times. A networked store on a loaded test
// machine may time out now and then; the contract allows that ("try again
// later") and the engine retries, so the suite does too.
func Retry(t *testing.T, op func() error) error {
	var err error
	for attempt := 1; attempt <= 5; attempt++ {
		if err = op(); !errors.Is(err, persist.ErrUnavailable) {
			return err
		}
		t.Logf("attempt %d: %v (retrying)", attempt, err)
		time.Sleep(time.Duration(attempt) * 200 * time.Millisecond)
	}
	return err
}

func Load(t *testing.T, s persist.Store, k cache.Key) (cache.State, error) {
	var got cache.State
	err := Retry(t, func() error {
		var err error
		got, _, err = s.Load(t.Context(), k)
		return err
	})
	return got, err
}

func Write(t *testing.T, s persist.Store, recs ...persist.Record) {
	t.Helper()
	if err := Retry(t, func() error { return s.Write(t.Context(), recs) }); err != nil {
		t.Fatalf("Write of %d records: %v", len(recs), err)
	}
}

func WantState(t *testing.T, s persist.Store, k cache.Key, want cache.State) {
	t.Helper()
	got, err := Load(t, s, k)
	if err != nil {
		t.Fatalf("Load(%v): %v", k, err)
	}
	if got != want {
		t.Errorf("Load(%v): got %+v, want %+v", k, got, want)
	}
}

// LoadAll checks every record with a few concurrent readers, so a
// networked store does not take a round trip per record in sequence.
func LoadAll(t *testing.T, s persist.Store, want []persist.Record) {
	t.Helper()
	const readers = 8
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		failed []string
	)
	for r := range readers {
		wg.Go(func() {
			for i := r; i < len(want); i += readers {
				var got cache.State
				err := Retry(t, func() error {
					var err error
					got, _, err = s.Load(ctx, want[i].Key)
					return err
				})
				msg := ""
				switch {
				case err != nil:
					msg = fmt.Sprintf("Load(%v): %v", want[i].Key, err)
				case got != want[i].State:
					msg = fmt.Sprintf("Load(%v): got %+v, want %+v", want[i].Key, got, want[i].State)
				}
				if msg != "" {
					mu.Lock()
					failed = append(failed, msg)
					tooMany := len(failed) > 10
					mu.Unlock()
					if tooMany {
						cancel()
						return
					}
				}
			}
		})
	}
	wg.Wait()
	for _, f := range failed {
		t.Error(f)
	}
}
