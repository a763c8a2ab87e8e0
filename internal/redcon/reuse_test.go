package redcon

// Tests of the readstates patch: a reader in reuse mode returns the same
// commands as a copying reader, for any way the stream is cut into reads.

import (
	"bytes"
	"fmt"
	"io"
	"math/rand"
	"testing"
)

// chunkReader returns its data in reads of the sizes given, cycling.
type chunkReader struct {
	data  []byte
	sizes []int
	i     int
}

func (r *chunkReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, io.EOF
	}
	n := min(r.sizes[r.i%len(r.sizes)], len(p), len(r.data))
	r.i++
	copy(p, r.data[:n])
	r.data = r.data[n:]
	return n, nil
}

// drain reads every command, copying each before the next read (as the
// server's loop is done with a command before it reads again).
func drain(t testing.TB, rd *Reader) (cmds [][][]byte, raws [][]byte, err error) {
	for {
		got, err := rd.readCommands(nil)
		if err != nil {
			if err == io.EOF {
				return cmds, raws, nil
			}
			return cmds, raws, err
		}
		for _, c := range got {
			var args [][]byte
			for _, a := range c.Args {
				args = append(args, append([]byte(nil), a...))
			}
			cmds = append(cmds, args)
			raws = append(raws, append([]byte(nil), c.Raw...))
		}
	}
}

func checkReuseMatches(t testing.TB, stream []byte, sizes []int) {
	plain := NewReader(&chunkReader{data: stream, sizes: sizes})
	reuse := newServerReader(&chunkReader{data: stream, sizes: sizes})
	want, wantRaw, wantErr := drain(t, plain)
	got, gotRaw, gotErr := drain(t, reuse)
	if fmt.Sprint(wantErr) != fmt.Sprint(gotErr) {
		t.Fatalf("errors differ: copying %v, reuse %v", wantErr, gotErr)
	}
	if fmt.Sprintf("%q", want) != fmt.Sprintf("%q", got) || fmt.Sprintf("%q", wantRaw) != fmt.Sprintf("%q", gotRaw) {
		t.Fatalf("commands differ:\ncopying %q\nreuse   %q", want, got)
	}
}

func TestReuseReaderMatchesCopyingReader(t *testing.T) {
	r := rand.New(rand.NewSource(1))
	for iter := 0; iter < 100; iter++ {
		var stream bytes.Buffer
		for n := r.Intn(400); n > 0; n-- {
			argc := 1 + r.Intn(6)
			var args []string
			for i := 0; i < argc; i++ {
				args = append(args, string(bytes.Repeat([]byte{byte('a' + r.Intn(26))}, r.Intn(3000))))
			}
			if r.Intn(10) == 0 {
				fmt.Fprintf(&stream, "PING %s\r\n", args[0][:min(len(args[0]), 10)])
				continue
			}
			fmt.Fprintf(&stream, "*%d\r\n", len(args))
			for _, a := range args {
				fmt.Fprintf(&stream, "$%d\r\n%s\r\n", len(a), a)
			}
		}
		sizes := []int{1 + r.Intn(5000), 1 + r.Intn(70000), 1 + r.Intn(16)}
		checkReuseMatches(t, stream.Bytes(), sizes)
	}
}

func FuzzReuseReader(f *testing.F) {
	f.Add([]byte("*2\r\n$3\r\nGET\r\n$1\r\nk\r\nPING\r\n*1\r\n$4\r\nPING\r\n"), uint16(3))
	f.Add([]byte("*1\r\n$-1\r\n"), uint16(1))
	f.Fuzz(func(t *testing.T, stream []byte, size uint16) {
		checkReuseMatches(t, stream, []int{1 + int(size)%9000, 7})
	})
}

// Once a connection's buffers have grown, a steady pipeline reads without
// allocating.
func TestReuseReaderDoesNotAllocate(t *testing.T) {
	var one bytes.Buffer
	for i := 0; i < 200; i++ {
		one.WriteString("*3\r\n$6\r\nRSINCR\r\n$13\r\n1234567890123\r\n$2\r\n42\r\n")
	}
	src := &chunkReader{sizes: []int{4096}}
	rd := newServerReader(src)
	read := func() {
		src.data = one.Bytes()
		for n := 0; n < 200; {
			cmds, err := rd.readCommands(nil)
			if err != nil {
				t.Fatal(err)
			}
			n += len(cmds)
		}
	}
	read()
	if a := testing.AllocsPerRun(50, read); a != 0 {
		t.Fatalf("%v allocations per pipeline of 200 commands", a)
	}
}

func TestCommandParser(t *testing.T) {
	var p CommandParser
	for _, tc := range []struct {
		raw  string
		args []string
	}{
		{"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n", []string{"SET", "k", ""}},
		{"PING a \"b c\"\r\n", []string{"PING", "a", "b c"}},
		{"PING\n", []string{"PING"}},
		{"   \r\n", nil},
	} {
		cmd, err := p.Parse([]byte(tc.raw))
		if err != nil {
			t.Fatalf("Parse(%q): %v", tc.raw, err)
		}
		if len(cmd.Args) != len(tc.args) {
			t.Fatalf("Parse(%q) = %q, want %q", tc.raw, cmd.Args, tc.args)
		}
		for i := range tc.args {
			if string(cmd.Args[i]) != tc.args[i] {
				t.Fatalf("Parse(%q) = %q, want %q", tc.raw, cmd.Args, tc.args)
			}
		}
	}
	for _, bad := range []string{"*1\r\n$3\r\nGET\r\n*1\r\n$3\r\nGET\r\n", "*1\r\n$3\r\nGE", "*x\r\n"} {
		if _, err := p.Parse([]byte(bad)); err == nil {
			t.Errorf("Parse(%q): no error", bad)
		}
	}
	raw := []byte("*3\r\n$6\r\nRSINCR\r\n$2\r\n42\r\n$1\r\n7\r\n")
	p.Parse(raw)
	if n := testing.AllocsPerRun(100, func() { p.Parse(raw) }); n != 0 {
		t.Fatalf("Parse allocates %v times per command", n)
	}
}
