package server

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/tidwall/redcon"
)

func testLimits() limits {
	return limits{maxArgs: 8, maxBulk: 16, maxRequest: 64, maxInline: 32}
}

// parseAll parses in as a stream given in pieces of the sizes split
// returns (the whole of in, if split is nil), as a driver does: what was
// used is dropped, more input is appended. It returns the commands, the
// bytes used, and the error that stopped the stream.
func parseAll(in []byte, lim limits, split func() int) (cmds [][][]byte, used int, err error) {
	p := reqParser{lim: lim}
	p.reset()
	var sc scratch
	var buf []byte
	for off := 0; off < len(in); {
		k := len(in) - off
		if split != nil {
			k = min(k, split())
		}
		buf = append(buf, in[off:off+k]...)
		off += k
		for {
			n, args, perr := p.parse(buf, &sc)
			if perr != nil {
				return cmds, used, perr
			}
			if n == 0 {
				break
			}
			if len(args) > 0 {
				own := make([][]byte, len(args))
				for i, a := range args {
					own[i] = append([]byte{}, a...)
				}
				cmds = append(cmds, own)
			}
			used += n
			buf = buf[n:]
		}
	}
	return cmds, used, nil
}

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    string // the commands, %q of [][][]byte
		used    int
		wantErr string // "" if none
	}{
		{"*1\r\n$4\r\nPING\r\n", `[["PING"]]`, 14, ""},
		{"*2\r\n$4\r\nECHO\r\n$0\r\n\r\n", `[["ECHO" ""]]`, 20, ""},
		{"PING\r\n", `[["PING"]]`, 6, ""},
		{"PING\n*1\r\n$4\r\nPING\r\n", `[["PING"] ["PING"]]`, 19, ""},
		{"\r\n\n", `[]`, 3, ""},
		{"*1\r\n$4\r\nPI", `[]`, 0, ""}, // incomplete is fine
		{"*0\r\n", `[]`, 0, "invalid multibulk length"},
		{"*-1\r\n", `[]`, 0, "invalid multibulk length"},
		{"*+1\r\n", `[]`, 0, "invalid multibulk length"},
		{"*\r\n", `[]`, 0, "invalid multibulk length"},
		{"*1\n", `[]`, 0, "invalid multibulk length"},
		{"*9\r\n", `[]`, 0, "invalid multibulk length"}, // over maxArgs 8
		{"*99999999999999999999999\r\n", `[]`, 0, "invalid multibulk length"},
		{"*1\r\nx", `[]`, 0, "expected '$', got 'x'"},
		{"*1\r\n\x00", `[]`, 0, `expected '$', got '\x00'`},
		{"*1\r\n$-1\r\n", `[]`, 0, "invalid bulk length"},
		{"*1\r\n$17\r\n", `[]`, 0, "invalid bulk length"}, // over maxBulk 16
		{"*1\r\n$9223372036854775807\r\n", `[]`, 0, "invalid bulk length"},
		{"*1\r\n$\r\n", `[]`, 0, "invalid bulk length"},
		{"*1\r\n$1\rx", `[]`, 0, "invalid bulk length"},
		{"*1\r\n$1\r\nab\r\n", `[]`, 0, "invalid bulk length"},
		{"*1\r\n$1\r\na\rx", `[]`, 0, "invalid bulk length"},
		{"PING" + strings.Repeat("x", 40), `[]`, 0, "too big inline request"},
		{"PING" + strings.Repeat("x", 40) + "\n", `[]`, 0, "too big inline request"},
		{"ECHO \"a b\" 'c d' \"e\\\"f\" \"\"\r\n", `[["ECHO" "a b" "c d" "e\"f" ""]]`, 28, ""},
		{"ECHO \"\\n\\r\\t\\x\"  x\r\n", `[["ECHO" "\n\r\tx" "x"]]`, 20, ""},
		{"ECHO \"abc\r\n", `[]`, 0, "unbalanced quotes in request"},
		{"ECHO a\"b\"\r\n", `[]`, 0, "unbalanced quotes in request"},
		{"ECHO \"a\"b\r\n", `[]`, 0, "unbalanced quotes in request"},
		{"ECHO \"a\"\rb\r\n", `[]`, 0, "unbalanced quotes in request"},
		{"ECHO \"a\\\r\n", `[]`, 0, "unbalanced quotes in request"},
		{"*4\r\n" + strings.Repeat("$16\r\n0123456789abcdef\r\n", 3), `[]`, 0, "too big request"},
		{"*1\r\n$1\r\na\r\n" + "*4\r\n" + strings.Repeat("$16\r\n0123456789abcdef\r\n", 3), `[["a"]]`, 11, "too big request"},
	} {
		for _, split := range []int{0, 1, 3} {
			var sp func() int
			if split > 0 {
				sp = func() int { return split }
			}
			cmds, used, err := parseAll([]byte(tc.in), testLimits(), sp)
			var msg string
			if err != nil {
				msg = err.(*protocolError).msg
			}
			got := fmt.Sprintf("%q", cmds)
			if cmds == nil {
				got = "[]"
			}
			if got != tc.want || used != tc.used || msg != tc.wantErr {
				t.Errorf("parse(%q) in pieces of %d = %s, %d, %q; want %s, %d, %q", tc.in, split, got, used, msg, tc.want, tc.used, tc.wantErr)
			}
		}
	}
}

