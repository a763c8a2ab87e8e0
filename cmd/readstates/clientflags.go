package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/readstates/readstates/commands"
	"github.com/readstates/readstates/server"
)

// The client-facing flags beyond the basic ones: protocol limits, output
// limits, TLS.

// addClientFlags defines them on fs.
func addClientFlags(fs *flag.FlagSet, o *options) {
	s := &o.server
	s.MaxBulkBytes = server.DefaultMaxBulkBytes
	fs.Var((*byteSize)(&s.MaxBulkBytes), "proto-max-bulk-len",
		"largest argument of a request, as Redis's proto-max-bulk-len (512mb there); a read-state argument is at most 20 bytes, so 1mb is already generous (a `size`: bytes, or kb, mb, gb)")
	fs.IntVar(&s.MaxArgs, "proto-max-multibulk-len", server.DefaultMaxArgs,
		"most arguments of a request; RSMGET takes at most --max-channels channel_ids anyway")
	s.MaxRequestBytes = server.DefaultMaxRequestBytes
	fs.Var((*byteSize)(&s.MaxRequestBytes), "client-query-buffer-limit",
		"largest whole request (a `size`), as Redis's client-query-buffer-limit (1gb there): a request is buffered whole before it runs; the largest RSMGET is about 260kb")
	s.OutputLimit = server.DefaultOutputLimit
	fs.Var((*byteSize)(&s.OutputLimit), "client-output-limit",
		"close a client with more than this `size` of replies waiting, as Redis's hard client-output-buffer-limit; a client may write a whole pipeline before it reads, and the server reads on while its replies wait up to this (0: no limit)")
	fs.DurationVar(&s.WriteTimeout, "client-write-timeout", server.DefaultWriteTimeout,
		"close a client that takes none of its replies for this long once the socket buffers are full (0: never)")
	fs.IntVar(&s.TrackingTableMaxKeys, "tracking-table-max-keys", commands.DefaultTrackingTableMaxKeys,
		"most users the client-side caching table remembers, as Redis's tracking-table-max-keys; past it some are forgotten and their clients told to drop them")
	t := &o.tls
	fs.StringVar(&t.certFile, "tls-cert", "", "PEM certificate (chain) of the server: with --tls-key, --addr serves TLS only (1.2 or later)")
	fs.StringVar(&t.keyFile, "tls-key", "", "PEM private key of --tls-cert")
	fs.StringVar(&t.caFile, "tls-ca-cert", "", "PEM CA certificates that sign client certificates")
	fs.StringVar(&t.authClients, "tls-auth-clients", "yes", "client certificates, as Redis's tls-auth-clients: yes (required, needs --tls-ca-cert), optional (checked if sent) or no")
}

// checkClientFlags checks the values of the client flags once parsed, and
// maps their "0: off" to the server's "negative: off".
func checkClientFlags(o *options) error {
	s := &o.server
	var errs []error
	for _, l := range []struct {
		name string
		v    int
	}{
		{"--proto-max-bulk-len", s.MaxBulkBytes},
		{"--proto-max-multibulk-len", s.MaxArgs},
		{"--client-query-buffer-limit", s.MaxRequestBytes},
		{"--tracking-table-max-keys", s.TrackingTableMaxKeys},
	} {
		if l.v < 1 || l.v > maxSize {
			errs = append(errs, fmt.Errorf("%s: %d is not between 1 and %d", l.name, l.v, maxSize))
		}
	}
	switch {
	case s.OutputLimit < 0 || s.OutputLimit > maxSize:
		errs = append(errs, fmt.Errorf("--client-output-limit: %d is not between 0 (no limit) and %d", s.OutputLimit, maxSize))
	case s.OutputLimit == 0:
		s.OutputLimit = -1
	}
	switch {
	case s.WriteTimeout < 0:
		errs = append(errs, fmt.Errorf("--client-write-timeout: %v is negative (0 turns it off)", s.WriteTimeout))
	case s.WriteTimeout == 0:
		s.WriteTimeout = -1
	}
	if err := o.tls.check(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// tlsOptions are the TLS flags.
type tlsOptions struct {
	certFile, keyFile, caFile string
	authClients               string
}

func (t *tlsOptions) enabled() bool { return t.certFile != "" || t.keyFile != "" }

// check validates the combination of flags, before any file is read.
func (t *tlsOptions) check() error {
	switch t.authClients {
	case "yes", "optional", "no":
	default:
		return fmt.Errorf("--tls-auth-clients: %q is not yes, optional or no", t.authClients)
	}
	if !t.enabled() {
		if t.caFile != "" {
			return errors.New("--tls-ca-cert: TLS is off; it needs --tls-cert and --tls-key")
		}
		return nil
	}
	if t.certFile == "" || t.keyFile == "" {
		return errors.New("--tls-cert and --tls-key: give both to serve TLS")
	}
	if t.authClients != "no" && t.caFile == "" {
		// Redis refuses this too: checking client certificates needs the
		// CA that signs them.
		return fmt.Errorf("--tls-auth-clients %s needs --tls-ca-cert to check client certificates; give it, or set --tls-auth-clients no", t.authClients)
	}
	return nil
}

// config loads the files into a TLS configuration; nil if TLS is off.
func (t *tlsOptions) config() (*tls.Config, error) {
	if !t.enabled() {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(t.certFile, t.keyFile)
	if err != nil {
		return nil, fmt.Errorf("--tls-cert, --tls-key: %w", err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if t.caFile != "" {
		b, err := os.ReadFile(t.caFile)
		if err != nil {
			return nil, fmt.Errorf("--tls-ca-cert: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(b) {
			return nil, fmt.Errorf("--tls-ca-cert: no PEM certificate in %s", t.caFile)
		}
		cfg.ClientCAs = pool
	}
	switch t.authClients {
	case "yes":
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	case "optional":
		cfg.ClientAuth = tls.VerifyClientCertIfGiven
	}
	return cfg, nil
}

// maxSize bounds the size flags (the server clamps to it too).
const maxSize = 1 << 40

// byteSize is an int flag of bytes that takes Redis's units, case
// insensitively: b, k (1000), kb (1024), m, mb, g, gb.
type byteSize int

var sizeUnits = []struct {
	suffix string
	mult   int64
}{ // longest first
	{"kb", 1 << 10}, {"mb", 1 << 20}, {"gb", 1 << 30},
	{"k", 1000}, {"m", 1000 * 1000}, {"g", 1000 * 1000 * 1000}, {"b", 1},
}

func (b *byteSize) Set(s string) error {
	v := strings.ToLower(strings.TrimSpace(s))
	mult := int64(1)
	for _, u := range sizeUnits {
		if strings.HasSuffix(v, u.suffix) {
			v, mult = strings.TrimSpace(strings.TrimSuffix(v, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 || n > maxSize/mult {
		return fmt.Errorf("%q is not a size in bytes up to 1024gb (units: kb, mb, gb)", s)
	}
	*b = byteSize(n * mult)
	return nil
}

func (b *byteSize) String() string {
	if b == nil {
		return "0"
	}
	n := int64(*b)
	if n != 0 {
		for _, u := range [...]int{2, 1, 0} { // gb, mb, kb
			if u := sizeUnits[u]; n%u.mult == 0 {
				return strconv.FormatInt(n/u.mult, 10) + u.suffix
			}
		}
	}
	return strconv.FormatInt(n, 10)
}
