package commands

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode"
)

// TestTranscripts runs the transcripts in testdata/*.txt: commands sent to
// a dispatcher over an in-memory backend, each followed by the exact RESP
// reply, one line per RESP line:
//
//	# comment
//	#! requirepass=secret     (directive, before the first command)
//	> RSINCR 42 7             (arguments split at spaces; "Go quoted" for others)
//	:1
//	2> PING                   (a command on connection 2; connection 1 by default)
//	+PONG
//
// In expected lines, "" stands for an empty line (an empty bulk string's
// body) and a line starting with ~ matches any line with that prefix. A
// bulk string that holds LF-separated lines (CLIENT LIST) shows them as
// lines.
func TestTranscripts(t *testing.T) {
	files, err := filepath.Glob("testdata/*.txt")
	if err != nil || len(files) == 0 {
		t.Fatalf("no transcripts: %v", err)
	}
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".txt"), func(t *testing.T) {
			runTranscript(t, f)
		})
	}
}

type step struct {
	line int
	conn int
	args [][]byte
	want []string
}

func runTranscript(t *testing.T, path string) {
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	host := &fakeHost{}
	var mods []func(*Config)
	var steps []*step
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "#!"):
			key, val, _ := strings.Cut(strings.TrimSpace(line[2:]), "=")
			switch key {
			case "requirepass":
				mods = append(mods, func(c *Config) { c.RequirePass = val })
			case "maxchannels":
				v, _ := strconv.Atoi(val)
				mods = append(mods, func(c *Config) { c.MaxChannels = v })
			case "nohost":
				host = nil
			case "failstop":
				host.failStop = true
			default:
				t.Fatalf("%s:%d: unknown directive %q", path, n, key)
			}
		case strings.HasPrefix(line, "#"), strings.TrimSpace(line) == "":
		case strings.Contains(line, "> ") && isConnPrefix(line[:strings.Index(line, "> ")]):
			i := strings.Index(line, "> ")
			conn := 1
			if i > 0 {
				conn, _ = strconv.Atoi(line[:i])
			}
			args, err := splitArgs(line[i+2:])
			if err != nil {
				t.Fatalf("%s:%d: %v", path, n, err)
			}
			steps = append(steps, &step{line: n, conn: conn, args: args})
		default:
			if len(steps) == 0 {
				t.Fatalf("%s:%d: reply before any command", path, n)
			}
			s := steps[len(steps)-1]
			s.want = append(s.want, line)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	d, _ := newTestDispatcher(t, func(c *Config) {
		if host != nil {
			c.Host = host
		}
		for _, m := range mods {
			m(c)
		}
	})
	sessions := map[int]*Session{}
	for _, st := range steps {
		s := sessions[st.conn]
		if s == nil {
			s = NewSession(int64(st.conn), fmt.Sprintf("127.0.0.1:%d", 50000+st.conn), "127.0.0.1:6380", time.Unix(1_700_000_000, 0))
			sessions[st.conn] = s
			if host != nil {
				host.sessions = append(host.sessions, s)
			}
		}
		w := &bufWriter{}
		d.Dispatch(context.Background(), w, s, st.args)
		// Lines end in CRLF, but CLIENT LIST's bulk string holds LF-ended
		// lines: split at both.
		got := strings.Split(strings.ReplaceAll(strings.TrimSuffix(string(w.b), "\r\n"), "\r\n", "\n"), "\n")
		if len(w.b) == 0 {
			got = nil
		}
		if !linesMatch(got, st.want) {
			t.Errorf("%s:%d: %q\ngot:\n  %s\nwant:\n  %s", path, st.line, st.args,
				strings.Join(got, "\n  "), strings.Join(st.want, "\n  "))
		}
		// A command with no expected lines must get no reply at all
		// (CLIENT REPLY OFF and SKIP, a closing connection).
		if n, err := respValues(w.b); err != nil || (n != 1 && !s.Closing() && len(st.want) > 0) {
			t.Errorf("%s:%d: reply is %d RESP values (err %v), want exactly 1", path, st.line, n, err)
		}
	}
}

func isConnPrefix(s string) bool {
	for _, r := range s {
		if !unicode.IsDigit(r) {
			return false
		}
	}
	return true
}

func linesMatch(got, want []string) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		w := want[i]
		switch {
		case w == `""`:
			if got[i] != "" {
				return false
			}
		case strings.HasPrefix(w, "~"):
			if !strings.HasPrefix(got[i], w[1:]) {
				return false
			}
		case got[i] != w:
			return false
		}
	}
	return true
}

// splitArgs splits a transcript command line at spaces; an argument that
// starts with a double quote is a Go string literal.
func splitArgs(s string) ([][]byte, error) {
	var args [][]byte
	for {
		s = strings.TrimLeft(s, " ")
		if s == "" {
			return args, nil
		}
		if s[0] == '"' {
			end := 1
			for ; end < len(s); end++ {
				if s[end] == '\\' {
					end++
				} else if s[end] == '"' {
					break
				}
			}
			if end >= len(s) {
				return nil, fmt.Errorf("unterminated quote in %q", s)
			}
			a, err := strconv.Unquote(s[:end+1])
			if err != nil {
				return nil, err
			}
			args = append(args, []byte(a))
			s = s[end+1:]
			continue
		}
		i := strings.IndexByte(s, ' ')
		if i < 0 {
			i = len(s)
		}
		args = append(args, []byte(s[:i]))
		s = s[i:]
	}
}
