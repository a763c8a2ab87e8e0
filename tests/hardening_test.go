package tests

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/readstates/readstates/internal/testcerts"
	"github.com/redis/go-redis/v9"
)

// rsmgetRequest is one RSMGET of user 1 for channels 1..n.
func rsmgetRequest(n int) string {
	args := []string{"RSMGET", "1"}
	for i := range n {
		args = append(args, strconv.Itoa(i+1))
	}
	return respCmd(args...)
}

// vmRSS is the resident set of process pid, from /proc; ok false where
// there is no /proc.
func vmRSS(pid int) (bytes int64, ok bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, err := strconv.ParseInt(f[1], 10, 64)
			return kb << 10, err == nil
		}
	}
	return 0, false
}

// TestClientsThatNeverRead: clients that pipeline large RSMGETs and never
// read their replies are disconnected once --client-write-timeout passes
// with their socket buffers full, or once the replies waiting pass
// --client-output-limit. Meanwhile another client is served promptly, and
// the server's memory stays bounded by the output limit.
func TestClientsThatNeverRead(t *testing.T) {
	const outputLimit = 8 << 20
	sp := startServer(t, "--client-write-timeout", "1s", "--client-output-limit", "8mb", "--log-level", "warn")
	ctx := testCtx(t)
	pid := sp.cmd.Process.Pid
	base, haveRSS := vmRSS(pid)

	req := []byte(strings.Repeat(rsmgetRequest(1000), 8)) // 71 KB of requests, 96 KB of replies
	const flooders = 4
	errs := make(chan error, flooders)
	for range flooders {
		c := sp.dial(t)
		go func() {
			for {
				// The server stops reading once it is stuck writing, so
				// this blocks too, until the server closes the connection.
				_ = c.SetWriteDeadline(time.Now().Add(60 * time.Second))
				if _, err := c.Write(req); err != nil {
					errs <- err
					return
				}
			}
		}()
	}

	other := sp.goRedis(t, 2)
	start := time.Now()
	var maxRSS int64
	var slowest time.Duration
	for closed := 0; closed < flooders; {
		t0 := time.Now()
		if err := other.Do(ctx, "RSINCR", 7, 7).Err(); err != nil {
			t.Fatalf("another client, while %d do not read: %v", flooders-closed, err)
		}
		slowest = max(slowest, time.Since(t0))
		if rss, ok := vmRSS(pid); ok {
			maxRSS = max(maxRSS, rss)
		}
		select {
		case err := <-errs:
			if !isClosedByPeer(err) {
				t.Fatalf("a client that never reads: %v, want its connection closed by the server", err)
			}
			closed++
		case <-time.After(20 * time.Millisecond):
		}
		if time.Since(start) > 30*time.Second {
			t.Fatalf("%d of %d clients that never read still connected after 30s (--client-write-timeout 1s)", flooders-closed, flooders)
		}
	}
	t.Logf("all %d closed after %v; slowest command of the other client %v; RSS %d MiB at start, at most %d MiB",
		flooders, time.Since(start).Round(time.Millisecond), slowest, base>>20, maxRSS>>20)
	if slowest > 2*time.Second {
		t.Errorf("the other client waited %v for a reply", slowest)
	}
	// The server reads on while replies wait (a client may write a whole
	// pipeline before it reads), so a stuck connection holds up to the
	// output limit of replies until the write timeout or the limit closes
	// it. The collector lets the heap grow to twice what is live before
	// it runs, and the RSS also holds what it freed and has not returned
	// to the OS, the runtime's own, and in a race build the detector's
	// shadow memory: 96 MiB of room for those. Replies held past the
	// limit would pass it.
	if haveRSS && maxRSS-base > 2*flooders*outputLimit+96<<20 {
		t.Errorf("server RSS grew from %d MiB to %d MiB with %d clients that never read", base>>20, maxRSS>>20, flooders)
	}
	if !strings.Contains(sp.out.String(), "client closed: it does not take its replies") {
		t.Error("the server did not log why it closed the clients")
	}
	if got := other.Do(ctx, "RSGET", 7, 7).String(); !strings.Contains(got, "[") {
		t.Errorf("RSGET after: %s", got)
	}
}

