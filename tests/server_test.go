package tests

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestMaxClients: with --maxclients 3 the fourth connection gets Redis's
// "-ERR max number of clients reached" and is closed; once one leaves, a
// new one is served.
func TestMaxClients(t *testing.T) {
	sp := startServer(t, "--maxclients", "3")
	var conns []*rawConn
	for i := range 3 {
		rc := sp.raw(t)
		rc.expect(fmt.Sprintf(":%d\r\n", i+1), "RSINCR", "1", "1")
		conns = append(conns, rc)
	}
	over := sp.dial(t)
	_ = over.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, _ = io.WriteString(over, respCmd("PING"))
	got, err := io.ReadAll(over)
	if string(got) != "-ERR max number of clients reached\r\n" {
		t.Errorf("connection 4 of --maxclients 3: got %q, %v; want \"-ERR max number of clients reached\" and a close", got, err)
	}
	for _, rc := range conns {
		rc.expect("+PONG\r\n", "PING")
	}
	conns[0].c.Close()
	// The server sees the close asynchronously: retry for a while.
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", sp.addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		_, _ = io.WriteString(c, respCmd("RSGET", "1", "1"))
		b := make([]byte, 64)
		n, _ := c.Read(b)
		c.Close()
		if string(b[:n]) == respInts(3, 0) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a connection after one of 3 closed: got %q, want the RSGET reply", b[:n])
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestMetrics: --metrics-addr serves Prometheus text that counts the
// commands run, the error replies and the protocol errors.
func TestMetrics(t *testing.T) {
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	maddr := net.JoinHostPort("127.0.0.1", port)
	sp := startServer(t, "--metrics-addr", maddr)
	rc := sp.raw(t)
	rc.expect(":1\r\n", "RSINCR", "1", "1")
	if got := rc.do("RSINCR", "1", "x"); !strings.HasPrefix(got, "-ERR invalid channel_id") {
		t.Fatalf("RSINCR 1 x: got %q", got)
	}
	bad := sp.dial(t)
	_, _ = io.WriteString(bad, "*1\r\n$-5\r\n")
	expectProtocolError(t, bad, 10*time.Second)

	// The server counts a protocol error as it closes the connection,
	// which the client may see first: poll for a while.
	wants := []string{
		`readstates_command_duration_seconds_count{command="rsincr"} 2`,
		`readstates_command_errors_total{command="rsincr"} 1`,
		"readstates_protocol_errors_total 1",
	}
	client := &http.Client{Timeout: 10 * time.Second}
	var text string
	for deadline := time.Now().Add(10 * time.Second); ; {
		text = scrape(t, client, "http://"+maddr+"/metrics")
		missing := ""
		for _, want := range wants {
			if !strings.Contains(text, want+"\n") {
				missing = want
			}
		}
		if missing == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("/metrics has no line %q", missing)
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if t.Failed() {
		for _, l := range strings.Split(text, "\n") {
			if strings.HasPrefix(l, "readstates_") {
				t.Log(l)
			}
		}
	}
}

func scrape(t *testing.T, client *http.Client, url string) string {
	t.Helper()
	resp, err := client.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s, %v\n%s", url, resp.Status, err, body)
	}
	return string(body)
}
