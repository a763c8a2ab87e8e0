package commands

import (
	"context"
	"strings"
	"testing"
	"time"
)

// changes is a ChangeSource the test fires by hand.
type changes struct{ fn func(int64) }

func (c *changes) Watch(fn func(int64)) { c.fn = fn }

func trackingSession(t *testing.T, maxKeys int) (*Dispatcher, *changes, *Session, func(args ...string) string) {
	t.Helper()
	ch := &changes{}
	d, _ := newTestDispatcher(t, func(c *Config) { c.Changes, c.TrackingTableMaxKeys = ch, maxKeys })
	s := NewSession(1, "127.0.0.1:50001", "127.0.0.1:6380", time.Now())
	run := func(args ...string) string {
		w := &bufWriter{}
		a := make([][]byte, len(args))
		for i, x := range args {
			a[i] = []byte(x)
		}
		d.Dispatch(context.Background(), w, s, a)
		// The batch ends, as a driver ends it, but the tests take the
		// pushes themselves.
		s.push.mu.Lock()
		s.push.busy = false
		s.push.mu.Unlock()
		return string(w.b)
	}
	run("HELLO", "3")
	return d, ch, s, run
}

const push42 = ">2\r\n$10\r\ninvalidate\r\n*1\r\n$2\r\n42\r\n"

func TestTrackingPlacement(t *testing.T) {
	_, ch, s, run := trackingSession(t, 0)
	if got := run("CLIENT", "TRACKING", "ON"); got != "+OK\r\n" {
		t.Fatalf("CLIENT TRACKING ON: %q", got)
	}
	run("RSGET", "42", "7") // tracks 42
	ch.fn(42)               // a change before the next command
	ch.fn(43)               // not tracked: nothing
	b := []byte("prev\r\n")
	m := s.Mark(len(b))
	w := &bufWriter{b: b}
	s.BeginBatch()
	// The next read, which the change came before: the push goes first.
	w.b = append(w.b, run("RSGET", "42", "8")...)
	w.b = s.PlacePushes(w.b, m)
	if got, want := string(w.b), "prev\r\n"+push42+"*2\r\n:0\r\n:0\r\n"; got != want {
		t.Fatalf("a change before the command: %q, want %q", got, want)
	}
	// A change while the command runs: before and after its reply.
	m = s.Mark(len(w.b))
	reply := run("RSGET", "42", "7")
	ch.fn(42) // the read registered 42 again
	w.b = append(w.b, reply...)
	w.b = s.PlacePushes(w.b, m)
	if got := strings.Count(string(w.b), push42); got != 3 {
		t.Fatalf("a change during the command: %q, want its push before and after the reply", w.b)
	}
	var sent []byte
	if err := s.EndBatch(nil, func(b []byte) error { sent = b; return nil }); err != nil || len(sent) != 0 {
		t.Fatalf("EndBatch with nothing queued: %q, %v", sent, err)
	}
	// Between batches: the pusher is called; TakePushes gives the push.
	pushed := 0
	s.SetPusher(func(take func([]byte) []byte) { pushed++ })
	run("RSGET", "42", "7")
	ch.fn(42)
	if pushed != 1 {
		t.Fatalf("pusher called %d times for a change between batches, want 1", pushed)
	}
	if got := string(s.TakePushes(nil)); got != push42 {
		t.Fatalf("TakePushes: %q", got)
	}
	ch.fn(42) // no longer tracked until read again
	if got := string(s.TakePushes(nil)); got != "" {
		t.Fatalf("a second change before a new read sent %q", got)
	}
	run("CLIENT", "TRACKING", "OFF")
	run("RSGET", "42", "7")
	ch.fn(42)
	if got := string(s.TakePushes(nil)); got != "" {
		t.Fatalf("after CLIENT TRACKING OFF: %q", got)
	}
}

