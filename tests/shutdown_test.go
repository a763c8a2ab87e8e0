package tests

import (
	"context"
	"io"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The graceful shutdown's durability (issue #10, parts 2 and 3): the
// final flush has a budget of its own that no client can eat into, and
// once a shutdown has started, further SIGTERMs or SIGINTs cannot kill
// the process before its acknowledged changes are written.
//
// Each scenario runs with the default flags and again with
// --journal=false: without a journal to replay at the next start, only the
// final flush can keep the acknowledged change. --flush-interval is long
// so that the write-behind cannot write the change first and hide a final
// flush that failed.

var shutdownJournalVariants = []struct {
	name string
	args []string
}{
	{"journal", nil},
	{"nojournal", []string{"--journal=false"}},
}

// startFunc starts a server with args (startServer, or one on Cassandra).
type startFunc func(t *testing.T, args ...string) *serverProc

func startPebble(t *testing.T, args ...string) *serverProc { return startServer(t, args...) }

// TestShutdownSlowReaderKeepsFlushBudget: a client that pipelines
// requests and never reads its replies holds the drain until
// --drain-timeout; the final flush still gets its own --shutdown-timeout,
// so the acknowledged change is written and the exit is clean.
func TestShutdownSlowReaderKeepsFlushBudget(t *testing.T) {
	for _, v := range shutdownJournalVariants {
		t.Run(v.name, func(t *testing.T) {
			slowReaderShutdown(t, startPebble, nil, v.args...)
		})
	}
}

// TestShutdownSignalDuringShutdown: SHUTDOWN starts the shutdown and a
// SIGTERM arrives while it drains (systemd and Kubernetes send one); or a
// SIGTERM starts it and a second one follows. The later signal is logged
// and ignored, the process exits 0 and the change is written.
func TestShutdownSignalDuringShutdown(t *testing.T) {
	for _, first := range []string{"SHUTDOWN", "SIGTERM"} {
		for _, v := range shutdownJournalVariants {
			t.Run(first+"/"+v.name, func(t *testing.T) {
				signalDuringShutdown(t, startPebble, first, nil, v.args...)
			})
		}
	}
}

// slowReaderShutdown is the scenario of
// TestShutdownSlowReaderKeepsFlushBudget. afterExit, if set, checks the
// store once the process has exited, before the restart.
func slowReaderShutdown(t *testing.T, start startFunc, afterExit func(t *testing.T), extra ...string) {
	const drain = time.Second
	args := append([]string{
		"--client-write-timeout", "0", // the server never gives up on the reader itself
		"--flush-interval", "1h",
		"--shutdown-timeout", "20s",
		"--drain-timeout", drain.String(),
	}, extra...)
	sp := start(t, args...)
	ctx := testCtx(t)
	ackProbe(t, ctx, sp)
	stallServer(t, sp)

	t0 := time.Now()
	code, err := sp.terminate(syscall.SIGTERM)
	took := time.Since(t0)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("exit %d, %v after SIGTERM", code, took.Round(time.Millisecond))
	if code != 0 {
		t.Errorf("exit code after SIGTERM: got %d, want 0", code)
	}
	log := sp.out.String()
	if strings.Contains(log, "not written") {
		t.Error(`the log says read states were "not written" at shutdown`)
	}
	if !strings.Contains(log, "drain timed out") {
		t.Error("the stalled client did not hold the drain to --drain-timeout (no \"drain timed out\" in the log)")
	}
	// Generous: the drain's 1 s, the final flush of one read state and a
	// race build's exit. Without a budget of its own, the drain lasts
	// --shutdown-timeout (20 s), and leaves the final flush none.
	if took > 15*time.Second {
		t.Errorf("exit %v after SIGTERM, want about --drain-timeout (%v) plus the final flush", took, drain)
	}
	if afterExit != nil {
		afterExit(t)
	}
	sp.restart()
	checkProbe(t, ctx, sp, "after SIGTERM with a stalled client and a restart")
}

// signalDuringShutdown is the scenario of TestShutdownSignalDuringShutdown:
// first ("SHUTDOWN" or "SIGTERM") starts the shutdown, a SIGTERM follows
// 1 s later. afterExit is as for slowReaderShutdown.
func signalDuringShutdown(t *testing.T, start startFunc, first string, afterExit func(t *testing.T), extra ...string) {
	// The stalled client makes the shutdown last the drain's 3 s, so the
	// SIGTERM lands in the middle of it.
	args := append([]string{
		"--client-write-timeout", "0",
		"--flush-interval", "1h",
		"--drain-timeout", "3s",
	}, extra...)
	sp := start(t, args...)
	ctx := testCtx(t)
	ackProbe(t, ctx, sp)
	stallServer(t, sp)

	switch first {
	case "SHUTDOWN":
		sendShutdownCommand(t, sp)
	case "SIGTERM":
		sendSignal(t, sp, syscall.SIGTERM)
	default:
		t.Fatalf("test bug: first %q", first)
	}
	time.Sleep(time.Second)
	if !sp.running() {
		t.Fatalf("the server exited (%v) within 1 s of %s: the stalled client did not hold the drain, the test proves nothing", sp.state, first)
	}
	sendSignal(t, sp, syscall.SIGTERM)
	code, ok := sp.exited(stopTimeout)
	if !ok {
		t.Fatalf("server still running %v after %s and SIGTERM", stopTimeout, first)
	}
	if code != 0 {
		t.Errorf("exit code after %s then SIGTERM: got %d (%v), want 0", first, code, sp.state)
	}
	log := sp.out.String()
	if !strings.Contains(log, "signal ignored") {
		t.Errorf("the log does not say the SIGTERM during the shutdown was ignored")
	}
	if strings.Contains(log, "not written") {
		t.Error(`the log says read states were "not written" at shutdown`)
	}
	if afterExit != nil {
		afterExit(t)
	}
	sp.restart()
	checkProbe(t, ctx, sp, "after "+first+", SIGTERM during the shutdown and a restart")
}

// ackProbe makes the change the scenarios must keep: (42, 7) gets 5
// mentions.
func ackProbe(t *testing.T, ctx context.Context, sp *serverProc) {
	t.Helper()
	c := sp.goRedis(t, 2)
	n, err := c.Do(ctx, "RSINCR", 42, 7, 5).Int64()
	if err != nil || n != 5 {
		t.Fatalf("RSINCR 42 7 5: got %d, %v; want 5", n, err)
	}
}

// checkProbe checks the change ackProbe made.
func checkProbe(t *testing.T, ctx context.Context, sp *serverProc, when string) {
	t.Helper()
	v, err := sp.goRedis(t, 2).Do(ctx, "RSGET", 42, 7).Result()
	if err != nil {
		t.Fatalf("RSGET 42 7 %s: %v", when, err)
	}
	got, err := asInt64s(v)
	if err != nil || len(got) != 2 || got[0] != 5 || got[1] != 0 {
		t.Errorf("RSGET 42 7 %s: got %v (%v), want [5 0]: the acknowledged RSINCR was lost", when, v, err)
	}
}

// stallServer opens a raw connection that pipelines requests without ever
// reading the replies: the server reads and runs them all (it reads on
// while replies wait, up to --client-output-limit), and holds far more
// replies than the socket buffers take, so with --client-write-timeout 0
// it waits on that connection for as long as it is allowed to. The
// connection stays open until the test ends.
func stallServer(t *testing.T, sp *serverProc) {
	t.Helper()
	c := sp.dial(t)
	// RSMGETs of one cached read state, many times over: twice as many
	// bytes of replies as of requests.
	args := []string{"RSMGET", "1"}
	for range 1000 {
		args = append(args, "1")
	}
	chunk := []byte(strings.Repeat(respCmd(args...), 8)) // 56 KB of requests, 112 KB of replies
	const most = 12 << 20                                // 24 MiB of replies: below the output limit, above any socket buffer
	_ = c.SetWriteDeadline(time.Now().Add(30 * time.Second))
	for written := 0; written < most; written += len(chunk) {
		if _, err := c.Write(chunk); err != nil {
			t.Fatalf("stalled client: write after %d bytes: %v (the server must read on while replies wait)", written, err)
		}
	}
	// Let the server run what it read; it then has megabytes of replies
	// the client does not take.
	time.Sleep(300 * time.Millisecond)
}

// sendShutdownCommand sends SHUTDOWN on a connection of its own. Whatever
// comes back (nothing, or the connection closed) is accepted: the
// shutdown itself is what the caller checks.
func sendShutdownCommand(t *testing.T, sp *serverProc) {
	t.Helper()
	sp.out.marker("sending SHUTDOWN")
	c := sp.dial(t)
	if _, err := io.WriteString(c, respCmd("SHUTDOWN")); err != nil {
		t.Fatalf("SHUTDOWN: %v", err)
	}
}

// sendSignal sends sig without waiting for the exit (sp.terminate waits).
func sendSignal(t *testing.T, sp *serverProc, sig os.Signal) {
	t.Helper()
	sp.out.marker("sending %v", sig)
	if err := sp.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("sending %v: %v", sig, err)
	}
}
