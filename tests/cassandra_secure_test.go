//go:build cassandra

package tests

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gocql/gocql"
)

// TestCassandraSecureNode runs the server against a second, secured node:
// clients must log in (PasswordAuthenticator) and speak TLS
// (client_encryption_options, a self-signed certificate), as a production
// cluster should be. The server logs in with --cassandra-username and
// --cassandra-password over TLS verified with --cassandra-tls-ca, writes
// behind and reads through; a wrong password, no TLS, or a CA that did not
// sign the node's certificate all stop it at start with an error that
// says so, and the password appears in no log.
func TestCassandraSecureNode(t *testing.T) {
	home := t.TempDir()
	env := []string{
		"CASSANDRA_SECURE=1",
		"CASSANDRA_HOME_DIR=" + home,
		"CASSANDRA_LIB_DIR=" + cassandraLibDir(t),
		"CASSANDRA_PORT=19142",
		"CASSANDRA_STORAGE_PORT=17100",
	}
	out, code, err := cassandraCtlEnv(t, env, "start", 5*time.Minute)
	t.Cleanup(func() {
		if out, code, err := cassandraCtlEnv(t, env, "stop", 2*time.Minute); err != nil || code != 0 {
			t.Errorf("stopping the secure node: exit %d, %v:\n%s", code, err, out)
		}
	})
	if err != nil || code != 0 {
		t.Fatalf("starting the secure node: exit %d, %v:\n%s", code, err, out)
	}
	ca := filepath.Join(home, "conf", "node.pem")
	const hosts = "127.0.0.1:19142"
	ks := fmt.Sprintf("readstates_secure_%d", time.Now().UnixNano())
	// As in production, the server logs in as a role of its own, which
	// may create its keyspace and use it, not as the superuser.
	const password = "rs-secure-3f9c1a"
	createRole(t, hosts, ca, "readstates", password, true)
	createRole(t, hosts, ca, "nogrants", password, false)
	base := []string{
		"--cassandra-hosts", hosts, "--cassandra-keyspace", ks,
		"--cassandra-username", "readstates",
		"--cassandra-startup-wait", "60s",
	}

	t.Run("login over TLS", func(t *testing.T) {
		srv := startServer(t, append(slicesClone(base), "--cassandra-tls-ca", ca, "--cassandra-password", password)...)
		c := srv.goRedis(t, 3)
		ctx := testCtx(t)
		for ch := range int64(50) {
			if err := c.Do(ctx, "RSINCR", 7, ch, ch+1).Err(); err != nil {
				t.Fatalf("RSINCR: %v", err)
			}
		}
		if err := c.Do(ctx, "RSRESET", 8, 1, 99).Err(); err != nil {
			t.Fatalf("RSRESET: %v", err)
		}
		srv.restart() // SIGTERM: everything is written; then read through
		c = srv.goRedis(t, 3)
		for ch := range int64(50) {
			got, err := c.Do(ctx, "RSGET", 7, ch).Int64Slice()
			if err != nil || len(got) != 2 || got[0] != ch+1 {
				t.Fatalf("RSGET 7 %d after a restart: %v, %v; want [%d 0]", ch, got, err, ch+1)
			}
		}
		if got, err := c.Do(ctx, "RSGET", 8, 1).Int64Slice(); err != nil || len(got) != 2 || got[1] != 99 {
			t.Fatalf("RSGET 8 1 after a restart: %v, %v; want [0 99]", got, err)
		}
		for _, line := range strings.Split(srv.out.String(), "\n") {
			// The harness's own lines show the command line it ran.
			if strings.Contains(line, password) && !strings.HasPrefix(line, "=== tests:") {
				t.Errorf("the Cassandra password shows in the server's log: %q", line)
			}
		}
	})

	// What waiting cannot cure stops the server at once, however long
	// --cassandra-startup-wait is; only what looks like unavailability (a
	// node that drops a plain connection: no TLS) is retried for it.
	for _, tc := range []struct {
		name  string
		args  []string
		want  string // in the server's error
		retry bool   // retried for --cassandra-startup-wait
	}{
		{"wrong password", []string{"--cassandra-tls-ca", ca, "--cassandra-password", "not-it"}, "refused the login", false},
		{"no login", []string{"--cassandra-tls-ca", ca, "--cassandra-username", ""}, "require a login", false},
		{"untrusted certificate", []string{"--cassandra-tls-ca", otherCA(t), "--cassandra-password", password}, "certificate", false},
		{"no permission", []string{"--cassandra-tls-ca", ca, "--cassandra-username", "nogrants", "--cassandra-password", password}, "permission", false},
		{"no TLS", []string{"--cassandra-password", password}, "unable to connect to initial hosts", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wait := 60 * time.Second
			if tc.retry {
				wait = 5 * time.Second // the failure is the point, and it does not go away
			}
			args := append(slicesClone(base), tc.args...)
			args = append(args, "--cassandra-startup-wait", wait.String(), "--data-dir", t.TempDir())
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, serverBin, append(args, "--addr", "127.0.0.1:0")...)
			cmd.Env = serverEnv()
			start := time.Now()
			out, err := cmd.CombinedOutput()
			took := time.Since(start)
			if err == nil {
				t.Fatalf("the server started without a valid login over TLS:\n%s", out)
			}
			lines := strings.Split(strings.TrimSpace(string(out)), "\n")
			t.Logf("the server's last words, after %v: %s", took.Round(time.Millisecond), lines[len(lines)-1])
			if !strings.Contains(strings.ToLower(string(out)), tc.want) {
				t.Errorf("the server's error does not say %q:\n%s", tc.want, out)
			}
			if strings.Contains(string(out), "not-it") {
				t.Errorf("the wrong password shows in the server's output:\n%s", out)
			}
			if !tc.retry && took > wait/3 {
				t.Errorf("the server took %v to give up on a refusal that waiting does not cure (--cassandra-startup-wait %v): it must stop at once", took, wait)
			}
		})
	}
}

