package tests

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// specSession returns the example session of the contract,
// docs/commands.md: the code block under "## Example session".
func specSession(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "docs", "commands.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(b), "## Example session")
	if ok {
		_, rest, ok = strings.Cut(rest, "```\n")
	}
	session, _, closed := strings.Cut(rest, "```")
	if !ok || !closed {
		t.Fatal("docs/commands.md has no example session (a ``` block under \"## Example session\")")
	}
	return session
}

type sessionStep struct {
	args []string
	want string // redis-cli's --no-raw output, without the final newline
}

// parseSession splits a redis-cli transcript into commands and outputs.
func parseSession(t *testing.T, text string) []sessionStep {
	t.Helper()
	const prompt = "127.0.0.1:6380> "
	var steps []sessionStep
	for _, line := range strings.Split(strings.TrimSuffix(text, "\n"), "\n") {
		if cmd, ok := strings.CutPrefix(line, prompt); ok {
			steps = append(steps, sessionStep{args: strings.Fields(cmd)})
			continue
		}
		if len(steps) == 0 {
			t.Fatalf("transcript output before the first command: %q", line)
		}
		s := &steps[len(steps)-1]
		if s.want != "" {
			s.want += "\n"
		}
		s.want += line
	}
	return steps
}

var rawPrefix = regexp.MustCompile(`^(\s*\d+\) )*(\(integer\) )?`)

// rawOutput is what redis-cli prints without --no-raw (its default when
// stdout is not a terminal): no "(integer)", no "1)" numbering.
func rawOutput(noRaw string) string {
	lines := strings.Split(noRaw, "\n")
	for i, l := range lines {
		lines[i] = rawPrefix.ReplaceAllString(l, "")
	}
	return strings.Join(lines, "\n")
}

// redisCLI runs redis-cli against sp with args and optional stdin and
// returns its stdout; a non-zero exit or anything on stderr fails the test.
func redisCLI(t *testing.T, sp *serverProc, stdin string, args ...string) string {
	t.Helper()
	bin := requireTool(t, "redis-cli")
	host, port := splitAddr(t, sp.addr)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append([]string{"-h", host, "-p", port}, args...)...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("redis-cli %q: %v\nstdout:\n%s\nstderr:\n%s", args, err, stdout.String(), stderr.String())
	}
	if stderr.Len() > 0 {
		t.Errorf("redis-cli %q wrote to stderr: %q", args, stderr.String())
	}
	return stdout.String()
}

func splitAddr(t testing.TB, addr string) (string, string) {
	i := strings.LastIndexByte(addr, ':')
	if i < 0 {
		t.Fatalf("bad address %q", addr)
	}
	return addr[:i], addr[i+1:]
}

// TestRedisCLISpecSession runs the spec's example session through
// redis-cli, one process per command and as one piped script, in the
// formatted (--no-raw), raw and RESP3 output modes, on a fresh server each
// time, and compares the output exactly.
func TestRedisCLISpecSession(t *testing.T) {
	requireTool(t, "redis-cli")
	steps := parseSession(t, specSession(t))
	if len(steps) != 5 {
		t.Fatalf("parsed %d steps from the example session, want 5", len(steps))
	}

	modes := []struct {
		name  string
		flags []string
		out   func(string) string
	}{
		{"formatted", []string{"--no-raw"}, func(s string) string { return s }},
		{"raw", nil, rawOutput},
		{"resp3", []string{"-3", "--no-raw"}, func(s string) string { return s }},
	}
	for _, m := range modes {
		t.Run("args/"+m.name, func(t *testing.T) {
			sp := startServer(t)
			for _, st := range steps {
				got := redisCLI(t, sp, "", append(m.flags, st.args...)...)
				if want := m.out(st.want) + "\n"; got != want {
					t.Errorf("redis-cli %s %s:\ngot:\n%s\nwant:\n%s", strings.Join(m.flags, " "), strings.Join(st.args, " "), got, want)
				}
			}
		})
		t.Run("stdin/"+m.name, func(t *testing.T) {
			sp := startServer(t)
			var script, want strings.Builder
			for _, st := range steps {
				script.WriteString(strings.Join(st.args, " ") + "\n")
				want.WriteString(m.out(st.want) + "\n")
			}
			if got := redisCLI(t, sp, script.String(), m.flags...); got != want.String() {
				t.Errorf("redis-cli %s < script:\ngot:\n%s\nwant:\n%s", strings.Join(m.flags, " "), got, want.String())
			}
		})
	}
}

