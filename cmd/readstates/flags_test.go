package main

import (
	"bytes"
	"crypto/tls"
	"errors"
	"flag"
	"strings"
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
