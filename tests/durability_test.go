package tests

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// rsget reads one read state with go-redis.
func rsget(t testing.TB, ctx context.Context, c *redis.Client, u, ch int64) state {
	t.Helper()
	v, err := c.Do(ctx, "RSGET", u, ch).Result()
	if err != nil {
		t.Fatalf("RSGET %d %d: %v", u, ch, err)
	}
	xs, err := asInt64s(v)
	if err != nil || len(xs) != 2 {
		t.Fatalf("RSGET %d %d: reply %v (%v)", u, ch, v, err)
	}
	return state{xs[0], xs[1]}
}

func doInt(t testing.TB, ctx context.Context, c *redis.Client, args ...any) int64 {
	t.Helper()
	n, err := c.Do(ctx, args...).Int64()
	if err != nil {
		t.Fatalf("%v: %v", args, err)
	}
	return n
}

// The clock scenario of an outside review: a run with the clock an hour
// ahead, then a run on the true clock whose acknowledged reset was written
// below the stored stamp and silently lost. Each run is a process of its
// own, ended with SIGTERM (every change written).
func TestClockStepBack(t *testing.T) {
	testClockStepBack(t, time.Hour, func(args ...string) *serverProc { return startServer(t, args...) })
}

// testClockStepBack runs the three runs on servers that start returns
// (the second and third restart the first with other flags).
func testClockStepBack(t *testing.T, ahead time.Duration, start func(args ...string) *serverProc) {
	ctx := testCtx(t)
	sp := start("--clock-offset", ahead.String())
	c := sp.goRedis(t, 2)
	if n := doInt(t, ctx, c, "RSINCR", 42, 7, 5); n != 5 {
		t.Fatalf("RSINCR 42 7 5: %d", n)
	}
	sp.stop()
	sp.args = withoutFlag(sp.args, "--clock-offset")
	sp.restart()
	// The warm restart reads user 42 back; a reset racing it may read the
	// stored row a second time, and each read counts the stamp.
	sp.waitLog("warm restart done", 1, 30*time.Second)
	c = sp.goRedis(t, 2)
	if n := doInt(t, ctx, c, "RSRESET", 42, 7, 1100); n != 5 {
		t.Fatalf("RSRESET 42 7 1100: %d, want 5", n)
	}
	if got := rsget(t, ctx, c, 42, 7); got != (state{0, 1100}) {
		t.Fatalf("read back %v", got)
	}
	if info := c.Info(ctx, "persistence").Val(); !strings.Contains(info, "stamps_ahead_of_clock_total:1") {
		t.Errorf("INFO persistence does not count the stamp ahead of the clock:\n%s", info)
	}
	sp.stop()
	if !strings.Contains(sp.out.String(), "stored write stamp is ahead of the wall clock") {
		t.Error("no warning logged for a stored stamp an hour ahead")
	}
	sp.restart()
	c = sp.goRedis(t, 2)
	if got := rsget(t, ctx, c, 42, 7); got != (state{0, 1100}) {
		t.Fatalf("third run: RSGET 42 7 = %v, want [0 1100] (the acknowledged reset was lost)", got)
	}
}

// withoutFlag drops a flag and its value from args.
func withoutFlag(args []string, name string) []string {
	var out []string
	for i := 0; i < len(args); i++ {
		if args[i] == name {
			i++
			continue
		}
		out = append(out, args[i])
	}
	return out
}

// incrLoad sends RSINCR ... 1 from several connections, each over read
// states of its own, and keeps the time of every acknowledged increment:
// after a crash, a read state's count says how many of its increments
// survived, and the lost ones are the newest.
type incrLoad struct {
	mu    sync.Mutex
	acks  map[[2]int64][]time.Time
	inFly map[[2]int64]bool // an increment sent, not answered (may or may not count)
	wg    sync.WaitGroup
	stop  chan struct{}
}

