package tests

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// heldConn is one idle client connection the test keeps open.
type heldConn struct {
	c net.Conn
	r *bufio.Reader
}

// ping sends PING and expects +PONG within d.
func (h *heldConn) ping(d time.Duration) error {
	_ = h.c.SetDeadline(time.Now().Add(d))
	if _, err := io.WriteString(h.c, "*1\r\n$4\r\nPING\r\n"); err != nil {
		return err
	}
	line, err := h.r.ReadString('\n')
	if err != nil {
		return fmt.Errorf("reading the PING reply: %w (got %q)", err, line)
	}
	if line != "+PONG\r\n" {
		return fmt.Errorf("PING: got %q, want +PONG", line)
	}
	return nil
}

// forEachParallel runs f(i) for i in [0, n) on workers goroutines; the
// first error is returned (with its index), the rest are counted.
func forEachParallel(n, workers int, f func(i int) error) (failed int, first error) {
	var (
		next atomic.Int64
		bad  atomic.Int64
		mu   sync.Mutex
		wg   sync.WaitGroup
	)
	for range workers {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				if err := f(i); err != nil {
					bad.Add(1)
					mu.Lock()
					if first == nil {
						first = fmt.Errorf("connection %d: %w", i, err)
					}
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	return int(bad.Load()), first
}

// TestTenThousandConnections: 10,000 idle clients connected at once, each
// answered PING; a load of 50 more clients (go-redis, and redis-benchmark
// if it is installed) runs while they are held, without an error; then
// every held connection still answers PING, and the connection past
// --maxclients is refused with Redis's error. The server's RSS is measured
// before and after, and per connection (the figures). Run it without
// -race for figures worth keeping (a race build's memory is several times
// larger):
//
//	READSTATES_SERVER_RACE=0 go test -count=1 -run TestTenThousandConnections -v ./tests/
func TestTenThousandConnections(t *testing.T) {
	if testing.Short() {
		t.Skip("10,000 connections: skipped with -short")
	}
	const (
		held        = 10_000
		loadClients = 50
		benchConns  = 40
		maxClients  = held + 100 // the held ones, the load, INFO, and room to spare
		cmdsEach    = 2000       // RSINCR per go-redis load client
		pipeline    = 50
	)
	raiseOpenFiles(t, held+2048) // the server, a child, inherits it
	sp := startServer(t, "--maxclients", strconv.Itoa(maxClients))
	ctx := testCtx(t)
	pid := sp.cmd.Process.Pid
	name := figureName(t)
	raceServer := raceEnabled
	if v, ok := lookupEnvBool("READSTATES_SERVER_RACE"); ok {
		raceServer = v
	}
	info := sp.goRedis(t, 2, func(o *redis.Options) { o.PoolSize = 1 })
	connected := func() int64 {
		n, _ := infoInt(t, infoFields(t, ctx, info, "clients"), "connected_clients")
		return n
	}
	connected()                        // INFO's own connection is open before the baseline
	time.Sleep(200 * time.Millisecond) // let the start-up settle
	rss0, haveRSS := procRSS(pid)

	// 10,000 connections, each with a PING answered.
	conns := make([]*heldConn, held)
	t.Cleanup(func() {
		for _, h := range conns {
			if h != nil {
				h.c.Close()
			}
		}
	})
	start := time.Now()
	failed, err := forEachParallel(held, 32, func(i int) error {
		c, err := net.DialTimeout("tcp", sp.addr, 10*time.Second)
		if err != nil {
			return err
		}
		h := &heldConn{c: c, r: bufio.NewReaderSize(c, 64)}
		conns[i] = h
		return h.ping(30 * time.Second)
	})
	openTime := time.Since(start)
	if failed > 0 {
		t.Fatalf("%d of %d connections failed to open or answer PING; first: %v", failed, held, err)
	}
	if n := connected(); n != held+1 {
		t.Errorf("INFO connected_clients with %d connections held and INFO's: got %d, want %d", held, n, held+1)
	}
	time.Sleep(200 * time.Millisecond)
	rss1, _ := procRSS(pid)

	// The load, while they are held: 50 go-redis clients, each incrementing
	// read states of its own in pipelines, every reply checked.
	start = time.Now()
	var wg sync.WaitGroup
	var loadErrs atomic.Int64
	var loaders []*redis.Client
	for g := range loadClients {
		c := sp.goRedis(t, 2+g%2, func(o *redis.Options) { o.PoolSize = 1 })
		loaders = append(loaders, c)
		wg.Go(func() {
			counts := map[int64]int64{}
			for sent := 0; sent < cmdsEach; sent += pipeline {
				pipe := c.Pipeline()
				cmds := make([]*redis.Cmd, pipeline)
				chans := make([]int64, pipeline)
				for j := range cmds {
					chans[j] = int64((sent + j) % 97)
					cmds[j] = pipe.Do(ctx, "RSINCR", 4_000_000+g, chans[j], 1)
				}
				_, _ = pipe.Exec(ctx)
				for j, cmd := range cmds {
					counts[chans[j]]++
					if got, err := cmd.Int64(); err != nil || got != counts[chans[j]] {
						if loadErrs.Add(1) <= 5 {
							t.Errorf("load client %d: %v: got %d, %v, want %d", g, cmd.Args(), got, err, counts[chans[j]])
						}
						return
					}
				}
			}
		})
	}
	wg.Wait()
	loadTime := time.Since(start)
	if loadErrs.Load() > 0 {
		t.FailNow()
	}
	total := loadClients * cmdsEach
	t.Logf("FIGURE: %s go-redis load with %d connections held: %d clients, %d RSINCR in pipelines of %d, in %v (%.0f/s), no errors",
		name, held, loadClients, total, pipeline, loadTime.Round(time.Millisecond), float64(total)/loadTime.Seconds())
	if _, err := exec.LookPath("redis-benchmark"); err == nil {
		rps := redisBenchmark(t, sp, "-n", "20000", "-r", "100000", "-c", strconv.Itoa(benchConns), "-P", "16",
			"RSINCR", "__rand_int__", "__rand_int__")
		t.Logf("FIGURE: %s redis-benchmark -c %d -P 16 RSINCR with %d connections held: %v requests/s",
			name, benchConns, held, rps)
	} else {
		t.Logf("redis-benchmark is not installed: the go-redis load only")
	}
	rss2, _ := procRSS(pid)

	// Every held connection still answers.
	start = time.Now()
	if failed, err := forEachParallel(held, 32, func(i int) error { return conns[i].ping(30 * time.Second) }); failed > 0 {
		t.Fatalf("after the load, %d of the %d held connections did not answer PING; first: %v", failed, held, err)
	}
	pingTime := time.Since(start)

	// Past --maxclients: the load's connections are closed; fill up to
	// the limit, and the next one is refused.
	for _, c := range loaders {
		c.Close()
	}
	deadline := time.Now().Add(20 * time.Second)
	for connected() != held+1 {
		if time.Now().After(deadline) {
			t.Fatalf("INFO connected_clients: got %d 20 s after the load's connections closed, want %d", connected(), held+1)
		}
		time.Sleep(50 * time.Millisecond)
	}
	room := maxClients - held - 1
	extra := make([]*heldConn, 0, room)
	t.Cleanup(func() {
		for _, h := range extra {
			h.c.Close()
		}
	})
	for range room {
		c, err := net.DialTimeout("tcp", sp.addr, 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		h := &heldConn{c: c, r: bufio.NewReader(c)}
		extra = append(extra, h)
		if err := h.ping(10 * time.Second); err != nil {
			t.Fatalf("connection %d of --maxclients %d: %v", held+1+len(extra), maxClients, err)
		}
	}
	over, err := net.DialTimeout("tcp", sp.addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer over.Close()
	_ = over.SetDeadline(time.Now().Add(10 * time.Second))
	_, _ = io.WriteString(over, "*1\r\n$4\r\nPING\r\n")
	got, err := io.ReadAll(over)
	if string(got) != "-ERR max number of clients reached\r\n" {
		t.Errorf("connection %d of --maxclients %d: got %q, %v; want \"-ERR max number of clients reached\" and a close",
			maxClients+1, maxClients, got, err)
	}

	build := "without -race"
	if raceServer {
		build = "race build: memory several times that of a release build"
	}
	t.Logf("FIGURE: %s %d connections opened and PINGed in %v (32 dialers); all PINGed again after the load in %v",
		name, held, openTime.Round(time.Millisecond), pingTime.Round(time.Millisecond))
	if !haveRSS {
		t.Logf("no /proc: RSS not measured")
		return
	}
	perConn := (rss1 - rss0) / held
	t.Logf("FIGURE: %s server RSS (%s, %s/%s): %s idle, %s with %d connections, %s after the load; %d bytes (%.1f KiB) per connection",
		name, build, runtime.GOOS, runtime.GOARCH, mib(rss0), mib(rss1), held, mib(rss2), perConn, float64(perConn)/1024)
	// Generous: a goroutine stack and redcon's 4 KiB reader per
	// connection come to ~10-20 KiB; a race build more.
	limit := int64(64 << 10)
	if raceServer {
		limit = 256 << 10
	}
	if perConn > limit {
		t.Errorf("server RSS per idle connection: %d bytes, want at most %d", perConn, limit)
	}
	if most := held * limit; rss2 > most {
		t.Errorf("server RSS after the load with %d connections held: %s, want at most %s", held, mib(rss2), mib(most))
	}
}

func lookupEnvBool(name string) (bool, bool) {
	switch os.Getenv(name) {
	case "1":
		return true, true
	case "0":
		return false, true
	}
	return false, false
}
