package commands

import (
	"strconv"
	"strings"
	"testing"
)

var intSeeds = []string{
	"", "0", "1", "-1", "+1", "-0", "+", "-", "00", "000000012345", "007",
	"9223372036854775807", "9223372036854775808", "-9223372036854775808",
	"-9223372036854775809", "18446744073709551615", "18446744073709551616",
	"99999999999999999999", "00000000000000000000009223372036854775807",
	" 1", "1 ", "0x10", "1e3", "1.0", "١", "1_000", "--1", "+-1", "\x00",
}

// FuzzParseID checks parseID against strconv.ParseInt: the same value
// wherever ParseInt accepts the input and it starts with a digit (ids take
// no sign), and a refusal everywhere else.
func FuzzParseID(f *testing.F) {
	for _, s := range intSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, ok := parseID([]byte(s))
		want, err := strconv.ParseInt(s, 10, 64)
		wantOK := err == nil && len(s) > 0 && s[0] >= '0' && s[0] <= '9' && want >= 0
		if ok != wantOK || (ok && got != want) {
			t.Fatalf("parseID(%q) = %d, %v; want %d, %v", s, got, ok, want, wantOK)
		}
	})
}

// FuzzParseInt64 checks parseInt64 against strconv.ParseInt(s, 10, 64).
func FuzzParseInt64(f *testing.F) {
	for _, s := range intSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, ok := parseInt64([]byte(s))
		want, err := strconv.ParseInt(s, 10, 64)
		if ok != (err == nil) || (ok && got != want) {
			t.Fatalf("parseInt64(%q) = %d, %v; want %d, %v", s, got, ok, want, err)
		}
	})
}

func TestParseEdges(t *testing.T) {
	for _, tc := range []struct {
		in    string
		id    int64
		idOK  bool
		i64   int64
		i64OK bool
	}{
		{"0", 0, true, 0, true},
		{"000000012345", 12345, true, 12345, true},
		{"9223372036854775807", 9223372036854775807, true, 9223372036854775807, true},
		{"9223372036854775808", 0, false, 0, false},
		{"-9223372036854775808", 0, false, -9223372036854775808, true},
		{"-9223372036854775809", 0, false, 0, false},
		{"+5", 0, false, 5, true},
		{"-0", 0, false, 0, true},
		{"", 0, false, 0, false},
		{"-", 0, false, 0, false},
		{" 1", 0, false, 0, false},
		{strings.Repeat("0", 1000) + "1", 1, true, 1, true},
	} {
		if id, ok := parseID([]byte(tc.in)); id != tc.id || ok != tc.idOK {
			t.Errorf("parseID(%q) = %d, %v; want %d, %v", tc.in, id, ok, tc.id, tc.idOK)
		}
		if n, ok := parseInt64([]byte(tc.in)); n != tc.i64 || ok != tc.i64OK {
			t.Errorf("parseInt64(%q) = %d, %v; want %d, %v", tc.in, n, ok, tc.i64, tc.i64OK)
		}
	}
}

// FuzzQuoted checks that a quoted argument is always safe in a simple
// error: printable ASCII only, and bounded in length.
func FuzzQuoted(f *testing.F) {
	f.Add([]byte("abc"))
	f.Add([]byte("a'b\\c\r\n\x00\xff"))
	f.Add([]byte(strings.Repeat("\xff", 100)))
	f.Fuzz(func(t *testing.T, arg []byte) {
		q := appendQuoted(nil, arg)
		if len(q) > 2+4*maxQuoted+3 {
			t.Fatalf("quoted %d bytes to %d", len(arg), len(q))
		}
		for _, c := range q {
			if c < 0x20 || c >= 0x7f {
				t.Fatalf("quoted %q has byte %#x", arg, c)
			}
		}
	})
}
