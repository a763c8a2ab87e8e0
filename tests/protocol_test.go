package tests

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Malformed RESP over raw connections: the cases of Redis's
// tests/unit/protocol.tcl and a few more. The spec: a request that breaks
// the protocol gets "-ERR Protocol error: ..." and its connection is
// closed, as in Redis; other connections are unaffected; nothing crashes.

// How a protocol case must end.
const (
	// The reply is one "-ERR Protocol error..." line, then the server
	// closes the connection.
	mustFail = iota
	// Redis ignores the request; PING on the same connection answers PONG.
	ignored
	// Redis ignores it (PONG after), but refusing it as a protocol error
	// (error line, close) is also within the spec.
	ignoredOrFails
	// Redis waits for the rest (a valid but large header); a protocol
	// error and a close are also acceptable. Nothing else is.
	waitsOrFails
)

type protoCase struct {
	name    string
	payload string
	want    int
}

var protoCases = []protoCase{
	// From Redis's tests/unit/protocol.tcl.
	{"empty query", "\r\n", ignored},
	{"negative multibulk length", "*-10\r\n", ignoredOrFails},
	{"out of range multibulk length", "*3000000000\r\n", mustFail},
	{"wrong multibulk payload header", "*3\r\n$3\r\nSET\r\n$1\r\nx\r\nfooz\r\n", mustFail},
	{"negative multibulk payload length", "*3\r\n$3\r\nSET\r\n$1\r\nx\r\n$-10\r\n", mustFail},
	{"out of range multibulk payload length", "*3\r\n$3\r\nSET\r\n$1\r\nx\r\n$2000000000\r\n", mustFail},
	{"non-number multibulk payload length", "*3\r\n$3\r\nSET\r\n$1\r\nx\r\n$blabla\r\n", mustFail},
	{"multibulk request not followed by bulk arguments", "*1\r\nfoo\r\n", mustFail},
	{"unbalanced number of quotes", "set \"\"\"test-key\"\"\" test-value\r\nping\r\n", mustFail},
	// More of the same families.
	{"spaces only", "    \r\n", ignored},
	{"zero multibulk length", "*0\r\n", ignoredOrFails},
	{"non-number multibulk length", "*blabla\r\n", mustFail},
	{"multibulk length with a plus sign", "*+1\r\n$4\r\nPING\r\n", mustFail},
	{"multibulk length overflowing int64", "*99999999999999999999\r\n", mustFail},
	{"negative bulk length", "*1\r\n$-10\r\n", mustFail},
	{"null bulk in a request", "*3\r\n$-1\r\n", mustFail},
	{"bulk length too big", "*1\r\n$2000000000\r\n", mustFail},
	{"non-number bulk length", "*1\r\n$blabla\r\n", mustFail},
	{"empty bulk length", "*1\r\n$\r\n", mustFail},
	{"wrong type marker", "*2\r\n$4\r\nPING\r\n:1\r\n", mustFail},
	{"unbalanced single quote", "RSGET '1 2\r\nPING\r\n", mustFail},
	{"closing quote not followed by a space", "RSGET \"1\"2 3\r\n", mustFail},
	{"large multibulk length", "*20000000\r\n", waitsOrFails},
}

// floodCases are sent followed by up to 1 MiB without a newline; Redis
// refuses after 64 KB ("too big inline request", "too big mbulk count
// string", "too big bulk count string"), including its "protocol desync"
// regression cases.
var floodCases = []protoCase{
	{"huge inline request", "PING ", mustFail},
	{"desync NUL", "\x00", mustFail},
	{"desync multibulk NUL", "*\x00", mustFail},
	{"desync bulk NUL", "$\x00", mustFail},
	{"huge multibulk count", "*1", mustFail},
	{"huge bulk count", "*1\r\n$1", mustFail},
}

const floodLimit = 1 << 20