func startIncrLoad(t *testing.T, sp *serverProc, userBase int64, workers, keysPer int) *incrLoad {
	t.Helper()
	l := &incrLoad{acks: map[[2]int64][]time.Time{}, inFly: map[[2]int64]bool{}, stop: make(chan struct{})}
	for w := range workers {
		c := sp.goRedis(t, 2, func(o *redis.Options) { o.PoolSize = 1; o.ReadTimeout = 5 * time.Second })
		// Every read state is read once first, so that it is cached: a
		// load that goes on while the database is down needs that. One
		// RSMGET reads a user's misses concurrently.
		args := []any{"RSMGET", userBase + int64(w)}
		for i := range keysPer {
			args = append(args, i)
		}
		if err := c.Do(context.Background(), args...).Err(); err != nil {
			t.Fatalf("reading the load's read states: %v", err)
		}
		l.wg.Go(func() {
			ctx := context.Background()
			for i := 0; ; i++ {
				select {
				case <-l.stop:
					return
				default:
				}
				k := [2]int64{userBase + int64(w), int64(i % keysPer)}
				l.mu.Lock()
				l.inFly[k] = true
				l.mu.Unlock()
				err := c.Do(ctx, "RSINCR", k[0], k[1], 1).Err()
				_, refused := err.(redis.Error) // TRYAGAIN and the like: nothing changed
				l.mu.Lock()
				if err == nil {
					l.acks[k] = append(l.acks[k], time.Now())
				}
				if err == nil || refused {
					delete(l.inFly, k)
				}
				l.mu.Unlock()
				switch {
				case refused:
					time.Sleep(time.Millisecond)
				case err != nil:
					return // the server is gone
				}
			}
		})
	}
	return l
}

// acked is how many increments were acknowledged so far.
func (l *incrLoad) acked() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, a := range l.acks {
		n += len(a)
	}
	return n
}

func (l *incrLoad) halt() { close(l.stop); l.wg.Wait() }

// crashFigures is what a crash lost of an incrLoad.
type crashFigures struct {
	acked, lost, wrong int
	oldestLost         time.Duration // before the kill
}

func (f crashFigures) String() string {
	return fmt.Sprintf("%d increments acknowledged, %d lost, oldest lost acknowledged %v before the kill",
		f.acked, f.lost, f.oldestLost.Round(time.Millisecond))
}

// measure reads every read state of the load after a crash at killAt.
func (l *incrLoad) measure(t *testing.T, ctx context.Context, c *redis.Client, killAt time.Time) crashFigures {
	t.Helper()
	var f crashFigures
	keys := make([][2]int64, 0, len(l.acks))
	for k := range l.acks {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		return keys[i][0] < keys[j][0] || keys[i][0] == keys[j][0] && keys[i][1] < keys[j][1]
	})
	for _, k := range keys {
		acks := l.acks[k]
		f.acked += len(acks)
		got := int(rsget(t, ctx, c, k[0], k[1]).mentions)
		extra := 0
		if l.inFly[k] {
			extra = 1
		}
		switch {
		case got > len(acks)+extra:
			f.wrong++
			t.Errorf("read state %v: count %d after the crash, but only %d increments were sent", k, got, len(acks)+extra)
		case got < len(acks):
			f.lost += len(acks) - got
			f.oldestLost = max(f.oldestLost, killAt.Sub(acks[got]))
		}
	}
	return f
}

// kill -9 under load with the journal at everysec, on the embedded store
// with a flush interval far longer than the run: without the journal
// every change since the start would be lost; with it, nothing
// acknowledged more than about a second before the kill.
func TestKill9LosesAtMostOneSecond(t *testing.T) {
	const bound = 1500 * time.Millisecond // 1 s of fsync interval, plus scheduling
	for run := range 3 {
		t.Run(fmt.Sprint("run ", run), func(t *testing.T) {
			sp := startServer(t, "--flush-interval", "1h", "--journal-fsync", "1s")
			l := startIncrLoad(t, sp, 100+int64(run)*100, 4, 500)
			time.Sleep(3 * time.Second)
			killAt := time.Now()
			sp.kill9()
			l.halt()
			sp.restart()
			ctx := testCtx(t)
			f := l.measure(t, ctx, sp.goRedis(t, 2), killAt)
			t.Logf("FIGURE: embedded store, --journal-fsync 1s, kill -9 under load: %v", f)
			if f.acked < 1000 {
				t.Errorf("only %d increments acknowledged: too few to measure", f.acked)
			}
			if f.oldestLost > bound {
				t.Errorf("an increment acknowledged %v before kill -9 was lost (bound %v)", f.oldestLost, bound)
			}
		})
	}
}