// isClosedByPeer: the error of a write to a connection the server closed.
func isClosedByPeer(err error) bool {
	s := err.Error()
	return strings.Contains(s, "connection reset") || strings.Contains(s, "broken pipe")
}

// TestOutputLimitFlag: --client-output-limit closes a client whose
// replies at once exceed it, instead of sending them.
func TestOutputLimitFlag(t *testing.T) {
	sp := startServer(t, "--client-output-limit", "16kb")
	rc := sp.raw(t)
	rc.send(rsmgetRequest(2000)) // about 24 KB of replies
	_ = rc.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if rest, err := io.ReadAll(rc.r); len(rest) != 0 || (err != nil && !isClosedByPeer(err)) {
		t.Fatalf("RSMGET of 2000 over a 16kb output limit: got %d bytes, %v; want the connection closed", len(rest), err)
	}
	rc = sp.raw(t)
	if got := rc.do("RSMGET", "1", "1", "2", "3"); !strings.HasPrefix(got, "*3") {
		t.Fatalf("a small RSMGET after: %q", got)
	}
	rc.expect("*2\r\n$19\r\nclient-output-limit\r\n$5\r\n16384\r\n", "CONFIG", "GET", "client-output-limit")
}

// TestProtocolLimitFlags: the protocol limits are flags (and environment
// variables), CONFIG GET reports them, and the guard applies them.
func TestProtocolLimitFlags(t *testing.T) {
	sp := startServer(t, "--proto-max-bulk-len", "4kb", "--proto-max-multibulk-len", "100", "--client-query-buffer-limit", "8kb")
	rc := sp.raw(t)
	for name, want := range map[string]string{"proto-max-bulk-len": "4096", "proto-max-multibulk-len": "100", "client-query-buffer-limit": "8192"} {
		rc.expect("*2\r\n$"+strconv.Itoa(len(name))+"\r\n"+name+"\r\n$"+strconv.Itoa(len(want))+"\r\n"+want+"\r\n", "CONFIG", "GET", name)
	}
	rc.expect("$4096\r\n"+strings.Repeat("x", 4096)+"\r\n", "ECHO", strings.Repeat("x", 4096))
	for _, bad := range []string{
		respCmd("ECHO", strings.Repeat("x", 4097)),
		rsmgetRequest(99),
		respCmd("RSMGET", "1", strings.Repeat("1", 3000), strings.Repeat("2", 3000), strings.Repeat("3", 3000)),
	} {
		c := sp.dial(t)
		_, _ = io.WriteString(c, bad)
		expectProtocolError(t, c, 10*time.Second)
	}
	rc.expect("+PONG\r\n", "PING")
}

// TestAdminFromLoopback: without a password, a loopback client may run
// CONFIG SET and SHUTDOWN (other hosts get DENIED: see the commands and
// server packages, which can fake a remote address); with one, it must
// AUTH first.
func TestAdminFromLoopback(t *testing.T) {
	sp := startServer(t)
	rc := sp.raw(t)
	rc.expect("+OK\r\n", "CONFIG", "SET", "save", "")
	rc.send(respCmd("SHUTDOWN"))
	expectClosed(t, rc.r, rc.c, 10*time.Second)
	if code, ok := sp.exited(stopTimeout); !ok || code != 0 {
		t.Fatalf("SHUTDOWN from loopback: exited %v, code %d", ok, code)
	}

	sp = startServer(t, "--requirepass", "s3cret")
	rc = sp.raw(t)
	rc.expect("-NOAUTH Authentication required.\r\n", "SHUTDOWN")
	rc.expect("-NOAUTH Authentication required.\r\n", "CONFIG", "SET", "save", "")
	if _, ok := sp.exited(200 * time.Millisecond); ok {
		t.Fatal("SHUTDOWN without AUTH stopped the server")
	}
	rc.expect("+OK\r\n", "AUTH", "s3cret")
	rc.send(respCmd("SHUTDOWN"))
	expectClosed(t, rc.r, rc.c, 10*time.Second)
	if code, ok := sp.exited(stopTimeout); !ok || code != 0 {
		t.Fatalf("SHUTDOWN after AUTH: exited %v, code %d", ok, code)
	}
}