func TestProtocolErrors(t *testing.T) {
	sp := startServer(t)
	witness := sp.raw(t) // opened before any attack
	witness.expect(":7\r\n", "RSINCR", "1", "1", "7")
	check := func(t *testing.T) {
		t.Helper()
		if !sp.running() {
			t.Fatalf("the server exited: %v", sp.state)
		}
		witness.expect("+PONG\r\n", "PING")
		witness.expect(respInts(7, 0), "RSGET", "1", "1")
		fresh := sp.raw(t)
		fresh.expect("+PONG\r\n", "PING")
	}
	for _, pc := range protoCases {
		t.Run(pc.name, func(t *testing.T) {
			c := sp.dial(t)
			if _, err := io.WriteString(c, pc.payload); err != nil {
				t.Fatalf("write: %v", err)
			}
			switch pc.want {
			case mustFail:
				expectProtocolError(t, c, 10*time.Second)
			case ignored, ignoredOrFails:
				if _, err := io.WriteString(c, "PING\r\n"); err != nil {
					t.Fatalf("write PING: %v", err)
				}
				_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
				r := bufio.NewReader(c)
				got, err := readReply(r)
				switch {
				case got == "+PONG\r\n":
				case pc.want == ignoredOrFails && strings.HasPrefix(got, "-ERR Protocol error"):
					t.Logf("refused as a protocol error (Redis ignores it): %q", got)
					expectClosed(t, r, c, 10*time.Second)
				default:
					t.Errorf("%q then PING: got %q, %v; want +PONG (Redis ignores the request)", pc.payload, got, err)
				}
			case waitsOrFails:
				_ = c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
				got, err := io.ReadAll(c)
				var ne net.Error
				switch {
				case len(got) == 0 && errors.As(err, &ne) && ne.Timeout():
					// Waiting for the arguments, as Redis does.
				case strings.HasPrefix(string(got), "-ERR Protocol error") && err == nil:
					t.Logf("refused: %q", got)
				default:
					t.Errorf("%q: got %q, %v; want no reply yet, or a protocol error and a close", pc.payload, got, err)
				}
			}
			check(t)
		})
	}
	for _, pc := range floodCases {
		t.Run(pc.name, func(t *testing.T) {
			c := sp.dial(t)
			flood(t, c, pc.payload)
			check(t)
		})
	}
	// Nothing grew without bound: the server is still a sane size.
	info := witness.do("INFO", "memory")
	if i := strings.Index(info, "used_memory_rss:"); i >= 0 {
		v := info[i+len("used_memory_rss:"):]
		rss, err := strconv.ParseInt(v[:strings.IndexByte(v, '\r')], 10, 64)
		if err == nil && rss > 1<<30 {
			t.Errorf("used_memory_rss after the protocol cases: %d bytes, want well under 1 GiB", rss)
		}
		t.Logf("used_memory_rss after the protocol cases: %d MiB", rss>>20)
	}
}

// expectProtocolError reads until the server closes the connection: there
// must be exactly one reply, "-ERR Protocol error...".
func expectProtocolError(t *testing.T, c net.Conn, d time.Duration) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(d))
	got, err := io.ReadAll(c)
	if err != nil && !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("got %q, then %v; want -ERR Protocol error... and the connection closed", got, err)
		return
	}
	s := string(got)
	if !strings.HasPrefix(s, "-ERR Protocol error") || strings.Index(s, "\r\n") != len(s)-2 {
		t.Errorf("got %q before the close; want exactly one \"-ERR Protocol error...\" line", s)
		return
	}
	t.Logf("%s", strings.TrimSpace(s))
}

func expectClosed(t *testing.T, r io.Reader, c net.Conn, d time.Duration) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(d))
	rest, err := io.ReadAll(r)
	if err != nil && !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("after the protocol error: got %q, %v; want the connection closed", rest, err)
	}
}

// flood writes prefix and then up to floodLimit bytes without a newline.
// The server must refuse (an error line and/or a close) before it has
// taken all of it.
func flood(t *testing.T, c net.Conn, prefix string) {
	t.Helper()
	type result struct {
		data []byte
		err  error
	}
	done := make(chan result, 1)
	go func() {
		_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
		b, err := io.ReadAll(c)
		done <- result{b, err}
	}()
	junk := []byte(strings.Repeat("A", 1024))
	if strings.HasPrefix(prefix, "*") || strings.HasPrefix(prefix, "*1\r\n$") {
		junk = []byte(strings.Repeat("1", 1024)) // digits: a count that never ends
	}
	_ = c.SetWriteDeadline(time.Now().Add(20 * time.Second))
	sent := 0
	n, werr := io.WriteString(c, prefix)
	sent += n
	for werr == nil && sent < floodLimit {
		n, werr = c.Write(junk)
		sent += n
	}
	var r result
	select {
	case r = <-done:
	case <-time.After(10 * time.Second):
		t.Fatalf("sent %d bytes (%q then no newline) and the connection is still open with no reply; "+
			"Redis refuses such a request after 64 KB (write error: %v)", sent, prefix, werr)
	}
	var ne net.Error
	if errors.As(r.err, &ne) && ne.Timeout() {
		t.Fatalf("sent %d bytes (%q then no newline); no reply and no close within 30 s", sent, prefix)
	}
	s := string(r.data)
	switch {
	case strings.HasPrefix(s, "-ERR Protocol error") && strings.Index(s, "\r\n") == len(s)-2:
		t.Logf("after %d bytes sent: %s", sent, strings.TrimSpace(s))
	case s == "" && (r.err == nil || errors.Is(r.err, syscall.ECONNRESET)):
		t.Logf("after %d bytes sent: connection closed (%v)", sent, r.err)
	default:
		t.Errorf("sent %d bytes (%q then no newline): got %q, %v; want -ERR Protocol error and/or a close", sent, prefix, abbrev(s), r.err)
	}
}