func TestTrackingOptInOut(t *testing.T) {
	_, ch, s, run := trackingSession(t, 0)
	for _, c := range []struct{ args, want string }{
		{"CLIENT CACHING YES", "-ERR CLIENT CACHING can be called only when the client is in tracking mode with OPTIN or OPTOUT mode enabled\r\n"},
		{"CLIENT TRACKING ON OPTIN OPTOUT", "-ERR You can't use both OPTIN and OPTOUT\r\n"},
		{"CLIENT TRACKING ON BCAST", "-ERR CLIENT TRACKING BCAST and PREFIX are not supported by this server\r\n"},
		{"CLIENT TRACKING ON REDIRECT 5", "-ERR CLIENT TRACKING REDIRECT is not supported by this server (it needs Pub/Sub): use RESP3 (HELLO 3) and receive the invalidations on the same connection\r\n"},
		{"CLIENT GETREDIR", ":-1\r\n"},
		{"CLIENT TRACKING ON OPTIN NOLOOP", "+OK\r\n"},
		{"CLIENT GETREDIR", ":0\r\n"},
		{"CLIENT CACHING NO", "-ERR CLIENT CACHING NO is only valid when tracking is enabled in OPTOUT mode.\r\n"},
	} {
		if got := run(strings.Fields(c.args)...); got != c.want {
			t.Errorf("%s: %q, want %q", c.args, got, c.want)
		}
	}
	run("RSGET", "42", "7") // OPTIN without CACHING YES: not tracked
	ch.fn(42)
	if got := string(s.TakePushes(nil)); got != "" {
		t.Fatalf("OPTIN, read without CLIENT CACHING YES, then a change: %q", got)
	}
	run("CLIENT", "CACHING", "YES")
	if got := run("CLIENT", "TRACKINGINFO"); !strings.Contains(got, "caching-yes") {
		t.Errorf("CLIENT TRACKINGINFO after CACHING YES: %q", got)
	}
	run("CLIENT", "CACHING", "YES")
	run("RSGET", "42", "7")
	ch.fn(42)
	if got := string(s.TakePushes(nil)); got != push42 {
		t.Fatalf("OPTIN after CLIENT CACHING YES: %q", got)
	}
	run("CLIENT", "TRACKING", "OFF") // as Redis: no switch from OPTIN to OPTOUT while on
	run("CLIENT", "TRACKING", "ON", "OPTOUT")
	run("CLIENT", "CACHING", "NO")
	run("RSGET", "42", "7") // not tracked
	ch.fn(42)
	run("RSGET", "42", "7") // tracked
	ch.fn(42)
	if got := string(s.TakePushes(nil)); got != push42 {
		t.Fatalf("OPTOUT: %q, want one invalidation", got)
	}
}

func TestTrackingRESP2Refused(t *testing.T) {
	_, _, _, run := trackingSession(t, 0)
	run("HELLO", "2")
	if got := run("CLIENT", "TRACKING", "ON"); !strings.HasPrefix(got, "-ERR CLIENT TRACKING needs RESP3") {
		t.Fatalf("CLIENT TRACKING ON in RESP2: %q", got)
	}
}

// TestTrackingTableBound: past TrackingTableMaxKeys users, the table
// forgets some, and tells their clients to drop them.
func TestTrackingTableBound(t *testing.T) {
	d, _, s, run := trackingSession(t, 2)
	run("CLIENT", "TRACKING", "ON")
	for _, u := range []string{"1", "2", "3", "4"} {
		run("RSGET", u, "1")
	}
	d.tracker.mu.Lock()
	n := len(d.tracker.mu.users)
	d.tracker.mu.Unlock()
	if n > 2 {
		t.Fatalf("%d users tracked, want at most 2", n)
	}
	if got := strings.Count(string(s.TakePushes(nil)), "invalidate"); got != 2 {
		t.Fatalf("%d invalidations for the users forgotten, want 2", got)
	}
}

// TestTrackingOffLeavesNothing: a session that turns tracking off, or
// goes, is in no user's list, and the users only it tracked are gone.
func TestTrackingOffLeavesNothing(t *testing.T) {
	d, ch, s, run := trackingSession(t, 0)
	other := NewSession(2, "127.0.0.1:50002", "127.0.0.1:6380", time.Now())
	runOther := func(args ...string) {
		a := make([][]byte, len(args))
		for i, x := range args {
			a[i] = []byte(x)
		}
		d.Dispatch(context.Background(), &bufWriter{}, other, a)
	}
	runOther("HELLO", "3")
	runOther("CLIENT", "TRACKING", "ON")
	run("CLIENT", "TRACKING", "ON")
	for _, u := range []string{"1", "2", "3"} {
		run("RSGET", u, "1")
	}
	runOther("RSGET", "2", "1")
	users := func() map[int64]int {
		d.tracker.mu.Lock()
		defer d.tracker.mu.Unlock()
		m := map[int64]int{}
		for u, l := range d.tracker.mu.users {
			m[u] = len(l)
		}
		return m
	}
	if got := users(); len(got) != 3 || got[2] != 2 {
		t.Fatalf("tracked before OFF: %v, want users 1, 2 (twice), 3", got)
	}
	run("CLIENT", "TRACKING", "OFF")
	if got := users(); len(got) != 1 || got[2] != 1 {
		t.Fatalf("tracked after OFF: %v, want user 2 once (the other session)", got)
	}
	ch.fn(2)
	if got := string(s.TakePushes(nil)); got != "" {
		t.Fatalf("pushes after OFF: %q", got)
	}
	run("CLIENT", "TRACKING", "ON")
	run("RSGET", "3", "1")
	d.Closed(s)
	runOther("RSGET", "1", "1")
	d.Closed(other)
	if got := users(); len(got) != 0 {
		t.Fatalf("tracked after both closed: %v", got)
	}
	if n := d.tracker.active.Load(); n != 0 {
		t.Fatalf("%d sessions counted as tracking, want 0", n)
	}
}

