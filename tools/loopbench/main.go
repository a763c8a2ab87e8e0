// Command loopbench serves the readstates commands over RESP with one of
// three event-loop layers, to compare them side by side (see README.md and
// bench.sh): "epoll", a minimal hand-written epoll loop in the style of
// server/loop_linux.go; "gnet", github.com/panjf2000/gnet/v2; and
// "netpoll", github.com/cloudwego/netpoll. All three use the same RESP
// parser (parseCommand), the same dispatcher (commands.Dispatcher with
// DispatchNoWait) and the same engine (persist.Engine over an in-memory
// store), so only the connection layer differs.
//
// On SIGUSR1 it prints "loopbench: mallocs=N" (runtime.MemStats.Mallocs)
// to stderr, so a script can count heap allocations over a run; SIGTERM
// or SIGINT ends it.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"syscall"
	"time"

	"github.com/readstates/readstates/commands"
	"github.com/readstates/readstates/persist"
)

func main() {
	driver := flag.String("driver", "epoll", "event-loop layer: epoll, gnet or netpoll")
	addr := flag.String("addr", "127.0.0.1:6390", "address to serve on")
	loops := flag.Int("loops", 0, "event loops (netpoll: pollers); 0 = GOMAXPROCS")
	entries := flag.Int("cache-entries", 2_000_000, "cache capacity in read states")
	flag.Parse()
	if *loops <= 0 {
		*loops = runtime.GOMAXPROCS(0)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	engine, err := persist.NewEngine(persist.EngineConfig{
		Store:         newMemStore(),
		CacheEntries:  *entries,
		FlushInterval: 24 * time.Hour, // no flush under a run
		Logger:        log,
	})
	if err != nil {
		fatal(err)
	}
	go func() { _ = engine.Run(ctx) }()
	_, p, _ := net.SplitHostPort(*addr)
	port, _ := strconv.Atoi(p)
	d, err := commands.New(commands.Config{
		Backend: engine,
		NoWait:  engine.NoWait(),
		Rerun:   engine.Rerun(),
		Stats:   engine,
		Host:    host{port: port},
		Version: "loopbench",
	})
	if err != nil {
		fatal(err)
	}

	var stop func()
	switch *driver {
	case "epoll":
		stop, err = serveEpoll(*addr, *loops, d)
	case "gnet":
		stop, err = serveGnet(*addr, *loops, d)
	case "netpoll":
		stop, err = serveNetpoll(*addr, *loops, d)
	default:
		err = fmt.Errorf("unknown driver %q (epoll, gnet, netpoll)", *driver)
	}
	if err != nil {
		fatal(err)
	}
	fmt.Fprintf(os.Stderr, "loopbench: %s serving on %s with %d loops, GOMAXPROCS %d\n", *driver, *addr, *loops, runtime.GOMAXPROCS(0))

	sig := make(chan os.Signal, 4)
	signal.Notify(sig, syscall.SIGUSR1, syscall.SIGTERM, syscall.SIGINT)
	for s := range sig {
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		fmt.Fprintf(os.Stderr, "loopbench: mallocs=%d\n", ms.Mallocs)
		if s != syscall.SIGUSR1 {
			break
		}
	}
	stop()
	cancel()
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "loopbench:", err)
	os.Exit(1)
}
