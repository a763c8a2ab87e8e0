package server

import (
	"bufio"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/readstates/readstates/cache"
)

// These run on whichever connection layer the tests run on (see
// testEventLoops); they matter most for the event loops.

// TestDeferredCommandBlocksOnlyItsClient: a command that waits for the
// store (a blocked Incr here) holds up the commands its client pipelined
// after it, in order, but no other client.
func TestDeferredCommandBlocksOnlyItsClient(t *testing.T) {
	ts := startServer(t, nil)
	block := make(chan struct{})
	ts.backend.mu.Lock()
	ts.backend.block = block
	ts.backend.mu.Unlock()

	slow := ts.raw(t)
	slow.send("RSINCR 1 1\r\nRSGET 1 1\r\nPING x\r\n")
	<-ts.backend.started // the RSINCR waits

	other := ts.raw(t)
	for range 3 {
		other.send("PING\r\nRSGET 2 2\r\n")
		other.expect("+PONG\r\n*2\r\n:0\r\n:0\r\n")
	}
	if got := ts.backend.state(cache.Key{User: 1, Channel: 1}).MentionCount; got != 0 {
		t.Fatalf("mention_count = %d before the blocked RSINCR ran", got)
	}
	close(block)
	slow.expect(":1\r\n*2\r\n:1\r\n:0\r\n$1\r\nx\r\n")
	// The connection goes on as before.
	slow.send("RSINCR 1 1\r\n")
	slow.expect(":2\r\n")
}

// TestDeepPipelineWithoutReading: a client that writes a long pipeline
// before it reads any reply gets every reply, in order, on both drivers:
// the server reads on while replies wait.
func TestDeepPipelineWithoutReading(t *testing.T) {
	ts := startServer(t, nil)
	c := ts.raw(t)
	n := 100_000 // ~5 MB of requests, ~0.5 MB of replies
	var req strings.Builder
	for i := range n {
		fmt.Fprintf(&req, "*4\r\n$6\r\nRSINCR\r\n$1\r\n7\r\n$%d\r\n%d\r\n$1\r\n1\r\n", len(fmt.Sprint(i%100)), i%100)
	}
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.WriteString(c.Conn, req.String()); err != nil {
		t.Fatalf("writing the pipeline: %v", err)
	}
	r := bufio.NewReader(c.Conn)
	for i := range n {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("reply %d: %v", i, err)
		}
		if want := fmt.Sprintf(":%d\r\n", i/100+1); line != want {
			t.Fatalf("reply %d = %q, want %q", i, line, want)
		}
	}
}