// cliCase is one redis-cli command and what it must print (--no-raw).
type cliCase struct {
	args []string
	want string // the exact output without the final newline, or
	// an error: the output starts with "(error) ERR " and contains each of
	// contains.
	contains []string
}

func (c cliCase) check(t *testing.T, got string) {
	t.Helper()
	name := strings.Join(quoteArgs(c.args), " ")
	if c.contains == nil {
		if got != c.want {
			t.Errorf("%s:\ngot:\n%s\nwant:\n%s", name, got, c.want)
		}
		return
	}
	if !strings.HasPrefix(got, "(error) ERR ") || strings.Contains(got, "\n") {
		t.Errorf("%s: got %q, want one line starting with \"(error) ERR \"", name, got)
		return
	}
	for _, s := range c.contains {
		if !strings.Contains(got, s) {
			t.Errorf("%s: got %q, want it to contain %q", name, got, s)
		}
	}
}

func ok(args ...string) cliCase { return cliCase{args: args} }

func (c cliCase) is(want string) cliCase { c.want = want; return c }

func (c cliCase) fails(contains ...string) cliCase { c.contains = contains; return c }

func ints(vs ...string) string {
	var b strings.Builder
	for i, v := range vs {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(string(rune('1'+i)) + ") (integer) " + v)
	}
	return b.String()
}

func invalidID(name, value string) []string {
	return []string{"invalid " + name + " '" + value + "'"}
}

