package server

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/readstates/readstates/internal/testcerts"
	"github.com/redis/go-redis/v9"
)

// rsmget is one RSMGET request for n channel_ids.
func rsmget(n int) []byte {
	var sb strings.Builder
	sb.WriteString("*" + strconv.Itoa(n+2) + "\r\n$6\r\nRSMGET\r\n$1\r\n1\r\n")
	for i := range n {
		c := strconv.Itoa(i + 1)
		sb.WriteString("$" + strconv.Itoa(len(c)) + "\r\n" + c + "\r\n")
	}
	return []byte(sb.String())
}

// spyListener records the largest write (one batch of replies) over the
// connections it accepts, and can make them report another remote address.
type spyListener struct {
	net.Listener
	maxWrite atomic.Int64
	remote   net.Addr // if set, the RemoteAddr every connection reports
}

type spyConn struct {
	net.Conn
	l *spyListener
}

func (l *spyListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &spyConn{c, l}, nil
}

func storeMax(a *atomic.Int64, v int) {
	for old := a.Load(); int64(v) > old && !a.CompareAndSwap(old, int64(v)); old = a.Load() {
	}
}

func (c *spyConn) Write(b []byte) (int, error) {
	storeMax(&c.l.maxWrite, len(b))
	return c.Conn.Write(b)
}

func (c *spyConn) RemoteAddr() net.Addr {
	if c.l.remote != nil {
		return c.l.remote
	}
	return c.Conn.RemoteAddr()
}

