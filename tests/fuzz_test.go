package tests

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The shared server of FuzzServerStream: started on first use, stopped by
// TestMain (each fuzz worker process has its own).
var fuzzSrv struct {
	mu      sync.Mutex
	sp      *serverProc
	witness *rawConn // a connection to PING after each input
	next    uint32   // source address rotation, see fuzzDial
}

// fuzzDial connects from a rotating source address in 127.0.0.0/8: every
// input closes one connection, and from one address the closed ones'
// TIME_WAIT would use up the ephemeral ports within a minute of fuzzing.
func fuzzDial(addr string) (net.Conn, error) {
	fuzzSrv.mu.Lock()
	fuzzSrv.next++
	n := fuzzSrv.next
	fuzzSrv.mu.Unlock()
	src := net.IPv4(127, byte(1+n%200), byte(n/200%250), 1)
	d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: src}}
	c, err := d.Dial("tcp", addr)
	if err != nil && errors.Is(err, syscall.EADDRNOTAVAIL) {
		// Only 127.0.0.1 is configured (macOS): dial from it.
		return net.DialTimeout("tcp", addr, 5*time.Second)
	}
	return c, err
}

func fuzzServer(t *testing.T) *serverProc {
	t.Helper()
	fuzzSrv.mu.Lock()
	defer fuzzSrv.mu.Unlock()
	if fuzzSrv.sp == nil {
		dir, err := os.MkdirTemp("", "readstates-fuzz-")
		if err != nil {
			t.Fatal(err)
		}
		sp := &serverProc{out: &logBuffer{}, dataDir: dir}
		if err := sp.launch(); err != nil {
			os.RemoveAll(dir)
			t.Fatalf("starting the fuzz server: %v\n%s", err, sp.out.String())
		}
		fuzzSrv.sp = sp
	}
	return fuzzSrv.sp
}

// stopFuzzServer stops the shared fuzz server gracefully, if it was
// started; it must exit 0.
func stopFuzzServer() error {
	fuzzSrv.mu.Lock()
	defer fuzzSrv.mu.Unlock()
	sp := fuzzSrv.sp
	if sp == nil {
		return nil
	}
	fuzzSrv.sp = nil
	if fuzzSrv.witness != nil {
		fuzzSrv.witness.c.Close()
		fuzzSrv.witness = nil
	}
	defer os.RemoveAll(sp.dataDir)
	code, err := sp.terminate(syscall.SIGTERM)
	if err == nil && code != 0 {
		err = fmt.Errorf("exit code after SIGTERM: got %d, want 0", code)
	}
	if err == nil && strings.Contains(sp.out.String(), "WARNING: DATA RACE") {
		err = errors.New("the race detector reported a data race")
	}
	if err != nil {
		return fmt.Errorf("%w\nserver log:\n%s", err, sp.out.String())
	}
	return nil
}

// FuzzServerStream sends arbitrary bytes to the running binary on a fresh
// connection, then half-closes it: the server must close its side (after
// whatever replies), and still answer PING on another connection.
//
//	go test ./tests/ -run '^$' -fuzz FuzzServerStream -fuzztime 60s
func FuzzServerStream(f *testing.F) {
	for _, pc := range protoCases {
		f.Add([]byte(pc.payload))
	}
	for _, pc := range floodCases {
		f.Add([]byte(pc.payload + strings.Repeat("A", 70_000)))
	}
	f.Add([]byte(strings.ReplaceAll(splitPayload, "UUUUUU", "000042")))
	f.Add([]byte(respCmd("RSINCR", "1", "2", "3") + respCmd("RSMGET", "1", "2", "2", "x") + "RSGET 1 2\r\n"))
	f.Add([]byte(respCmd("HELLO", "3") + respCmd("RSGET", "1", "2") + respCmd("CLIENT", "LIST") + respCmd("INFO")))
	f.Add([]byte(respCmd("COMMAND", "DOCS") + respCmd("CONFIG", "GET", "*") + "QUIT\r\nPING\r\n"))
	f.Add([]byte("*2\r\n$4\r\nPING\r\n$3\r\nabc"))
	f.Fuzz(func(t *testing.T, data []byte) {
		sp := fuzzServer(t)
		c, err := fuzzDial(sp.addr)
		if err != nil {
			serverDown(t, sp, data, err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(20 * time.Second))
		wrote := make(chan struct{})
		go func() {
			defer close(wrote)
			// The server may close first (a protocol error, QUIT): a failed
			// write is no finding.
			_, _ = c.Write(data)
			_ = c.(*net.TCPConn).CloseWrite()
		}()
		_, err = io.Copy(io.Discard, c)
		c.Close()
		<-wrote // the fuzzer reuses data's memory once this function returns
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			if !sp.running() {
				serverDown(t, sp, data, err)
			}
			t.Fatalf("input %q: the server had not closed the connection 20 s after the client's EOF", abbrev(string(data)))
		}
		if err := fuzzWitnessPing(sp); err != nil {
			serverDown(t, sp, data, err)
		}
	})
}

// fuzzWitnessPing sends PING on a connection kept across inputs (opened
// again if the server was restarted).
func fuzzWitnessPing(sp *serverProc) error {
	w := fuzzSrv.witness
	if w == nil || w.c.RemoteAddr().String() != sp.addr {
		c, err := fuzzDial(sp.addr)
		if err != nil {
			return err
		}
		if w != nil {
			w.c.Close()
		}
		w = &rawConn{c: c, r: bufio.NewReader(c)}
		fuzzSrv.witness = w
	}
	_ = w.c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(w.c, "*1\r\n$4\r\nPING\r\n"); err != nil {
		return err
	}
	got, err := readReply(w.r)
	if err != nil {
		return err
	}
	if got != "+PONG\r\n" {
		return fmt.Errorf("PING on the witness connection: got %q, want +PONG", got)
	}
	return nil
}

// serverDown reports a server that stopped answering. A graceful exit (0)
// can only come from a SHUTDOWN the input spelled: then the server is
// started again and the input skipped. Anything else is a crash or hang.
func serverDown(t *testing.T, sp *serverProc, data []byte, cause error) {
	t.Helper()
	code, exited := sp.exited(stopTimeout)
	if exited && code == 0 {
		if err := sp.launch(); err != nil {
			t.Fatalf("restarting the fuzz server after a SHUTDOWN: %v\n%s", err, sp.out.String())
		}
		t.Skipf("input %q shut the server down gracefully (SHUTDOWN)", abbrev(string(data)))
	}
	if exited {
		t.Fatalf("input %q: the server exited with code %d (%v)\nserver log:\n%s", abbrev(string(data)), code, cause, sp.out.String())
	}
	t.Fatalf("input %q: the server is running but does not answer PING on a new connection: %v\nserver log:\n%s",
		abbrev(string(data)), cause, sp.out.String())
}