// The journal's corruption rules through the binary: a torn tail is cut
// with a warning and the server starts, losing only the torn record; a
// corrupt record in the middle stops the start with the file and offset,
// and --journal-repair starts past it.
func TestJournalDamage(t *testing.T) {
	ctx := testCtx(t)
	dir := t.TempDir()
	sp := startServer(t, "--data-dir", dir, "--flush-interval", "1h")
	c := sp.goRedis(t, 2)
	for ch := range int64(3) {
		doInt(t, ctx, c, "RSINCR", 7, ch, 10+ch)
	}
	// INFO reports the journal as Redis reports its append-only file.
	info := c.Info(ctx, "persistence").Val()
	for _, want := range []string{"aof_enabled:1", "aof_fsync:1s", "aof_appended_records:3", "aof_last_write_status:ok"} {
		if !strings.Contains(info, want+"\r\n") {
			t.Errorf("INFO persistence lacks %q:\n%s", want, info)
		}
	}
	time.Sleep(200 * time.Millisecond) // the journal writes every 10 ms
	sp.kill9()
	seg := newestSegment(t, filepath.Join(dir, "journal"))
	whole, err := os.ReadFile(seg)
	if err != nil {
		t.Fatal(err)
	}
	if len(whole) != 8+3*40 {
		t.Fatalf("journal segment of %d bytes, want a header and 3 records", len(whole))
	}
	// Each case starts on a data directory of its own holding only the
	// damaged segment.
	startOn := func(data []byte, args ...string) *serverProc {
		d := t.TempDir()
		if err := os.MkdirAll(filepath.Join(d, "journal"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, "journal", filepath.Base(seg)), data, 0o644); err != nil {
			t.Fatal(err)
		}
		return startServer(t, append([]string{"--data-dir", d}, args...)...)
	}
	for _, cut := range []int{1, 20, 39} {
		sp := startOn(whole[:len(whole)-cut])
		c := sp.goRedis(t, 2)
		for ch, want := range []int64{10, 11, 0} { // the last record is torn
			if got := rsget(t, ctx, c, 7, int64(ch)); got.mentions != want {
				t.Fatalf("cut %d bytes: RSGET 7 %d = %v, want count %d", cut, ch, got, want)
			}
		}
		sp.stop()
		if !strings.Contains(sp.out.String(), "journal tail torn") {
			t.Fatalf("cut %d bytes: no warning of the torn tail", cut)
		}
	}
	bad := append([]byte(nil), whole...)
	bad[8+40+12] ^= 0xff // the second of three records
	sp = &serverProc{t: t, out: &logBuffer{}, dataDir: t.TempDir()}
	os.MkdirAll(filepath.Join(sp.dataDir, "journal"), 0o755)
	if err := os.WriteFile(filepath.Join(sp.dataDir, "journal", filepath.Base(seg)), bad, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := sp.launch(); err == nil {
		sp.stop()
		t.Fatal("the server started on a journal corrupt in the middle")
	}
	log := sp.out.String()
	if !strings.Contains(log, filepath.Base(seg)) || !strings.Contains(log, "offset 48") || !strings.Contains(log, "--journal-repair") {
		t.Fatalf("the refusal does not name the file, the offset and --journal-repair:\n%s", log)
	}
	sp = startOn(bad, "--journal-repair")
	c = sp.goRedis(t, 2)
	for ch, want := range []int64{10, 0, 12} {
		if got := rsget(t, ctx, c, 7, int64(ch)); got.mentions != want {
			t.Fatalf("--journal-repair: RSGET 7 %d = %v, want count %d", ch, got, want)
		}
	}
}

func newestSegment(t *testing.T, dir string) string {
	t.Helper()
	m, _ := filepath.Glob(filepath.Join(dir, "*.journal"))
	if len(m) == 0 {
		t.Fatalf("no journal segment in %s", dir)
	}
	sort.Strings(m)
	return m[len(m)-1]
}
