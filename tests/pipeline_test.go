package tests

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/readstates/readstates/internal/testcerts"
)

// TestPipelineWrittenWhole: a client that writes a whole pipeline before
// it reads the first reply, as hiredis (redisAppendCommand, then
// redisGetReply), Jedis pipelined(), redis-rs pipe() and rueidis DoMulti
// do, gets every reply, in order: the server reads on while the replies
// wait (up to --client-output-limit), on both drivers of the connection
// pipeline, TLS included. The shapes are a pipeline of 1,000,000 RSGET and
// one of 100,000 RSMGET of 20 channels (about 16 and 29 MB of replies).
func TestPipelineWrittenWhole(t *testing.T) {
	if os.Getenv("READSTATES_TEST_EVENT_LOOPS") != "" {
		t.Skip("runs every driver itself; once per test run is enough")
	}
	certs, err := testcerts.Write(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	clientTLS := &tls.Config{RootCAs: certs.CA, Certificates: []tls.Certificate{certs.Client}}
	for _, mode := range []struct {
		name string
		args []string
		tls  bool
	}{
		{"event-loops", []string{"--event-loops", "2"}, false},
		{"goroutines", []string{"--event-loops", "-1"}, false},
		{"tls", []string{"--tls-cert", certs.ServerCert, "--tls-key", certs.ServerKey, "--tls-ca-cert", certs.CAFile}, true},
	} {
		t.Run(mode.name, func(t *testing.T) {
			var sp *serverProc
			dial := func() net.Conn { return sp.dial(t) }
			if mode.tls {
				sp = startServerPing(t, tlsPing(clientTLS), mode.args...)
				dial = func() net.Conn {
					c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", sp.addr, clientTLS)
					if err != nil {
						t.Fatal(err)
					}
					t.Cleanup(func() { c.Close() })
					return c
				}
			} else {
				sp = startServer(t, mode.args...)
			}
			// Read states 42:1..20 hold mention counts 1..20.
			setup := dial()
			var b bytes.Buffer
			for ch := 1; ch <= 20; ch++ {
				b.WriteString(respCmd("RSINCR", "42", strconv.Itoa(ch), strconv.Itoa(ch)))
			}
			exchangeWhole(t, setup, b.Bytes(), 20, func(i int, r *bufio.Reader) error {
				return expectLine(r, ":"+strconv.Itoa(i+1))
			})

			t.Run("RSGET x 1000000", func(t *testing.T) {
				const n = 1_000_000
				var cmds [20]string
				for i := range cmds {
					cmds[i] = respCmd("RSGET", "42", strconv.Itoa(i+1))
				}
				var req bytes.Buffer
				req.Grow(n * len(cmds[19]))
				for i := range n {
					req.WriteString(cmds[i%20])
				}
				var counts [20]string
				for i := range counts {
					counts[i] = ":" + strconv.Itoa(i+1)
				}
				exchangeWhole(t, dial(), req.Bytes(), n, func(i int, r *bufio.Reader) error {
					return expectLines(r, "*2", counts[i%20], ":0")
				})
			})
			t.Run("RSMGET of 20 x 100000", func(t *testing.T) {
				const n = 100_000
				args := []string{"RSMGET", "42"}
				for ch := 1; ch <= 20; ch++ {
					args = append(args, strconv.Itoa(ch))
				}
				one := respCmd(args...)
				req := bytes.NewBuffer(bytes.Repeat([]byte(one), n))
				want := []string{"*20"}
				for ch := 1; ch <= 20; ch++ {
					want = append(want, "*2", ":"+strconv.Itoa(ch), ":0")
				}
				exchangeWhole(t, dial(), req.Bytes(), n, func(_ int, r *bufio.Reader) error {
					return expectLines(r, want...)
				})
			})
		})
	}
}

// exchangeWhole writes req in full, and only then reads n replies,
// checking each with check.
func exchangeWhole(t *testing.T, c net.Conn, req []byte, n int, check func(i int, r *bufio.Reader) error) {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(3 * time.Minute))
	start := time.Now()
	if _, err := c.Write(req); err != nil {
		t.Fatalf("writing the whole pipeline (%d bytes): %v", len(req), err)
	}
	wrote := time.Since(start)
	r := bufio.NewReaderSize(c, 64<<10)
	for i := range n {
		if err := check(i, r); err != nil {
			t.Fatalf("reply %d of %d: %v", i, n, err)
		}
	}
	t.Logf("%d requests (%d bytes) written in %v, every reply read after %v", n, len(req), wrote.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
}

func expectLine(r *bufio.Reader, want string) error {
	line, err := r.ReadSlice('\n')
	if err != nil {
		return err
	}
	if len(line) < 2 || string(line[:len(line)-2]) != want {
		return fmt.Errorf("got %q, want %q", line, want+"\r\n")
	}
	return nil
}

func expectLines(r *bufio.Reader, want ...string) error {
	for _, w := range want {
		if err := expectLine(r, w); err != nil {
			return err
		}
	}
	return nil
}
