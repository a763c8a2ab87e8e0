package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"log/slog"
	"os"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/readstates/readstates/internal/testcerts"
)

func env(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestFlagsFromEnvironment(t *testing.T) {
	var out bytes.Buffer
	o, err := parseFlags([]string{"--flush-interval", "5s", "-cassandra-hosts", "a, b:9043,"}, env(map[string]string{
		"READSTATES_ADDR":               "127.0.0.1:7000",
		"READSTATES_FLUSH_INTERVAL":     "1m", // the flag wins
		"READSTATES_CASSANDRA_PASSWORD": "pw",
		"READSTATES_CACHE_ENTRIES":      "42",
	}), &out)
	if err != nil {
		t.Fatalf("parseFlags: %v\n%s", err, out.String())
	}
	if o.server.Addr != "127.0.0.1:7000" || o.flushInterval != 5*time.Second || o.cassandra.Password != "pw" ||
		o.cacheEntries != 42 || strings.Join(o.cassandra.Hosts, "|") != "a|b:9043" {
		t.Errorf("got %+v", o)
	}
	// Defaults.
	o, err = parseFlags(nil, env(nil), &out)
	if err != nil {
		t.Fatal(err)
	}
	if o.server.Addr != "127.0.0.1:6380" || o.cacheEntries != 1_000_000 || o.flushInterval != 30*time.Second ||
		o.server.MaxClients != 10000 || o.server.MetricsAddr != "" || o.dataDir != "data" || len(o.cassandra.Hosts) != 0 {
		t.Errorf("defaults: got %+v", o)
	}
}

func TestFlagErrors(t *testing.T) {
	var out bytes.Buffer
	if _, err := parseFlags(nil, env(map[string]string{"READSTATES_CACHE_ENTRIES": "many"}), &out); err == nil ||
		!strings.Contains(out.String(), "$READSTATES_CACHE_ENTRIES") {
		t.Errorf("bad env value: %v, %q", err, out.String())
	}
	if _, err := parseFlags([]string{"extra"}, env(nil), &out); err == nil {
		t.Error("a stray argument was accepted")
	}
	out.Reset()
	if _, err := parseFlags([]string{"--help"}, env(nil), &out); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("--help: %v", err)
	}
	// Every flag documents its variable.
	for _, line := range strings.Split(out.String(), "\n") {
		if strings.HasPrefix(line, "  -") {
			name := strings.Fields(line)[0][1:]
			if !strings.Contains(out.String(), "[$"+envName(name)+"]") {
				t.Errorf("--help does not name the variable of -%s", name)
			}
		}
	}
	if code := run([]string{"--log-format", "xml"}, env(nil), &out); code != 2 {
		t.Errorf("bad --log-format: exit %d, want 2", code)
	}
}

func TestClientFlags(t *testing.T) {
	var out bytes.Buffer
	o, err := parseFlags(nil, env(nil), &out)
	if err != nil {
		t.Fatal(err)
	}
	s := o.server
	if s.MaxBulkBytes != 1<<20 || s.MaxArgs != 1<<16 || s.MaxRequestBytes != 16<<20 || s.OutputLimit != 64<<20 ||
		s.WriteTimeout != 10*time.Second || s.TLS != nil || o.tls.enabled() || o.tls.authClients != "yes" {
		t.Errorf("defaults: %+v, %+v", s, o.tls)
	}
	o, err = parseFlags([]string{"--proto-max-bulk-len", "2MB", "--client-query-buffer-limit=1k", "--proto-max-multibulk-len", "9",
		"--client-output-limit", "0", "--client-write-timeout", "0", "--tls-cert", "c", "--tls-key", "k", "--tls-auth-clients", "no"},
		env(map[string]string{"READSTATES_PROTO_MAX_BULK_LEN": "5", "READSTATES_CLIENT_OUTPUT_LIMIT": "3gb"}), &out)
	if err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	s = o.server
	// 0 turns the output limit and the write timeout off: negative for the server.
	if s.MaxBulkBytes != 2<<20 || s.MaxRequestBytes != 1000 || s.MaxArgs != 9 || s.OutputLimit != -1 || s.WriteTimeout != -1 || !o.tls.enabled() {
		t.Errorf("got %+v, %+v", s, o.tls)
	}
	o, err = parseFlags(nil, env(map[string]string{"READSTATES_PROTO_MAX_BULK_LEN": "512kb"}), &out)
	if err != nil || o.server.MaxBulkBytes != 512<<10 {
		t.Errorf("$READSTATES_PROTO_MAX_BULK_LEN=512kb: %v, %d", err, o.server.MaxBulkBytes)
	}
	for _, args := range [][]string{
		{"--proto-max-bulk-len", "0"},
		{"--proto-max-bulk-len", "-1"},
		{"--proto-max-bulk-len", "1tb"},
		{"--proto-max-bulk-len", "2000gb"},
		{"--client-query-buffer-limit", "lots"},
		{"--proto-max-multibulk-len", "0"},
		{"--client-write-timeout", "-1s"},
		{"--tls-cert", "c"},
		{"--tls-key", "k"},
		{"--tls-ca-cert", "ca"},
		{"--tls-cert", "c", "--tls-key", "k"}, // auth-clients yes without a CA
		{"--tls-cert", "c", "--tls-key", "k", "--tls-auth-clients", "optional"},
		{"--tls-cert", "c", "--tls-key", "k", "--tls-ca-cert", "ca", "--tls-auth-clients", "maybe"},
	} {
		out.Reset()
		if _, err := parseFlags(args, env(nil), &out); err == nil || out.Len() == 0 {
			t.Errorf("%q: accepted (%v), or no message: %q", args, err, out.String())
		}
	}
	// Sizes print as they are best read.
	for n, want := range map[int]string{0: "0", 1000: "1000", 1024: "1kb", 3 << 20: "3mb", 1536 << 10: "1536kb", 2 << 30: "2gb"} {
		if got := (*byteSize)(&n).String(); got != want {
			t.Errorf("byteSize(%d) = %q, want %q", n, got, want)
		}
	}
}

