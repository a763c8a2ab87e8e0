package server

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/readstates/readstates/internal/redcon"
)

func testLimits() limits {
	return limits{maxArgs: 8, maxBulk: 16, maxRequest: 64, maxInline: 32}
}

func TestGuardScan(t *testing.T) {
	for _, tc := range []struct {
		in      string
		ok      int    // bytes accepted
		wantErr string // "" if all accepted
	}{
		{"*1\r\n$4\r\nPING\r\n", 14, ""},
		{"*2\r\n$4\r\nECHO\r\n$0\r\n\r\n", 20, ""},
		{"PING\r\n", 6, ""},
		{"\r\n\n", 3, ""},
		{"*1\r\n$4\r\nPI", 10, ""}, // incomplete is fine
		{"*0\r\n", 3, "invalid multibulk length"},
		{"*-1\r\n", 1, "invalid multibulk length"},
		{"*+1\r\n", 1, "invalid multibulk length"},
		{"*\r\n", 1, "invalid multibulk length"},
		{"*1\n", 2, "invalid multibulk length"},
		{"*9\r\n", 1, "invalid multibulk length"}, // over maxArgs 8
		{"*99999999999999999999999\r\n", 1, "invalid multibulk length"},
		{"*1\r\nx", 4, "expected '$', got 'x'"},
		{"*1\r\n\x00", 4, `expected '$', got '\x00'`},
		{"*1\r\n$-1\r\n", 5, "invalid bulk length"},
		{"*1\r\n$17\r\n", 6, "invalid bulk length"}, // over maxBulk 16
		{"*1\r\n$9223372036854775807\r\n", 6, "invalid bulk length"},
		{"*1\r\n$\r\n", 5, "invalid bulk length"},
		{"*1\r\n$1\rx", 7, "invalid bulk length"},
		{"*1\r\n$1\r\nab\r\n", 9, "invalid bulk length"},
		{"*1\r\n$1\r\na\rx", 10, "invalid bulk length"},
		{"PING" + strings.Repeat("x", 40), 32, "too big inline request"},
		{"ECHO \"a b\" 'c d' \"e\\\"f\" \"\"\r\n", 28, ""},
		{"ECHO \"abc\r\n", 10, "unbalanced quotes in request"},
		{"ECHO a\"b\"\r\n", 6, "unbalanced quotes in request"},
		{"ECHO \"a\"b\r\n", 8, "unbalanced quotes in request"},
		{"ECHO \"a\"\rb\r\n", 9, "unbalanced quotes in request"},
		{"ECHO \"a\\\r\n", 9, "unbalanced quotes in request"},
		{"*4\r\n" + strings.Repeat("$16\r\n0123456789abcdef\r\n", 3), 64, "too big request"},
		{"*1\r\n$1\r\na\r\n" + "*4\r\n" + strings.Repeat("$16\r\n0123456789abcdef\r\n", 3), 11 + 64, "too big request"},
	} {
		g := respGuard{lim: testLimits()}
		n, err := g.scan([]byte(tc.in))
		var msg string
		if err != nil {
			msg = err.(*protocolError).msg
		}
		if n != tc.ok || msg != tc.wantErr {
			t.Errorf("scan(%q) = %d, %q; want %d, %q", tc.in, n, msg, tc.ok, tc.wantErr)
		}
	}
}

// FuzzGuard checks the guard against redcon's parser: the verdict does not
// depend on how the stream is split into reads, and whatever the guard
// lets through, redcon parses without a protocol error and without
// panicking.
func FuzzGuard(f *testing.F) {
	for _, s := range []string{
		"*1\r\n$4\r\nPING\r\n", "PING\r\nPING\r\n", "*2\r\n$3\r\nfoo\r\n$0\r\n\r\n",
		"*1\r\n$9223372036854775807\r\n", "*3\r\n$1\r\na", "\"a b\" c\r\n", "'a\r\n",
		"*1\r\n$-1\r\n", "*00001\r\n$00004\r\nPING\r\n",
	} {
		f.Add([]byte(s), uint64(1))
	}
	f.Fuzz(func(t *testing.T, in []byte, seed uint64) {
		whole := respGuard{lim: testLimits()}
		n, err := whole.scan(in)
		// Split at random points: same verdict.
		r := rand.New(rand.NewPCG(seed, 0))
		split := respGuard{lim: testLimits()}
		m, off := 0, 0
		var serr error
		for off < len(in) && serr == nil {
			k := min(len(in)-off, 1+r.IntN(8))
			var got int
			got, serr = split.scan(in[off : off+k])
			m = off + got
			off += k
		}
		if len(in) == 0 {
			m = 0
		}
		if (err == nil) != (serr == nil) || n != m {
			t.Fatalf("whole: %d, %v; split: %d, %v", n, err, m, serr)
		}
		// What the guard accepts, redcon must take without any error.
		var want [][][]byte
		rd := redcon.NewReader(bytes.NewReader(in[:n]))
		for {
			cmds, rerr := rd.ReadCommands()
			if rerr == nil {
				for _, c := range cmds {
					want = append(want, c.Args)
				}
				continue
			}
			if errors.Is(rerr, io.EOF) {
				break
			}
			t.Fatalf("guard accepted %q but redcon says %v", in[:n], rerr)
		}
		// The event loops cut the input at the guard's command ends and
		// parse each command alone: the same commands as redcon's reader.
		ends := respGuard{lim: testLimits(), trackEnds: true}
		ends.scan(in[:n])
		var parser redcon.CommandParser
		var got [][][]byte
		start := 0
		for _, end := range ends.ends {
			cmd, perr := parser.Parse(in[start:end])
			if perr != nil {
				t.Fatalf("command %q (of %q): %v", in[start:end], in[:n], perr)
			}
			if len(cmd.Args) > 0 {
				got = append(got, cmd.Args)
			}
			start = end
		}
		if fmt.Sprintf("%q", got) != fmt.Sprintf("%q", want) {
			t.Fatalf("%q: commands cut at the guard's ends %q, redcon's reader %q", in[:n], got, want)
		}
		// And the errors of framing and quoting (not the limits, which
		// redcon lacks) it refuses, redcon refuses too, once the line is
		// complete.
		if err == errQuotes || (err != nil && strings.Contains(err.Error(), "expected '$'")) {
			full := in
			if err == errQuotes {
				full = append(in[:len(in):len(in)], '\n')
			}
			rd := redcon.NewReader(bytes.NewReader(full))
			for {
				_, rerr := rd.ReadCommands()
				if rerr == nil {
					continue
				}
				if errors.Is(rerr, io.EOF) {
					t.Fatalf("guard refused %q (%v) but redcon takes it", full, err)
				}
				break
			}
		}
	})
}