// createRole makes a login role that may create keyspaces and use them
// (grants) or may do nothing but log in, as the node's default superuser
// (cassandra/cassandra), which the node creates some seconds after it
// starts.
func createRole(t *testing.T, hosts, ca, role, password string, grants bool) {
	t.Helper()
	cl := gocql.NewCluster(hosts)
	cl.ProtoVersion = 4
	cl.Consistency = gocql.One
	cl.Timeout = 20 * time.Second
	cl.ConnectTimeout = 10 * time.Second
	cl.Logger = quietGocql{}
	cl.Authenticator = gocql.PasswordAuthenticator{Username: "cassandra", Password: "cassandra"}
	cl.SslOpts = &gocql.SslOptions{CaPath: ca, EnableHostVerification: true}
	var s *gocql.Session
	var err error
	for deadline := time.Now().Add(90 * time.Second); ; {
		if s, err = cl.CreateSession(); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("logging in as the default superuser: %v", err)
		}
		time.Sleep(time.Second)
	}
	defer s.Close()
	stmts := []string{fmt.Sprintf("CREATE ROLE IF NOT EXISTS %s WITH PASSWORD = '%s' AND LOGIN = true", role, password)}
	if grants {
		stmts = append(stmts,
			"GRANT CREATE ON ALL KEYSPACES TO "+role,
			"GRANT ALTER ON ALL KEYSPACES TO "+role,
			"GRANT MODIFY ON ALL KEYSPACES TO "+role,
			"GRANT SELECT ON ALL KEYSPACES TO "+role)
	}
	for _, stmt := range stmts {
		if err := s.Query(stmt).Exec(); err != nil {
			t.Fatalf("%s: %v", strings.Replace(stmt, password, "***", 1), err)
		}
	}
}

// cassandraLibDir is the jars of the main node, which the secure one
// shares (cassandra.sh fetches them with Maven on its first start).
func cassandraLibDir(t *testing.T) string {
	t.Helper()
	out, code, err := cassandraCtl(t, "env", 30*time.Second)
	if err != nil || code != 0 {
		t.Fatalf("cassandra.sh env: exit %d, %v:\n%s", code, err, out)
	}
	for _, line := range strings.Split(out, "\n") {
		if dir, ok := strings.CutPrefix(line, "CASSANDRA_LIB_DIR="); ok {
			return dir
		}
	}
	t.Fatalf("cassandra.sh env has no CASSANDRA_LIB_DIR:\n%s", out)
	return ""
}

// otherCA writes a CA certificate that did not sign the node's.
func otherCA(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	cmd := exec.Command("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
		"-subj", "/CN=not the node's CA", "-keyout", filepath.Join(dir, "key.pem"), "-out", filepath.Join(dir, "ca.pem"))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("openssl: %v\n%s", err, out)
	}
	if _, err := os.Stat(filepath.Join(dir, "ca.pem")); err != nil {
		t.Fatal(err)
	}
	return filepath.Join(dir, "ca.pem")
}

func slicesClone(s []string) []string { return append([]string(nil), s...) }