// errorCases covers every error path of the spec, in an order in which each
// expected value follows from the ones before (on a fresh server).
func errorCases() []cliCase {
	const maxID = "9223372036854775807"
	cs := []cliCase{
		ok("RSINCR", "42", "7").is("(integer) 1"),
		// Leading zeros are accepted (redis-benchmark's __rand_int__).
		ok("RSINCR", "000000000042", "000000000007", "0004").is("(integer) 5"),
		ok("RSGET", "0042", "00000000000000000000000000007").is(ints("5", "0")),
		ok("RSRESET", "00", "0", "000").is("(integer) 0"),
		// The spec's own example, exactly.
		ok("RSINCR", "42", "abc").is("(error) ERR invalid channel_id 'abc': expected an integer from 0 to 9223372036854775807"),
	}
	// Invalid ids: empty, sign, spaces, hex, float, exponent, above the maximum.
	for _, bad := range []string{"", "-7", "+7", "-0", " 7", "7 ", "4 2", "0x7", "7.0", "1e3", "abc", "9223372036854775808", "18446744073709551616", "99999999999999999999999"} {
		cs = append(cs,
			ok("RSGET", bad, "7").fails(invalidID("user_id", bad)...),
			ok("RSINCR", "42", bad).fails(invalidID("channel_id", bad)...),
			ok("RSMGET", "42", "7", bad).fails(invalidID("channel_id", bad)...),
			ok("RSRESET", "42", "7", bad).fails(invalidID("message_id", bad)...),
		)
	}
	// Invalid deltas (signed 64-bit).
	for _, bad := range []string{"", "abc", "-", "+", "1.5", "0x1", " 1", "1e3", "9223372036854775808", "-9223372036854775809"} {
		cs = append(cs, ok("RSINCR", "42", "7", bad).fails("delta", "'"+bad+"'"))
	}
	cs = append(cs,
		// None of the errors above changed the read state.
		ok("RSGET", "42", "7").is(ints("5", "0")),
		// Ids at the maximum.
		ok("RSINCR", maxID, maxID).is("(integer) 1"),
		ok("RSRESET", maxID, maxID, maxID).is("(integer) 1"),
		ok("RSGET", maxID, maxID).is(ints("0", maxID)),
		// Negative deltas clamp at 0.
		ok("RSINCR", "42", "7", "-3").is("(integer) 2"),
		ok("RSINCR", "42", "7", "-100").is("(integer) 0"),
		ok("RSINCR", "42", "7", "-9223372036854775808").is("(integer) 0"),
		ok("RSINCR", "42", "7", "+3").is("(integer) 3"),
		// Overflow past 2147483647 is refused and changes nothing.
		ok("RSINCR", "42", "8", "2147483647").is("(integer) 2147483647"),
		ok("RSINCR", "42", "8").fails("overflow"),
		ok("RSINCR", "42", "8", maxID).fails("overflow"),
		ok("RSGET", "42", "8").is(ints("2147483647", "0")),
		ok("RSINCR", "42", "8", "-1").is("(integer) 2147483646"),
		ok("RSINCR", "42", "8", "2").fails("overflow"),
		ok("RSINCR", "42", "8", "1").is("(integer) 2147483647"),
		ok("RSINCR", "42", "9", "2147483648").fails("overflow"),
		ok("RSGET", "42", "9").is(ints("0", "0")),
		// RSRESET: the mention_count before; message_id only when given.
		ok("RSRESET", "42", "8", "77").is("(integer) 2147483647"),
		ok("RSRESET", "42", "8").is("(integer) 0"),
		ok("RSGET", "42", "8").is(ints("0", "77")),
		// RSMGET: argument order, repeats allowed.
		ok("RSINCR", "42", "101", "10").is("(integer) 10"),
		ok("RSINCR", "42", "102", "20").is("(integer) 20"),
		ok("RSMGET", "42", "102", "101", "102", "103", "8").is(
			"1) 1) (integer) 20\n   2) (integer) 0\n"+
				"2) 1) (integer) 10\n   2) (integer) 0\n"+
				"3) 1) (integer) 20\n   2) (integer) 0\n"+
				"4) 1) (integer) 0\n   2) (integer) 0\n"+
				"5) 1) (integer) 0\n   2) (integer) 77"),
		ok("RSMGET", "42", "101").is("1) 1) (integer) 10\n   2) (integer) 0"),
		ok("RSMGET", "42", "101", "101", "101").is(
			"1) 1) (integer) 10\n   2) (integer) 0\n"+
				"2) 1) (integer) 10\n   2) (integer) 0\n"+
				"3) 1) (integer) 10\n   2) (integer) 0"),
		// Wrong number of arguments, exactly as Redis words it.
		ok("RSINCR").is("(error) ERR wrong number of arguments for 'rsincr' command"),
		ok("RSINCR", "1").is("(error) ERR wrong number of arguments for 'rsincr' command"),
		ok("RSINCR", "1", "2", "3", "4").is("(error) ERR wrong number of arguments for 'rsincr' command"),
		ok("RSRESET").is("(error) ERR wrong number of arguments for 'rsreset' command"),
		ok("rsreset", "1").is("(error) ERR wrong number of arguments for 'rsreset' command"),
		ok("RSRESET", "1", "2", "3", "4").is("(error) ERR wrong number of arguments for 'rsreset' command"),
		ok("RsGet", "1").is("(error) ERR wrong number of arguments for 'rsget' command"),
		ok("RSGET", "1", "2", "3").is("(error) ERR wrong number of arguments for 'rsget' command"),
		ok("RSMGET", "1").is("(error) ERR wrong number of arguments for 'rsmget' command"),
		ok("RSMGET").is("(error) ERR wrong number of arguments for 'rsmget' command"),
		// Unknown commands, exactly as Redis words them (trailing space
		// included; the name cut at 128 bytes, the arguments after 128).
		ok("FOO").is("(error) ERR unknown command 'FOO', with args beginning with: "),
		ok("foo", "a", "b").is("(error) ERR unknown command 'foo', with args beginning with: 'a' 'b' "),
		ok("RSINCRX", "42", "7").is("(error) ERR unknown command 'RSINCRX', with args beginning with: '42' '7' "),
		ok(strings.Repeat("n", 200)).is("(error) ERR unknown command '"+strings.Repeat("n", 128)+"', with args beginning with: "),
		ok("foo", strings.Repeat("a", 60), strings.Repeat("b", 60), strings.Repeat("c", 60), "d").is(
			"(error) ERR unknown command 'foo', with args beginning with: '"+strings.Repeat("a", 60)+"' '"+
				strings.Repeat("b", 60)+"' 'cc' "),
		// After all of that, the first read state is as it was.
		ok("RSGET", "42", "7").is(ints("3", "0")),
	)
	return cs
}