// TestInlineCommands: plain-text commands, as telnet and redis-benchmark's
// PING_INLINE send them.
func TestInlineCommands(t *testing.T) {
	sp := startServer(t)
	rc := sp.raw(t)
	steps := []struct{ send, want string }{
		{"RSINCR 1 2\r\n", ":1\r\n"},
		{"RSINCR 1 2 5\n", ":6\r\n"}, // LF alone ends a line too
		{"rsget 000001 2\r\n", respInts(6, 0)},
		{"   RSGET    1   2   \r\n", respInts(6, 0)},
		{"RSINCR \"1\" '2'\r\n", ":7\r\n"},
		{"PING\r\n", "+PONG\r\n"},
		{"RSRESET 1 2 99\r\nRSGET 1 2\r\n" + respCmd("RSGET", "1", "2") + "RSMGET 1 2 3\r\n",
			":7\r\n" + respInts(0, 99) + respInts(0, 99) + "*2\r\n" + respInts(0, 99) + respInts(0, 0)},
		{"RSINCR 1\r\n", "-ERR wrong number of arguments for 'rsincr' command\r\n"},
		{"FOO bar\r\n", "-ERR unknown command 'FOO', with args beginning with: 'bar' \r\n"},
		{"RSINCR 1 \"\"\r\n", "-ERR invalid channel_id '': expected an integer from 0 to 9223372036854775807\r\n"},
	}
	for _, s := range steps {
		rc.send(s.send)
		var got string
		for len(got) < len(s.want) {
			r := rc.reply()
			got += r
		}
		if got != s.want {
			t.Errorf("%q: got %q, want %q", s.send, got, s.want)
		}
	}
	rc.expect("+PONG\r\n", "PING") // nothing left over
}

// splitPayload is a pipeline of RESP and inline commands on user UUUUUU
// (a zero-padded id, replaced per run), and the replies it must get.
const (
	splitPayload = "*3\r\n$7\r\nRSRESET\r\n$6\r\nUUUUUU\r\n$1\r\n7\r\n" +
		"*4\r\n$6\r\nRSINCR\r\n$6\r\nUUUUUU\r\n$1\r\n7\r\n$1\r\n5\r\n" +
		"RSINCR UUUUUU 7 2\r\n" +
		"*3\r\n$5\r\nRSGET\r\n$6\r\nUUUUUU\r\n$1\r\n7\r\n" +
		"*1\r\n$4\r\nPING\r\n" +
		"*4\r\n$6\r\nRSMGET\r\n$6\r\nUUUUUU\r\n$1\r\n7\r\n$2\r\n08\r\n" +
		"*3\r\n$6\r\nRSINCR\r\n$6\r\nUUUUUU\r\n$1\r\nx\r\n" +
		"RSRESET UUUUUU 7 99\n" +
		"*2\r\n$4\r\nECHO\r\n$0\r\n\r\n" +
		"*3\r\n$5\r\nrsget\r\n$6\r\nUUUUUU\r\n$2\r\n07\r\n"
	splitReplies = ":0\r\n" + ":5\r\n" + ":7\r\n" + "*2\r\n:7\r\n:0\r\n" + "+PONG\r\n" +
		"*2\r\n*2\r\n:7\r\n:0\r\n*2\r\n:0\r\n:0\r\n" +
		"-ERR invalid channel_id 'x': expected an integer from 0 to 9223372036854775807\r\n" +
		":7\r\n" + "$0\r\n\r\n" + "*2\r\n:0\r\n:99\r\n"
)

// TestPipelineSplitAtEveryByte sends one pipeline in two writes, split at
// every possible byte, and then one byte per write: the replies are the
// same every time.
func TestPipelineSplitAtEveryByte(t *testing.T) {
	sp := startServer(t)
	rc := sp.raw(t)
	_ = rc.c.(*net.TCPConn).SetNoDelay(true)
	// run sends the payload for user cut at the given offsets.
	run := func(user int, cuts ...int) {
		t.Helper()
		payload := strings.ReplaceAll(splitPayload, "UUUUUU", fmt.Sprintf("%06d", user))
		from := 0
		for _, to := range append(cuts, len(payload)) {
			rc.send(payload[from:to])
			from = to
			time.Sleep(200 * time.Microsecond) // let the server read this part alone
		}
		_ = rc.c.SetReadDeadline(time.Now().Add(10 * time.Second))
		got := make([]byte, len(splitReplies))
		if _, err := io.ReadFull(rc.r, got); err != nil || string(got) != splitReplies {
			t.Fatalf("cut at %v: got %q, %v; want %q", cuts, got, err, splitReplies)
		}
	}
	run(0)
	for i := 1; i < len(splitPayload); i++ {
		run(i, i)
	}
	every := make([]int, 0, len(splitPayload))
	for i := 1; i < len(splitPayload); i++ {
		every = append(every, i)
	}
	run(len(splitPayload), every...)
	rc.expect("+PONG\r\n", "PING") // nothing left over
}