// tlsPing is a readiness probe for a TLS server: a PING over TLS.
func tlsPing(cfg *tls.Config) func(addr string) error {
	return func(addr string) error {
		d := &net.Dialer{Timeout: time.Second}
		c, err := tls.DialWithDialer(d, "tcp", addr, cfg)
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(2 * time.Second))
		if _, err := io.WriteString(c, respCmd("PING")); err != nil {
			return err
		}
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil {
			return err
		}
		if line != "+PONG\r\n" {
			return errors.New("PING over TLS: " + strconv.Quote(line))
		}
		return nil
	}
}

// TestTLS: --tls-cert/--tls-key/--tls-ca-cert serve TLS with client
// certificates required (--tls-auth-clients yes, the default), to go-redis
// and redis-cli; plaintext clients and clients without a certificate are
// refused, and the server goes on.
func TestTLS(t *testing.T) {
	certs, err := testcerts.Write(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	clientTLS := &tls.Config{RootCAs: certs.CA, Certificates: []tls.Certificate{certs.Client}}
	sp := startServerPing(t, tlsPing(clientTLS),
		"--tls-cert", certs.ServerCert, "--tls-key", certs.ServerKey, "--tls-ca-cert", certs.CAFile)
	ctx := testCtx(t)
	for _, proto := range protocols {
		c := sp.goRedis(t, proto, func(o *redis.Options) { o.TLSConfig = clientTLS.Clone() })
		if n, err := c.Do(ctx, "RSINCR", 1, 2, 5).Int64(); err != nil || n != int64(5*(proto-1)) {
			t.Fatalf("RESP%d over TLS: RSINCR: %d, %v", proto, n, err)
		}
	}

	// Plaintext: the server closes the connection without a byte.
	rc := sp.raw(t)
	rc.send(respCmd("PING"))
	_ = rc.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if got, err := io.ReadAll(rc.r); len(got) != 0 || (err != nil && !isClosedByPeer(err)) {
		t.Errorf("plaintext PING on the TLS port: got %q, %v; want a close", got, err)
	}
	plain := sp.goRedis(t, 2)
	if err := plain.Ping(ctx).Err(); err == nil {
		t.Error("a plaintext go-redis client was served on the TLS port")
	}
	// No client certificate: refused (tls-auth-clients yes).
	nocert := sp.goRedis(t, 2, func(o *redis.Options) { o.TLSConfig = &tls.Config{RootCAs: certs.CA} })
	if err := nocert.Ping(ctx).Err(); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("PING without a client certificate: %v, want a certificate error", err)
	}

	// redis-cli, if it was built with TLS.
	cli := requireTool(t, "redis-cli")
	help, _ := exec.Command(cli, "--help").CombinedOutput()
	if !bytes.Contains(help, []byte("--tls")) {
		missingClient(t, "this redis-cli was built without TLS (no --tls in its --help)")
	}
	host, port, _ := net.SplitHostPort(sp.addr)
	run := func(extra ...string) (string, error) {
		args := append([]string{"-h", host, "-p", port, "--tls", "--cacert", certs.CAFile}, extra...)
		ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, cli, args...).CombinedOutput()
		return strings.TrimSpace(string(out)), err
	}
	out, err := run("--cert", certs.ClientCert, "--key", certs.ClientKey, "RSINCR", "1", "2")
	if err != nil || out != "11" {
		t.Errorf("redis-cli --tls RSINCR 1 2: %q, %v; want 11", out, err)
	}
	if out, err := run("PING"); err == nil && out == "PONG" {
		t.Error("redis-cli --tls without a client certificate was served")
	}
	if err := sp.goRedis(t, 2, func(o *redis.Options) { o.TLSConfig = clientTLS.Clone() }).Ping(ctx).Err(); err != nil {
		t.Fatalf("PING after the refused clients: %v", err)
	}
}
