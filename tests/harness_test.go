// Package tests holds black-box end-to-end tests of the readstates binary:
// it is built once, started as a real process per test on a free loopback
// port with its own data directory, and driven with real clients
// (redis-cli, redis-benchmark, go-redis, redis-py, Jedis, redis-rs) and
// raw RESP bytes.
//
// Environment:
//   - READSTATES_REQUIRE_CLIENTS=1 (set by CI): a missing client tool fails
//     the test that needs it instead of skipping it.
//   - READSTATES_TEST_BIN=path: use this binary instead of building one.
//   - READSTATES_SERVER_RACE=1|0: build the server with or without -race;
//     by default it follows the test binary (go test -race builds a race
//     server, so a data race in the server fails the test that hit it).
//   - READSTATES_TEST_EVENT_LOOPS=n: run the servers with --event-loops n
//     (-1: a goroutine per connection; scripts/test.sh runs both layers).
package tests

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// serverBin is the readstates binary under test, set by TestMain.
var serverBin string

const (
	readyTimeout = 30 * time.Second // from exec to the first PING reply
	stopTimeout  = 60 * time.Second // from SIGTERM to exit (a race build flushes slowly)
)

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	if bin := os.Getenv("READSTATES_TEST_BIN"); bin != "" {
		serverBin = bin
	} else {
		dir, err := os.MkdirTemp("", "readstates-tests-")
		if err != nil {
			fmt.Fprintln(os.Stderr, "tests:", err)
			return 1
		}
		defer os.RemoveAll(dir)
		serverBin = filepath.Join(dir, "readstates")
		if err := buildServer(serverBin); err != nil {
			fmt.Fprintln(os.Stderr, "tests: building the server:", err)
			return 1
		}
		// Fuzz workers are this binary started again by the fuzz
		// coordinator with its environment: they reuse this build.
		os.Setenv("READSTATES_TEST_BIN", serverBin)
	}
	code := m.Run()
	if err := stopFuzzServer(); err != nil {
		fmt.Fprintln(os.Stderr, "tests: shared fuzz server:", err)
		if code == 0 {
			code = 1
		}
	}
	return code
}

// buildServer builds ./cmd/readstates from the module root into out.
func buildServer(out string) error {
	gomod, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return fmt.Errorf("go env GOMOD: %w", err)
	}
	root := filepath.Dir(strings.TrimSpace(string(gomod)))
	if root == "." || root == "" {
		return errors.New("not inside the readstates module (go env GOMOD is empty)")
	}
	race := raceEnabled
	switch os.Getenv("READSTATES_SERVER_RACE") {
	case "1":
		race = true
	case "0":
		race = false
	}
	args := []string{"build"}
	if race {
		args = append(args, "-race")
	}
	args = append(args, "-o", out, "./cmd/readstates")
	cmd := exec.Command("go", args...)
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, b)
	}
	return nil
}

// requireTool returns the path of a client tool, or skips the test when it
// is missing (fails it when READSTATES_REQUIRE_CLIENTS=1).
func requireTool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		missingClient(t, fmt.Sprintf("%s is not on PATH", name))
	}
	return p
}

func missingClient(t testing.TB, why string) {
	t.Helper()
	if os.Getenv("READSTATES_REQUIRE_CLIENTS") == "1" {
		t.Fatalf("%s, and READSTATES_REQUIRE_CLIENTS=1", why)
	}
	t.Skipf("%s (install it, or set READSTATES_REQUIRE_CLIENTS=1 to make this a failure)", why)
}

// logBuffer collects a server's stdout and stderr. It keeps the first and
// the last part of a long log.
type logBuffer struct {
	mu      sync.Mutex
	head    bytes.Buffer
	tail    []byte
	dropped int
}

const logKeep = 256 << 10

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	written := len(p)
	if room := logKeep - b.head.Len(); room > 0 {
		n := min(room, len(p))
		b.head.Write(p[:n])
		p = p[n:]
	}
	if len(p) > 0 {
		b.tail = append(b.tail, p...)
		if over := len(b.tail) - logKeep; over > 0 {
			b.dropped += over
			b.tail = append(b.tail[:0], b.tail[over:]...)
		}
	}
	return written, nil
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.tail) == 0 {
		return b.head.String()
	}
	sep := ""
	if b.dropped > 0 {
		sep = fmt.Sprintf("\n[... %d bytes of log left out ...]\n", b.dropped)
	}
	return b.head.String() + sep + string(b.tail)
}

