package tests

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"
)

// respCmd encodes a command as a RESP array of bulk strings.
func respCmd(args ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	return b.String()
}

// readReply reads one RESP2 or RESP3 reply and returns its raw bytes.
func readReply(r *bufio.Reader) (string, error) {
	var b strings.Builder
	if err := readReplyInto(r, &b, 0); err != nil {
		return b.String(), err
	}
	return b.String(), nil
}

func readReplyInto(r *bufio.Reader, b *strings.Builder, depth int) error {
	if depth > 64 {
		return fmt.Errorf("reply nested deeper than 64")
	}
	line, err := r.ReadString('\n')
	b.WriteString(line)
	if err != nil {
		return err
	}
	if len(line) < 3 || !strings.HasSuffix(line, "\r\n") {
		return fmt.Errorf("malformed reply line %q", line)
	}
	body := line[1 : len(line)-2]
	switch line[0] {
	case '+', '-', ':', '_', ',', '#', '(':
		return nil
	case '$', '=', '!':
		n, err := strconv.Atoi(body)
		if err != nil {
			return fmt.Errorf("bad length in %q", line)
		}
		if n < 0 {
			return nil
		}
		buf := make([]byte, n+2)
		k, err := io.ReadFull(r, buf)
		b.Write(buf[:k])
		return err
	case '*', '~', '>', '%', '|':
		n, err := strconv.Atoi(body)
		if err != nil {
			return fmt.Errorf("bad length in %q", line)
		}
		if line[0] == '%' || line[0] == '|' {
			n *= 2
		}
		for range n {
			if err := readReplyInto(r, b, depth+1); err != nil {
				return err
			}
		}
		return nil
	default:
		return fmt.Errorf("unknown reply type in %q", line)
	}
}

// rawConn is a RESP connection without a client library: it shows exactly
// what the server sends.
type rawConn struct {
	t testing.TB
	c net.Conn
	r *bufio.Reader
}

func (sp *serverProc) raw(t testing.TB) *rawConn {
	t.Helper()
	c := sp.dial(t)
	return &rawConn{t: t, c: c, r: bufio.NewReader(c)}
}

// send writes bytes as they are.
func (rc *rawConn) send(s string) {
	rc.t.Helper()
	_ = rc.c.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(rc.c, s); err != nil {
		rc.t.Fatalf("write %q: %v", abbrev(s), err)
	}
}

// reply reads one reply within 10 s.
func (rc *rawConn) reply() string {
	rc.t.Helper()
	_ = rc.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	s, err := readReply(rc.r)
	if err != nil {
		rc.t.Fatalf("reading a reply: %v (read so far %q)", err, s)
	}
	return s
}

// do sends one command and returns its raw reply.
func (rc *rawConn) do(args ...string) string {
	rc.t.Helper()
	rc.send(respCmd(args...))
	return rc.reply()
}

// expect sends one command and checks the raw reply.
func (rc *rawConn) expect(want string, args ...string) {
	rc.t.Helper()
	if got := rc.do(args...); got != want {
		rc.t.Errorf("%s: got %q, want %q", strings.Join(args, " "), got, want)
	}
}

// abbrev shortens s for messages.
func abbrev(s string) string {
	if len(s) <= 80 {
		return s
	}
	return s[:60] + fmt.Sprintf("...(%d bytes)", len(s))
}

// respInts is the RESP reply for an array of integers.
func respInts(vs ...int64) string {
	s := fmt.Sprintf("*%d\r\n", len(vs))
	for _, v := range vs {
		s += fmt.Sprintf(":%d\r\n", v)
	}
	return s
}