// TestTLSFiles: the TLS flags load PEM files, and bad files fail the start
// with a message that names the flag.
func TestTLSFiles(t *testing.T) {
	dir := t.TempDir()
	certs, err := testcerts.Write(dir)
	if err != nil {
		t.Fatal(err)
	}
	for auth, want := range map[string]tls.ClientAuthType{"yes": tls.RequireAndVerifyClientCert, "optional": tls.VerifyClientCertIfGiven, "no": tls.NoClientCert} {
		to := tlsOptions{certFile: certs.ServerCert, keyFile: certs.ServerKey, caFile: certs.CAFile, authClients: auth}
		cfg, err := to.config()
		if err != nil || cfg.ClientAuth != want || cfg.MinVersion != tls.VersionTLS12 || len(cfg.Certificates) != 1 || cfg.ClientCAs == nil {
			t.Errorf("auth %s: %+v, %v", auth, cfg, err)
		}
	}
	for _, to := range []tlsOptions{
		{certFile: certs.ServerCert, keyFile: certs.ClientKey, authClients: "no"},                           // not its key
		{certFile: dir + "/nope", keyFile: certs.ServerKey, authClients: "no"},                              // missing
		{certFile: certs.ServerCert, keyFile: certs.ServerKey, caFile: certs.ServerKey, authClients: "yes"}, // no certificate in the CA file
	} {
		if _, err := to.config(); err == nil || !strings.Contains(err.Error(), "--tls-") {
			t.Errorf("%+v: %v, want an error naming the flag", to, err)
		}
	}
}

// TestShutdownBudgetFlags: the drain and the final flush have a budget
// each, both settable by flag and variable.
func TestShutdownBudgetFlags(t *testing.T) {
	var out bytes.Buffer
	o, err := parseFlags(nil, env(nil), &out)
	if err != nil {
		t.Fatal(err)
	}
	if o.drainTimeout != 10*time.Second || o.shutdownTimeout != time.Minute {
		t.Errorf("defaults: --drain-timeout %v, --shutdown-timeout %v; want 10s, 1m", o.drainTimeout, o.shutdownTimeout)
	}
	o, err = parseFlags([]string{"--drain-timeout", "2s"}, env(map[string]string{"READSTATES_SHUTDOWN_TIMEOUT": "5m"}), &out)
	if err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	if o.drainTimeout != 2*time.Second || o.shutdownTimeout != 5*time.Minute {
		t.Errorf("got --drain-timeout %v, --shutdown-timeout %v; want 2s, 5m", o.drainTimeout, o.shutdownTimeout)
	}
}

