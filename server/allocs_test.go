//go:build !race

package server

import (
	"bytes"
	"context"
	"io"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/readstates/readstates/persist"
	"github.com/readstates/readstates/persist/journal"
	"github.com/readstates/readstates/persist/pebblestore"
)

// The hot path allocates nothing: a pipeline of read-state commands that
// hit the cache, through the real connection pipeline (the parser, the
// dispatcher, the reply writer) and the real engine with its
// journal, leaves the
// heap's allocation count where it was. Measured over the whole process,
// so a stray allocation anywhere on the path shows. (Not under -race: the
// race runtime allocates on its own.)
func TestHotPathDoesNotAllocate(t *testing.T) {
	// Both drivers of the one connection pipeline.
	for _, loops := range []int{0, -1} {
		t.Run(map[int]string{0: "event-loops", -1: "goroutines"}[loops], func(t *testing.T) {
			testHotPathDoesNotAllocate(t, loops)
		})
	}
}

func testHotPathDoesNotAllocate(t *testing.T, loops int) {
	store, err := pebblestore.Open(t.TempDir(), testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	// With the journal, as the server runs by default: every change is
	// appended to it on this path.
	engine, err := persist.NewEngine(persist.EngineConfig{Store: store, CacheEntries: 1000, FlushInterval: time.Hour, Logger: testLogger(t),
		Journal: &journal.Options{Dir: t.TempDir(), Policy: journal.Policy{Every: time.Second}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { engine.Close(context.Background()) })
	s, err := New(Config{Logger: testLogger(t), EventLoops: loops}, engine)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(context.Background(), ln)
	<-s.Ready()
	t.Cleanup(func() { s.Close() })
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))

	resp := func(args ...string) string {
		var b strings.Builder
		b.WriteString("*" + itoa(len(args)) + "\r\n")
		for _, a := range args {
			b.WriteString("$" + itoa(len(a)) + "\r\n" + a + "\r\n")
		}
		return b.String()
	}
	// One round: every read-state command, on read states already cached.
	round := resp("RSINCR", "1234567890123", "42", "1") +
		resp("RSRESET", "1234567890123", "42", "99") +
		resp("RSGET", "1234567890123", "42") +
		resp("RSMGET", "1234567890123", "42", "43") +
		resp("PING")
	roundReply := ":1\r\n:1\r\n*2\r\n:0\r\n:99\r\n*2\r\n*2\r\n:0\r\n:99\r\n*2\r\n:0\r\n:0\r\n+PONG\r\n"
	const rounds = 500
	req := []byte(strings.Repeat(round, rounds))
	want := []byte(strings.Repeat(roundReply, rounds))
	got := make([]byte, len(want))
	exchange := func() {
		if _, err := c.Write(req); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(c, got); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("replies differ: got %.200q", got)
		}
	}
	// Warm up: load 42 and 43, and grow the connection's buffers (the
	// goroutine driver rotates three reply buffers between its reader,
	// its queue and its writer).
	for range 5 {
		exchange()
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	const times = 10
	for range times {
		exchange()
	}
	runtime.ReadMemStats(&after)
	cmds := times * rounds * 5
	per := float64(after.Mallocs-before.Mallocs) / float64(cmds)
	t.Logf("%d allocations over %d commands (%.4f per command, %d bytes)", after.Mallocs-before.Mallocs, cmds, per, after.TotalAlloc-before.TotalAlloc)
	// A few allocations may come from the runtime or a background
	// goroutine during the window; one per command would be 25,000.
	if per > 0.002 {
		t.Fatalf("%.4f allocations per command, want 0", per)
	}
}

func itoa(n int) string {
	return string(appendInt(nil, n))
}

func appendInt(b []byte, n int) []byte {
	if n >= 10 {
		b = appendInt(b, n/10)
	}
	return append(b, byte('0'+n%10))
}