// BenchmarkTracking is the cost of a tracked RSGET (registration in the
// tracking table) against an untracked one, and of a change that
// invalidates a tracking client.
func BenchmarkTracking(b *testing.B) {
	for _, on := range []bool{false, true} {
		name := map[bool]string{false: "off", true: "on"}[on]
		b.Run("rsget-"+name, func(b *testing.B) {
			ch := &changes{}
			d, _ := newTestDispatcher(b, func(c *Config) { c.Changes = ch })
			s := NewSession(1, "127.0.0.1:50001", "127.0.0.1:6380", time.Now())
			w := &bufWriter{}
			d.Dispatch(context.Background(), w, s, [][]byte{[]byte("HELLO"), []byte("3")})
			if on {
				d.Dispatch(context.Background(), w, s, [][]byte{[]byte("CLIENT"), []byte("TRACKING"), []byte("ON")})
			}
			args := [][]byte{[]byte("RSGET"), []byte("42"), []byte("7")}
			b.ReportAllocs()
			for b.Loop() {
				w.b = w.b[:0]
				d.Dispatch(context.Background(), w, s, args)
				if on {
					ch.fn(42)
					s.TakePushes(w.b[:0])
				}
			}
		})
	}
}

// TestTrackingOnInsideBatch: a batch that began with tracking off (so its
// driver did not call BeginBatch) turns it on and reads: an invalidation
// queued before the batch ends waits for EndBatch, after the batch's
// replies, instead of going to the pusher ahead of them.
func TestTrackingOnInsideBatch(t *testing.T) {
	ch := &changes{}
	d, _ := newTestDispatcher(t, func(c *Config) { c.Changes = ch })
	s := NewSession(1, "127.0.0.1:50001", "127.0.0.1:6380", time.Now())
	pushed := 0
	s.SetPusher(func(take func([]byte) []byte) { pushed += strings.Count(string(take(nil)), "invalidate") })
	w := &bufWriter{}
	for _, cmd := range [][]string{
		{"HELLO", "3"},
		{"CLIENT", "TRACKING", "ON"}, {"CLIENT", "TRACKING", "OFF"}, // the pusher is set, no push ever queued
		{"CLIENT", "TRACKING", "ON"}, {"RSGET", "42", "7"},
	} {
		if cmd[0] == "CLIENT" && cmd[2] == "ON" && s.Tracking() {
			t.Fatal("tracking off, but the session reports it may be sent invalidations")
		}
		a := make([][]byte, len(cmd))
		for i, x := range cmd {
			a[i] = []byte(x)
		}
		d.Dispatch(context.Background(), w, s, a)
	}
	ch.fn(42) // another client's change, while the batch is still running
	if pushed != 0 {
		t.Fatalf("%d invalidations sent while the batch ran, ahead of its replies", pushed)
	}
	var out []byte
	if err := s.EndBatch(w.b, func(b []byte) error { out = b; return nil }); err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(string(out), push42) {
		t.Fatalf("batch delivered %q, want its replies then the invalidation", out)
	}
	ch.fn(42) // between batches, not tracked any more: nothing
	if pushed != 0 {
		t.Fatalf("%d invalidations sent for a user the client no longer tracks", pushed)
	}
}

// TestTrackingModeSwitch: as Redis, OPTIN and OPTOUT cannot be switched
// without turning tracking off first; the mode stays.
func TestTrackingModeSwitch(t *testing.T) {
	_, _, s, run := trackingSession(t, 0)
	run("CLIENT", "TRACKING", "ON", "OPTIN")
	if got := run("CLIENT", "TRACKING", "ON", "OPTOUT"); !strings.HasPrefix(got, "-ERR You can't switch OPTIN/OPTOUT mode") {
		t.Fatalf("OPTIN to OPTOUT: %q", got)
	}
	if s.track.Load() != trackOptIn {
		t.Fatal("the refused switch changed the mode")
	}
	run("CLIENT", "TRACKING", "OFF")
	if got := run("CLIENT", "TRACKING", "ON", "OPTOUT"); got != "+OK\r\n" {
		t.Fatalf("OPTOUT after OFF: %q", got)
	}
}