// FuzzParse checks the parser: its verdict does not depend on how the
// stream is split into reads, and the commands it accepts are the ones
// redcon's reader (the grammar it follows) reads from the same bytes.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"*1\r\n$4\r\nPING\r\n", "PING\r\nPING\r\n", "*2\r\n$3\r\nfoo\r\n$0\r\n\r\n",
		"*1\r\n$9223372036854775807\r\n", "*3\r\n$1\r\na", "\"a b\" c\r\n", "'a\r\n",
		"*1\r\n$-1\r\n", "*00001\r\n$00004\r\nPING\r\n", "ECHO \"\\x\\n\" ''\r\n",
	} {
		f.Add([]byte(s), uint64(1))
	}
	f.Fuzz(func(t *testing.T, in []byte, seed uint64) {
		whole, used, err := parseAll(in, testLimits(), nil)
		r := rand.New(rand.NewPCG(seed, 0))
		split, sused, serr := parseAll(in, testLimits(), func() int { return 1 + r.IntN(8) })
		if fmt.Sprintf("%q %d %v", whole, used, err) != fmt.Sprintf("%q %d %v", split, sused, serr) {
			t.Fatalf("%q whole: %q %d %v; split: %q %d %v", in, whole, used, err, split, sused, serr)
		}
		// What the parser accepts, redcon reads alike.
		var want [][][]byte
		rd := redcon.NewReader(bytes.NewReader(in[:used]))
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
			t.Fatalf("parser accepted %q but redcon says %v", in[:used], rerr)
		}
		if fmt.Sprintf("%q", whole) != fmt.Sprintf("%q", want) {
			t.Fatalf("%q: parser %q, redcon %q", in[:used], whole, want)
		}
	})
}

// BenchmarkParse parses a pipeline of RSINCR requests.
func BenchmarkParse(b *testing.B) {
	req := []byte("*4\r\n$6\r\nRSINCR\r\n$6\r\n123456\r\n$5\r\n98765\r\n$1\r\n1\r\n")
	in := bytes.Repeat(req, 100)
	p := reqParser{lim: limits{maxArgs: 1 << 16, maxBulk: 1 << 20, maxRequest: 16 << 20, maxInline: maxInline}}
	p.reset()
	var sc scratch
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	for b.Loop() {
		for buf := in; len(buf) > 0; {
			n, _, err := p.parse(buf, &sc)
			if err != nil || n == 0 {
				b.Fatal(n, err)
			}
			buf = buf[n:]
		}
	}
}
