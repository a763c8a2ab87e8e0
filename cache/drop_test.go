package cache

import "testing"

// TestDrop: the read states drop accepts leave the table, clean ones
// always, dirty ones only when asked, loading ones never; the others stay
// with their states, and every probe still finds them.
func TestDrop(t *testing.T) {
	tb := newTable(t, Config{Entries: 4096})
	const users = 300
	for u := int64(0); u < users; u++ {
		for c := int64(0); c < 5; c++ {
			k := Key{User: u, Channel: c}
			load(t, tb, k, State{LastMessageID: u*10 + c})
			if c == 0 {
				if _, err := tb.Lookups(true).Incr(k, 1); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	loading := Key{User: 1, Channel: 99}
	if ok, err := tb.Reserve(loading); !ok || err != nil {
		t.Fatalf("Reserve: %v %v", ok, err)
	}
	odd := func(k Key) bool { return k.User%2 == 1 }
	dropped, kept := tb.Drop(odd, false)
	if want := users / 2 * 4; dropped != want || kept != users/2+1 {
		t.Fatalf("Drop clean: dropped %d kept %d, want %d and %d (dirty and loading)", dropped, kept, want, users/2+1)
	}
	dropped, kept = tb.Drop(odd, true)
	if dropped != users/2 || kept != 1 {
		t.Fatalf("Drop dirty too: dropped %d kept %d, want %d and 1 (loading)", dropped, kept, users/2)
	}
	for u := int64(0); u < users; u++ {
		for c := int64(0); c < 5; c++ {
			k := Key{User: u, Channel: c}
			st, err := tb.Lookups(true).Get(k)
			switch {
			case u%2 == 1 && err != ErrMiss:
				t.Fatalf("%v after Drop: %v %v, want a miss", k, st, err)
			case u%2 == 0 && (err != nil || st.LastMessageID != u*10+c):
				t.Fatalf("%v kept: %v %v", k, st, err)
			}
		}
	}
	if st := tb.Stats(); st.Dirty != users/2 {
		t.Fatalf("%d dirty after Drop, want %d", st.Dirty, users/2)
	}
}
