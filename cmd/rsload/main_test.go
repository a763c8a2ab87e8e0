package main

import (
	"bufio"
	"bytes"
	"testing"

	"github.com/readstates/readstates/internal/redcon"
)

func TestRequestsAreWellFormed(t *testing.T) {
	for _, redis := range []bool{false, true} {
		c := config{redis: redis, channels: 100}
		var b []byte
		b = request(b, c, opIncr, 1, 2, 0, nil)
		b = request(b, c, opReset, 1, 2, 3, nil)
		b = request(b, c, opGet, 1, 2, 0, nil)
		b = request(b, c, opMGet, 1, 0, 0, []int64{4, 5})
		want := [][]string{
			{"RSINCR", "1", "2", "1"}, {"RSRESET", "1", "2", "3"}, {"RSGET", "1", "2"}, {"RSMGET", "1", "4", "5"},
		}
		if redis {
			want = [][]string{
				{"HINCRBY", "rs:1", "2", "1"}, {"HSET", "rs:1", "2", "0", "m:2", "3"}, {"HMGET", "rs:1", "2", "m:2"}, {"HMGET", "rs:1", "4", "5"},
			}
		}
		rd := redcon.NewReader(bytes.NewReader(b))
		for i, w := range want {
			cmd, err := rd.ReadCommand()
			if err != nil {
				t.Fatalf("redis=%v: command %d: %v", redis, i, err)
			}
			if len(cmd.Args) != len(w) {
				t.Fatalf("redis=%v: command %d = %q, want %q", redis, i, cmd.Args, w)
			}
			for j := range w {
				if string(cmd.Args[j]) != w[j] {
					t.Fatalf("redis=%v: command %d = %q, want %q", redis, i, cmd.Args, w)
				}
			}
		}
	}
}

func TestParseInfo(t *testing.T) {
	text := "# Memory\r\nused_memory_rss:1000\r\nprocess_cpu_seconds:1.5\r\n" +
		"# Latencystats\r\n" +
		"latency_percentiles_usec_rsincr:p50=1.000,p99=2.000,p99.9=30.500,p100=400.000\r\n" +
		"latency_percentiles_usec_rsmget:p50=2.000,p99=5.000,p99.9=40.000,p100=100.000\r\n" +
		"latency_percentiles_usec_info:p50=900.000,p99=900.000,p99.9=900.000,p100=900.000\r\n"
	s := parseInfo(text)
	if s.rss != 1000 || s.cpu != 1.5 || s.srvP999 != 40 || s.srvMax != 400 {
		t.Fatalf("parseInfo = %+v, want rss 1000, cpu 1.5, server p99.9 40, max 400 (info left out)", s)
	}
	if s := parseInfo("used_cpu_sys:1\r\nused_cpu_user:2\r\n"); s.cpu != 3 || s.srvP999 != -1 {
		t.Fatalf("parseInfo(redis) = %+v, want cpu 3 and no server latency", s)
	}
}

func TestSkipReply(t *testing.T) {
	r := bufio.NewReader(bytes.NewReader([]byte("*2\r\n:1\r\n$-1\r\n-ERR x\r\n%1\r\n+a\r\n:2\r\n")))
	for i, wantErr := range []bool{false, true, false} {
		err := skipReply(r)
		if (err != nil) != wantErr {
			t.Fatalf("reply %d: err %v, want error %v", i, err, wantErr)
		}
	}
}
