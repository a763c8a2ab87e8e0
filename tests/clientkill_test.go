package tests

import (
	"bufio"
	"io"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestClientKill: CLIENT KILL closes another client's connection, by id
// (new form, the count) or by address (old form, +OK), on both drivers;
// SKIPME keeps the caller.
func TestClientKill(t *testing.T) {
	for _, loops := range []string{"2", "-1"} {
		t.Run("event-loops="+loops, func(t *testing.T) {
			sp := startServer(t, "--event-loops", loops)
			type conn struct {
				r    *bufio.Reader
				send func(args ...string) string
				id   string
				addr string
			}
			open := func() *conn {
				c := sp.dial(t)
				_ = c.SetDeadline(time.Now().Add(20 * time.Second))
				cc := &conn{r: bufio.NewReader(c)}
				cc.send = func(args ...string) string {
					if _, err := c.Write([]byte(respCmd(args...))); err != nil {
						return "write: " + err.Error()
					}
					s, err := readReply(cc.r)
					if err != nil {
						return "read: " + err.Error()
					}
					return s
				}
				cc.id = strings.TrimSuffix(strings.TrimPrefix(cc.send("CLIENT", "ID"), ":"), "\r\n")
				cc.addr = c.LocalAddr().String()
				return cc
			}
			a, b, admin := open(), open(), open()
			for _, c := range []*conn{a, b, admin} {
				if _, err := strconv.Atoi(c.id); err != nil {
					t.Fatalf("CLIENT ID: %q", c.id)
				}
			}
			if got := admin.send("CLIENT", "KILL", "ID", a.id); got != ":1\r\n" {
				t.Fatalf("CLIENT KILL ID %s: %q", a.id, got)
			}
			if _, err := a.r.ReadByte(); err != io.EOF {
				t.Fatalf("the killed connection: %v, want EOF", err)
			}
			if got := admin.send("CLIENT", "KILL", b.addr); got != "+OK\r\n" {
				t.Fatalf("CLIENT KILL %s: %q", b.addr, got)
			}
			if got := admin.send("CLIENT", "KILL", b.addr); got != "-ERR No such client\r\n" {
				t.Fatalf("CLIENT KILL of a client gone: %q", got)
			}
			if got := admin.send("CLIENT", "KILL", "ID", admin.id); got != ":0\r\n" {
				t.Fatalf("CLIENT KILL ID of itself (SKIPME yes): %q", got)
			}
			if got := admin.send("PING"); got != "+PONG\r\n" {
				t.Fatalf("the caller after CLIENT KILL: %q", got)
			}
		})
	}
}