func (b *logBuffer) marker(format string, args ...any) {
	fmt.Fprintf(b, "=== tests: "+format+"\n", args...)
}

// serverProc is one readstates process (and the processes that follow it
// on the same data directory after restart).
type serverProc struct {
	t       testing.TB // nil for the shared fuzz server
	args    []string   // extra flags, without --addr and --data-dir
	dataDir string
	addr    string // host:port of the running process
	out     *logBuffer
	runs    int

	cmd   *exec.Cmd
	done  chan struct{} // closed when cmd has exited
	state *os.ProcessState
	// ping, if set, replaces pingOnce as the readiness probe (a TLS
	// server does not answer a plaintext PING).
	ping func(addr string) error
}

// startServer starts the binary with args on a free loopback port. Unless
// args name a --data-dir, the server gets a fresh one under t.TempDir().
// When the test ends the server is stopped with SIGTERM and must exit 0;
// if the test failed, the server's log is printed.
func startServer(t testing.TB, args ...string) *serverProc {
	t.Helper()
	return startServerPing(t, nil, args...)
}

// startServerPing is startServer with ping as the readiness probe (nil:
// a plaintext PING).
func startServerPing(t testing.TB, ping func(addr string) error, args ...string) *serverProc {
	t.Helper()
	sp := &serverProc{t: t, out: &logBuffer{}, ping: ping}
	sp.args, sp.dataDir = splitDataDir(args)
	if sp.dataDir == "" {
		sp.dataDir = t.TempDir()
	}
	t.Cleanup(func() {
		if sp.running() {
			sp.stop()
		}
		sp.checkLog()
		if t.Failed() {
			t.Logf("server log (%s):\n%s", serverBin, sp.out.String())
		}
	})
	if err := sp.launch(); err != nil {
		t.Fatalf("starting the server: %v", err)
	}
	return sp
}

// splitDataDir takes --data-dir (either form) out of args.
func splitDataDir(args []string) (rest []string, dir string) {
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case (a == "--data-dir" || a == "-data-dir") && i+1 < len(args):
			dir = args[i+1]
			i++
		case strings.HasPrefix(a, "--data-dir="), strings.HasPrefix(a, "-data-dir="):
			dir = a[strings.IndexByte(a, '=')+1:]
		default:
			rest = append(rest, a)
		}
	}
	return rest, dir
}

// launch starts a process on a fresh port and waits until it answers PING.
// A port taken between choosing it and the server binding it is retried.
func (sp *serverProc) launch() error {
	var err error
	for range 3 {
		err = sp.launchOnce()
		if err == nil || !strings.Contains(sp.out.String(), "address already in use") {
			return err
		}
	}
	return err
}

func (sp *serverProc) launchOnce() error {
	port, err := freePort()
	if err != nil {
		return err
	}
	sp.addr = net.JoinHostPort("127.0.0.1", port)
	args := append([]string{"--addr", sp.addr, "--data-dir", sp.dataDir}, sp.args...)
	sp.runs++
	sp.out.marker("run %d: %s %s", sp.runs, filepath.Base(serverBin), strings.Join(args, " "))
	cmd := exec.Command(serverBin, args...)
	cmd.Env = serverEnv()
	cmd.Stdout = sp.out
	cmd.Stderr = sp.out
	cmd.SysProcAttr = childAttr()
	if err := cmd.Start(); err != nil {
		return err
	}
	sp.cmd = cmd
	sp.done = make(chan struct{})
	sp.state = nil
	go func() {
		_ = cmd.Wait()
		sp.state = cmd.ProcessState
		close(sp.done)
	}()
	return sp.waitReady()
}

// serverEnv is this process's environment without READSTATES_*: the
// server reads its configuration from those, and a developer's own (say
// READSTATES_CASSANDRA_HOSTS) must not leak into a test.
//
// A race-built server sleeps 1 s at exit by default (GORACE
// atexit_sleep_ms) to catch late reports; the tests stop servers often, so
// it is cut to 50 ms unless GORACE sets it.
func serverEnv() []string {
	var env []string
	gorace := "atexit_sleep_ms=50"
	for _, kv := range os.Environ() {
		switch {
		case strings.HasPrefix(kv, "READSTATES_"):
		case strings.HasPrefix(kv, "GORACE="):
			if v := strings.TrimPrefix(kv, "GORACE="); strings.Contains(v, "atexit_sleep_ms") {
				gorace = v
			} else {
				gorace = v + " " + gorace
			}
		default:
			env = append(env, kv)
		}
	}
	if v := os.Getenv("READSTATES_TEST_EVENT_LOOPS"); v != "" {
		env = append(env, "READSTATES_EVENT_LOOPS="+v)
	}
	return append(env, "GORACE="+gorace)
}