// syncBuffer is a bytes.Buffer safe for the logger's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// TestShutdownTriggerSignals: the first SIGTERM or SHUTDOWN starts the
// shutdown; every later signal is logged and ignored instead of killing
// the process (this test's process: it would die if the signal were not
// caught).
func TestShutdownTriggerSignals(t *testing.T) {
	self, err := os.FindProcess(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	signalSelf := func(sig os.Signal) {
		t.Helper()
		if err := self.Signal(sig); err != nil {
			t.Skipf("cannot signal this process: %v", err)
		}
	}
	waitLog := func(what string, n int) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); strings.Count(logs.String(), what) < n; {
			if time.Now().After(deadline) {
				t.Fatalf("after 10 s, %d %q in the log, want %d:\n%s", strings.Count(logs.String(), what), what, n, logs.String())
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	waitDone := func(ctx context.Context) {
		t.Helper()
		select {
		case <-ctx.Done():
		case <-time.After(10 * time.Second):
			t.Fatal("no shutdown requested after 10 s")
		}
	}

	// SHUTDOWN first, twice, then a signal.
	sd := catchShutdown(log)
	sd.request()
	sd.request()
	waitDone(sd.ctx)
	if cause := context.Cause(sd.ctx); cause == nil || !strings.Contains(cause.Error(), "SHUTDOWN") {
		t.Errorf("cause after SHUTDOWN: %v", cause)
	}
	signalSelf(syscall.SIGTERM)
	waitLog("signal ignored: shutdown in progress", 1)
	sd.close()

	// A signal first, then two more and a SHUTDOWN.
	logs.mu.Lock()
	logs.b.Reset()
	logs.mu.Unlock()
	sd = catchShutdown(log)
	defer sd.close()
	signalSelf(syscall.SIGTERM)
	waitDone(sd.ctx)
	if cause := context.Cause(sd.ctx); cause == nil || !strings.Contains(cause.Error(), "terminated") {
		t.Errorf("cause after SIGTERM: %v", cause)
	}
	signalSelf(syscall.SIGINT)
	waitLog("signal ignored: shutdown in progress", 1)
	signalSelf(syscall.SIGTERM)
	waitLog("signal ignored: shutdown in progress", 2)
	sd.request()
	if got := strings.Count(logs.String(), "signal received: shutting down"); got != 1 {
		t.Errorf("%d shutdowns started, want 1:\n%s", got, logs.String())
	}
}

func TestJournalAndBudgetFlagErrors(t *testing.T) {
	for _, args := range [][]string{
		{"--journal-fsync", "sometimes"}, {"--journal-fsync", "0s"},
		{"--shutdown-timeout", "0s"}, {"--drain-timeout", "-1s"},
	} {
		var out bytes.Buffer
		if _, err := parseFlags(args, env(nil), &out); err == nil || !strings.Contains(out.String(), args[0]) {
			t.Errorf("%v: got %v, %q; want an error naming the flag", args, err, out.String())
		}
	}
	o, err := parseFlags([]string{"--journal-fsync", "always"}, env(map[string]string{"READSTATES_JOURNAL": "false"}), new(bytes.Buffer))
	if err != nil || o.journal || !o.journalPolicy.Always {
		t.Errorf("journal flags: %+v, %v", o, err)
	}
}

// TestClusterFlags: cluster mode needs Cassandra, a quorum consistency
// and a lease of a second or more.
func TestClusterFlags(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string // "" for accepted
	}{
		{[]string{"--cluster"}, "--cluster needs --cassandra-hosts"},
		{[]string{"--cluster", "--cassandra-hosts", "h", "--cassandra-consistency", "ONE"}, "needs a quorum consistency"},
		{[]string{"--cluster", "--cassandra-hosts", "h", "--cluster-lease", "500ms"}, "--cluster-lease"},
		{[]string{"--cluster", "--cassandra-hosts", "h", "--cassandra-consistency", "quorum"}, ""},
	} {
		var out bytes.Buffer
		o, err := parseFlags(c.args, env(nil), &out)
		switch {
		case c.want == "" && (err != nil || !o.cluster):
			t.Errorf("%q: %v %s", c.args, err, out.String())
		case c.want != "" && (err == nil || !strings.Contains(out.String(), c.want)):
			t.Errorf("%q: %v %q, want an error with %q", c.args, err, out.String(), c.want)
		}
	}
}

// TestLoopProcs: the runtime gets a P per event loop on top of its own,
// unless the operator set GOMAXPROCS or no loop runs; the loops are
// counted from the Ps before the change.
func TestLoopProcs(t *testing.T) {
	base := runtime.GOMAXPROCS(0)
	t.Cleanup(func() { runtime.GOMAXPROCS(base) })
	log := slog.New(slog.DiscardHandler)
	for _, c := range []struct {
		name           string
		loops          int
		tls, procsSet  bool
		wantLoops      int
		wantProcsAdded int
	}{
		{"default", 0, false, false, min(base, 4), min(base, 4)},
		{"two loops", 2, false, false, 2, 2},
		{"goroutines", -1, false, false, -1, 0},
		{"tls", 0, true, false, min(base, 4), 0},
		{"GOMAXPROCS set", 3, false, true, 3, 0},
	} {
		runtime.GOMAXPROCS(base)
		loops := loopProcs(c.loops, c.tls, c.procsSet, log)
		added := runtime.GOMAXPROCS(0) - base
		if runtime.GOOS != "linux" {
			c.wantProcsAdded = 0
		}
		if loops != c.wantLoops || added != c.wantProcsAdded {
			t.Errorf("%s: %d loops, %d Ps added; want %d and %d", c.name, loops, added, c.wantLoops, c.wantProcsAdded)
		}
	}
}
