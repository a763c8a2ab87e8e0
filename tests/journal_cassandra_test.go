//go:build cassandra

package tests

import (
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The clock scenario on a real node: the first run's clock is ten minutes
// ahead; the stamps come back from the node (WRITETIME), so the second
// run's reset is written above them.
func TestCassandraClockStepBack(t *testing.T) {
	requireCassandra(t)
	ks := cassandraKeyspace(t)
	testClockStepBack(t, 10*time.Minute, func(args ...string) *serverProc { return startCassandraServer(t, ks, args...) })
}

// The journal with Cassandra, through the real binary and the real node:
//   - kill -9 under load with the node up: nothing acknowledged more than
//     about a second before the kill is lost (three runs);
//   - kill -9 under load with the node stopped for the whole of the load
//     (the read states were cached before it stopped): the same, once the
//     node and the server are back;
//   - a graceful shutdown with the node stopped: exit 0, and every
//     acknowledged change is there once the node and the server are back.
//
// The flush interval is short, so that the periodic checkpoint releases
// journal segments while the node is up and keeps them while it is down.
func TestCassandraJournal(t *testing.T) {
	const bound = 1500 * time.Millisecond // --journal-fsync 1s, plus scheduling
	requireCassandra(t)
	t.Cleanup(func() { ensureNodeUp(t, nil) }) // before the server's final flush
	ks := cassandraKeyspace(t)
	sp := startCassandraServer(t, ks, "--flush-interval", "2s", "--journal-fsync", "1s", "--shutdown-timeout", "5s")
	ctx := longCtx(t, 10*time.Minute)
	user := int64(20_000_000_000)
	var figures []string
	nodeCtl := func(action string) {
		t.Helper()
		start := time.Now()
		if out, code, err := cassandraCtl(t, action, 5*time.Minute); err != nil || code != 0 {
			t.Fatalf("cassandra.sh %s: exit %d, %v:\n%s", action, code, err, out)
		}
		t.Logf("node %s in %v", action, time.Since(start).Round(time.Second))
	}
	check := func(name string, l *incrLoad, killAt time.Time, wantNoLoss bool) {
		t.Helper()
		f := l.measure(t, ctx, sp.goRedis(t, 2), killAt)
		figures = append(figures, fmt.Sprintf("%s: %v", name, f))
		if f.acked < 1000 {
			t.Errorf("%s: only %d increments acknowledged: too few to measure", name, f.acked)
		}
		if wantNoLoss && f.lost > 0 {
			t.Errorf("%s: %d acknowledged increments lost", name, f.lost)
		}
		if f.oldestLost > bound {
			t.Errorf("%s: an increment acknowledged %v before the kill was lost (bound %v)", name, f.oldestLost, bound)
		}
	}

	for run := range 3 {
		user += 100
		l := startIncrLoad(t, sp, user, 4, 500)
		time.Sleep(4 * time.Second)
		killAt := time.Now()
		sp.kill9()
		l.halt()
		sp.restart()
		check(fmt.Sprintf("kill -9, node up, run %d", run), l, killAt, false)
	}

	user += 100
	l := startIncrLoad(t, sp, user, 4, 500) // every read state of the load is cached
	time.Sleep(time.Second)
	nodeCtl("stop")
	before := l.acked()
	time.Sleep(3 * time.Second)
	killAt := time.Now()
	sp.kill9()
	l.halt()
	if down := l.acked() - before; down < 1000 {
		t.Errorf("only %d increments acknowledged while the node was stopped: too few to measure", down)
	} else {
		figures = append(figures, fmt.Sprintf("%d increments acknowledged while the node was stopped", down))
	}
	nodeCtl("start")
	sp.restart()
	check("kill -9, node stopped for the load", l, killAt, false)

	user += 100
	l = startIncrLoad(t, sp, user, 4, 500)
	time.Sleep(time.Second)
	nodeCtl("stop")
	before = l.acked()
	time.Sleep(3 * time.Second)
	l.halt()
	if down := l.acked() - before; down < 1000 {
		t.Errorf("only %d increments acknowledged while the node was stopped: too few to measure", down)
	}
	stopAt := time.Now()
	code, err := sp.terminate(syscall.SIGTERM)
	if err != nil || code != 0 {
		t.Fatalf("SIGTERM with the node stopped: exit %d, %v; want 0 (the journal holds what was not written)", code, err)
	}
	if !strings.Contains(sp.out.String(), "kept in the journal") {
		t.Error("the log does not say that the unwritten read states are kept in the journal")
	}
	stoppedIn := time.Since(stopAt)
	nodeCtl("start")
	sp.restart()
	check("graceful shutdown, node stopped", l, stopAt, true)
	for _, f := range figures {
		t.Logf("FIGURE: Cassandra, --journal-fsync 1s: %s", f)
	}
	t.Logf("FIGURE: Cassandra stopped, SIGTERM with --shutdown-timeout 5s: exit 0 in %v", stoppedIn.Round(10*time.Millisecond))
}
