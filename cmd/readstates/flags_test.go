package main

import (
	"bytes"
	"errors"
	"flag"
	"strings"
	"testing"
	"time"
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