func freePort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	_, port, err := net.SplitHostPort(l.Addr().String())
	return port, err
}

// waitReady polls with a real PING until the server answers (any reply:
// with --requirepass it is NOAUTH), the process exits, or readyTimeout.
func (sp *serverProc) waitReady() error {
	deadline := time.Now().Add(readyTimeout)
	var last error
	for time.Now().Before(deadline) {
		select {
		case <-sp.done:
			return fmt.Errorf("server exited before it was ready: %v", sp.state)
		default:
		}
		ping := pingOnce
		if sp.ping != nil {
			ping = sp.ping
		}
		if last = ping(sp.addr); last == nil {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("server not answering PING on %s after %v: %v", sp.addr, readyTimeout, last)
}

func pingOnce(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write([]byte("*1\r\n$4\r\nPING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if line == "" || (line[0] != '+' && line[0] != '-') {
		return fmt.Errorf("PING reply %q", line)
	}
	return nil
}

func (sp *serverProc) running() bool {
	if sp.cmd == nil {
		return false
	}
	select {
	case <-sp.done:
		return false
	default:
		return true
	}
}

// exited waits up to d for the process to exit and returns its exit code
// (-1 if it was killed by a signal).
func (sp *serverProc) exited(d time.Duration) (int, bool) {
	select {
	case <-sp.done:
		return sp.state.ExitCode(), true
	case <-time.After(d):
		return 0, false
	}
}

// terminate sends sig and waits for the exit; it returns the exit code.
func (sp *serverProc) terminate(sig os.Signal) (int, error) {
	if !sp.running() {
		return sp.state.ExitCode(), nil
	}
	sp.out.marker("sending %v", sig)
	if err := sp.cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return 0, err
	}
	code, ok := sp.exited(stopTimeout)
	if !ok {
		_ = sp.cmd.Process.Kill()
		<-sp.done
		return 0, fmt.Errorf("server still running %v after %v; killed it", stopTimeout, sig)
	}
	return code, nil
}

// stop is a graceful shutdown: SIGTERM, and the server must exit 0.
func (sp *serverProc) stop() { sp.t.Helper(); sp.stopWith(syscall.SIGTERM) }

func (sp *serverProc) stopWith(sig os.Signal) {
	sp.t.Helper()
	code, err := sp.terminate(sig)
	if err != nil {
		sp.t.Errorf("stopping the server: %v", err)
		return
	}
	if code != 0 {
		sp.t.Errorf("server exit code after %v: got %d, want 0", sig, code)
	}
}

// kill9 kills the server with SIGKILL: no flush, no clean close.
func (sp *serverProc) kill9() {
	sp.t.Helper()
	if !sp.running() {
		sp.t.Fatalf("kill9: the server is not running (%v)", sp.state)
	}
	sp.out.marker("sending SIGKILL")
	_ = sp.cmd.Process.Kill()
	<-sp.done
}

// restart starts the server again on the same data directory and flags
// (on a new port: see addr). A running server is stopped gracefully first.
func (sp *serverProc) restart() {
	sp.t.Helper()
	if sp.running() {
		sp.stop()
	}
	if err := sp.launch(); err != nil {
		sp.t.Fatalf("restarting the server: %v", err)
	}
}

// waitLog waits up to d for the log to hold n lines that contain substr
// (the log holds every run's lines).
func (sp *serverProc) waitLog(substr string, n int, d time.Duration) {
	sp.t.Helper()
	for deadline := time.Now().Add(d); strings.Count(sp.out.String(), substr) < n; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			sp.t.Fatalf("after %v, the log has fewer than %d lines with %q:\n%s", d, n, substr, sp.out.String())
		}
	}
}

// checkLog fails the test if the race detector reported in the log.
func (sp *serverProc) checkLog() {
	if sp.t == nil {
		return
	}
	if strings.Contains(sp.out.String(), "WARNING: DATA RACE") {
		sp.t.Errorf("the race detector reported a data race in the server (see its log)")
	}
}

// dial opens a raw connection to the server, closed when the test ends.
func (sp *serverProc) dial(t testing.TB) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", sp.addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", sp.addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// testCtx is a context bounded by the test's deadline (or 2 minutes).
func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}