// TestRedisCLIErrors runs every error path of the spec (and the values
// around them) through redis-cli: first one process per command, then all
// of them piped into one process (one connection: an error never closes
// it), each on a fresh server.
func TestRedisCLIErrors(t *testing.T) {
	requireTool(t, "redis-cli")
	cases := errorCases()
	t.Run("args", func(t *testing.T) {
		sp := startServer(t)
		for _, c := range cases {
			got := redisCLI(t, sp, "", append([]string{"--no-raw"}, c.args...)...)
			c.check(t, strings.TrimSuffix(got, "\n"))
		}
	})
	t.Run("stdin", func(t *testing.T) {
		sp := startServer(t)
		var script strings.Builder
		for _, c := range cases {
			script.WriteString(strings.Join(quoteArgs(c.args), " ") + "\n")
		}
		out := redisCLI(t, sp, script.String(), "--no-raw")
		lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
		for _, c := range cases {
			n := 1
			if c.contains == nil {
				n = strings.Count(c.want, "\n") + 1
			}
			if len(lines) < n {
				t.Fatalf("redis-cli output ended before the reply to %q", c.args)
			}
			c.check(t, strings.Join(lines[:n], "\n"))
			lines = lines[n:]
		}
		if len(lines) > 0 {
			t.Errorf("redis-cli printed more than expected: %q", lines)
		}
	})
}

// quoteArgs quotes arguments for redis-cli's line syntax.
func quoteArgs(args []string) []string {
	q := make([]string, len(args))
	for i, a := range args {
		if a != "" && !strings.ContainsAny(a, " \"'\\\t\r\n") {
			q[i] = a
			continue
		}
		r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`, "\r", `\r`, "\t", `\t`)
		q[i] = `"` + r.Replace(a) + `"`
	}
	return q
}

// TestRedisCLIStat: redis-cli --stat, which reads INFO's fields by name
// and prints the minimum long for one that is missing, shows every column
// as a number: keys, clients, blocked (0: no command blocks), requests
// growing by its own INFO each interval, connections.
func TestRedisCLIStat(t *testing.T) {
	bin := requireTool(t, "redis-cli")
	stdbuf := requireTool(t, "stdbuf") // line-buffered: the output of a killed redis-cli
	sp := startServer(t)
	redisCLI(t, sp, "", "RSINCR", "1", "1")
	host, port := splitAddr(t, sp.addr)
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	out, _ := exec.CommandContext(ctx, stdbuf, "-oL", bin, "-h", host, "-p", port, "--stat", "-i", "0.2").Output()
	row := regexp.MustCompile(`^(\d+)\s+\S+\s+(\d+)\s+(\d+)\s+(\d+) \(\+\d+\)\s+(\d+)\s*$`)
	rows := 0
	for _, l := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(l, "---") || strings.HasPrefix(l, "keys") || strings.TrimSpace(l) == "" {
			continue
		}
		m := row.FindStringSubmatch(l)
		if m == nil {
			t.Fatalf("redis-cli --stat row %q is not all numbers:\n%s", l, out)
		}
		if m[1] != "1" || m[3] != "0" {
			t.Errorf("redis-cli --stat row %q: want 1 key and 0 blocked clients", l)
		}
		rows++
	}
	if rows < 2 {
		t.Fatalf("redis-cli --stat printed %d rows in 1.5 s:\n%s", rows, out)
	}
}