// startOn serves on ln with a fake backend until the test ends. A
// listener the test wraps is served with a goroutine per connection (the
// event loops need the socket itself).
func startOn(t *testing.T, ln net.Listener, mod func(*Config)) *testServer {
	t.Helper()
	b := newFakeBackend()
	cfg := Config{Logger: testLogger(t), Version: "test", EventLoops: testEventLoops(t)}
	if mod != nil {
		mod(&cfg)
	}
	s, err := New(cfg, b)
	if err != nil {
		t.Fatal(err)
	}
	ts := &testServer{Server: s, backend: b, addr: ln.Addr().String(), errc: make(chan error, 1)}
	go func() { ts.errc <- s.Serve(context.Background(), ln) }()
	select {
	case <-s.Ready():
	case err := <-ts.errc:
		t.Fatalf("Serve: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	})
	return ts
}

// TestClientThatNeverReads: a client that pipelines large RSMGETs and
// never reads its replies is closed once the write timeout passes with the
// socket buffers full; meanwhile other clients are served.
func TestClientThatNeverReads(t *testing.T) {
	ts := startServer(t, func(c *Config) { c.WriteTimeout = 300 * time.Millisecond })
	c, err := net.Dial("tcp", ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	req := rsmget(1000)
	wrote := make(chan error, 1)
	go func() {
		for {
			// The server reads on while its replies wait, until the
			// write timeout closes the connection.
			_ = c.SetWriteDeadline(time.Now().Add(20 * time.Second))
			if _, err := c.Write(req); err != nil {
				wrote <- err
				return
			}
		}
	}()
	other := ts.client(t, nil)
	ctx := context.Background()
	start := time.Now()
	for {
		if err := other.Do(ctx, "RSMGET", 1, 1, 2).Err(); err != nil {
			t.Fatalf("another client, while one does not read: %v", err)
		}
		select {
		case err := <-wrote:
			if !isReset(err) && !strings.Contains(err.Error(), "broken pipe") {
				t.Fatalf("the client that never reads: %v, want its connection reset", err)
			}
			t.Logf("closed after %v", time.Since(start))
			waitFor(t, func() bool { return (*host)(ts.Server).HostStats().ConnectedClients == 1 })
			return
		default:
		}
		if time.Since(start) > 10*time.Second {
			t.Fatal("the client that never reads is still connected after 10s (write timeout 300ms)")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestOutputLimit: replies over the output limit are not sent; the
// connection is closed, as Redis's hard limit does. Others are served.
func TestOutputLimit(t *testing.T) {
	ts := startServer(t, func(c *Config) { c.OutputLimit = 16 << 10 })
	c := ts.raw(t)
	c.send("PING\r\n")
	c.expect("+PONG\r\n")
	c.send(string(rsmget(2000))) // ~24 KB of replies
	c.expectEOF()
	small := ts.raw(t)
	small.send(string(rsmget(100)))
	small.expect("*100\r\n*2\r\n:0\r\n:0\r\n")
}

// startTLS serves TLS with a fresh CA, server and client certificate.
func startTLS(t *testing.T, auth tls.ClientAuthType, mod func(*Config)) (*testServer, *testcerts.Set) {
	t.Helper()
	certs, err := testcerts.Write(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ts := startServer(t, func(c *Config) {
		c.TLS = &tls.Config{Certificates: []tls.Certificate{certs.Server}, ClientCAs: certs.CA, ClientAuth: auth}
		if mod != nil {
			mod(c)
		}
	})
	return ts, certs
}

func TestTLS(t *testing.T) {
	ts, certs := startTLS(t, tls.RequireAndVerifyClientCert, nil)
	ctx := context.Background()
	good := ts.client(t, &redis.Options{TLSConfig: &tls.Config{RootCAs: certs.CA, Certificates: []tls.Certificate{certs.Client}}})
	for _, want := range []int64{1, 2} {
		if n, err := good.Do(ctx, "RSINCR", 1, 2).Int64(); err != nil || n != want {
			t.Fatalf("RSINCR over TLS: %d, %v; want %d", n, err, want)
		}
	}
	// A plaintext client fails (the server sees no TLS handshake and
	// closes the connection), and the server goes on.
	plain := ts.client(t, &redis.Options{MaxRetries: -1})
	if err := plain.Ping(ctx).Err(); err == nil {
		t.Error("a plaintext client was served on the TLS port")
	}
	// No client certificate, or one the CA did not sign: refused.
	nocert := ts.client(t, &redis.Options{MaxRetries: -1, TLSConfig: &tls.Config{RootCAs: certs.CA}})
	if err := nocert.Ping(ctx).Err(); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("PING without a client certificate: %v, want a certificate error", err)
	}
	self := ts.client(t, &redis.Options{MaxRetries: -1, TLSConfig: &tls.Config{RootCAs: certs.CA, Certificates: []tls.Certificate{certs.Server}}})
	if err := self.Ping(ctx).Err(); err == nil {
		t.Error("PING with a server certificate as the client's: served")
	}
	// TLS 1.1 is refused.
	old := ts.client(t, &redis.Options{MaxRetries: -1, TLSConfig: &tls.Config{RootCAs: certs.CA, Certificates: []tls.Certificate{certs.Client}, MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11}})
	if err := old.Ping(ctx).Err(); err == nil {
		t.Error("a TLS 1.1 client was served")
	}
	if err := good.Ping(ctx).Err(); err != nil {
		t.Fatalf("PING after the refused clients: %v", err)
	}
	// The guard reads the decrypted stream: a protocol error is answered
	// and closes the connection, as without TLS.
	c, err := tls.Dial("tcp", ts.addr, &tls.Config{RootCAs: certs.CA, Certificates: []tls.Certificate{certs.Client}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	_, _ = io.WriteString(c, "PING\r\n*1\r\n$-5\r\n")
	got, err := io.ReadAll(c)
	if string(got) != "+PONG\r\n-ERR Protocol error: invalid bulk length\r\n" {
		t.Errorf("protocol error over TLS: got %q, %v", got, err)
	}
}

// TestTLSClientAuthOptional: with tls-auth-clients optional, a client
// without a certificate is served, one with a bad certificate is not.
func TestTLSClientAuthOptional(t *testing.T) {
	ts, certs := startTLS(t, tls.VerifyClientCertIfGiven, nil)
	ctx := context.Background()
	anon := ts.client(t, &redis.Options{TLSConfig: &tls.Config{RootCAs: certs.CA}})
	if err := anon.Ping(ctx).Err(); err != nil {
		t.Errorf("PING without a client certificate (optional): %v", err)
	}
	bad := ts.client(t, &redis.Options{MaxRetries: -1, TLSConfig: &tls.Config{RootCAs: certs.CA, Certificates: []tls.Certificate{certs.Server}}})
	if err := bad.Ping(ctx).Err(); err == nil {
		t.Error("PING with a certificate not meant for clients: served")
	}
}

// TestTLSHandshakeTimeout: a client that connects to the TLS port and
// sends nothing is closed after the handshake timeout, and frees its slot.
func TestTLSHandshakeTimeout(t *testing.T) {
	ts, _ := startTLS(t, tls.NoClientCert, func(c *Config) {
		c.TLSHandshakeTimeout = 200 * time.Millisecond
		c.MaxClients = 1
	})
	c := ts.raw(t)
	start := time.Now()
	c.expectEOF()
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("closed after %v, want about 200ms", d)
	}
	waitFor(t, func() bool { return (*host)(ts.Server).HostStats().ConnectedClients == 0 })
}

// TestAdminFromAnotherHost: without a password, a client that is not on
// the loopback interface gets DENIED for SHUTDOWN and CONFIG SET, and the
// server does not stop; with a password it must AUTH, then it may.
// (The connections are real; only the remote address they report is not.)
func TestAdminFromAnotherHost(t *testing.T) {
	remote := &net.TCPAddr{IP: net.IPv4(203, 0, 113, 7), Port: 5555}
	var shutdowns atomic.Int32
	hook := func(c *Config) { c.OnShutdown = func() { shutdowns.Add(1) } }
	ts := startOn(t, &spyListener{Listener: mustListen(t), remote: remote}, hook)
	c := ts.raw(t)
	c.send("SHUTDOWN\r\nCONFIG SET save \"\"\r\nRSINCR 1 2\r\nCLIENT INFO\r\n")
	for _, want := range []string{"-DENIED SHUTDOWN is only accepted from the loopback interface", "-DENIED CONFIG SET is only", ":1"} {
		line, err := c.r.ReadString('\n')
		if !strings.HasPrefix(line, want) || err != nil {
			t.Fatalf("got %q, %v; want %q...", line, err, want)
		}
	}
	if line, _ := c.r.ReadString('\n'); !strings.HasPrefix(line, "$") {
		t.Fatalf("CLIENT INFO: %q", line)
	}
	if line, _ := c.r.ReadString('\n'); !strings.Contains(line, "addr=203.0.113.7:5555") {
		t.Fatalf("CLIENT INFO does not show the fake remote address: %q", line)
	}
	if n := shutdowns.Load(); n != 0 {
		t.Fatalf("SHUTDOWN from another host without a password ran the hook %d times", n)
	}

	tp := startOn(t, &spyListener{Listener: mustListen(t), remote: remote}, func(c *Config) { hook(c); c.RequirePass = "pw" })
	c = tp.raw(t)
	c.send("SHUTDOWN\r\n")
	c.expect("-NOAUTH Authentication required.\r\n")
	c.send("AUTH pw\r\nSHUTDOWN\r\n")
	c.expect("+OK\r\n")
	c.expectEOF()
	if n := shutdowns.Load(); n != 1 {
		t.Fatalf("SHUTDOWN after AUTH: the hook ran %d times, want 1", n)
	}
}
