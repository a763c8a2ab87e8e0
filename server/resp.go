package server

import "strconv"

// The request parser: the one pass over a connection's input. It frames
// RESP multibulk requests and inline (telnet) lines, enforces the limits of
// one request as it goes, and hands out each command's arguments as slices
// of the input, so a command costs no copy and no allocation.
//
// It is written for readstates rather than taken from redcon: redcon
// v1.6.4 parses with no limits (a bulk length near math.MaxInt panics, a
// huge multibulk count spins, a length with no data grows the buffer
// without bound), allocates per command, and must see a command whole;
// the limits had to be enforced by a second scan in front of it. Here one
// scan does both, and resumes where it stopped when a request arrives in
// pieces, so a request trickled in a byte at a time costs what its bytes
// cost.
//
// Its grammar is redcon's, which is Redis's with stricter numbers: digits
// only, CRLF after every header and payload, a multibulk count of at least
// one. Inline lines split on spaces; a quoted argument (single or double
// quotes, backslash escapes \n \r \t and \<any>) must stand alone.
// Malformed input gets Redis's error texts.

// Limits of one request; see Config.
type limits struct {
	maxArgs    int64
	maxBulk    int64
	maxRequest int64
	maxInline  int64
}

// maxInline is Redis's limit on an inline (telnet) request line.
const maxInline = 64 << 10

// protocolError is a malformed or oversized request. The connection that
// sent it is answered and closed.
type protocolError struct{ msg string }

func (e *protocolError) Error() string { return "Protocol error: " + e.msg }

var (
	errTooBig          = &protocolError{"too big request"}
	errTooBigInline    = &protocolError{"too big inline request"}
	errQuotes          = &protocolError{"unbalanced quotes in request"}
	errMultibulkLength = &protocolError{"invalid multibulk length"}
	errBulkLength      = &protocolError{"invalid bulk length"}
)

// reqParser is one connection's parser state: where it stopped in a
// request that has not fully arrived, relative to the request's first
// byte. It is small, so an idle connection holds next to nothing: the
// argument slices live in a scratch owned by whoever drives the parser.
//
// Invariant: between calls, the input that parse is given next starts
// with the same request bytes it was given last (more may follow).
type reqParser struct {
	lim   limits
	pos   int   // bytes of the request checked so far
	count int   // multibulk: arguments declared (0: header not read)
	done  int   // multibulk: arguments read whole
	bulk  int64 // multibulk: length of the argument at pos, -1 before its header
}

// scratch holds the arguments of the command being run: they alias the
// input, or inline for quoted inline arguments. It is reused from command
// to command; one per event loop or connection goroutine.
type scratch struct {
	args   [][]byte
	inline []byte
}

// maxScratchKept bounds the argument slots a scratch keeps between
// commands.
const maxScratchKept = 1024

func (sc *scratch) reset() {
	if cap(sc.args) > maxScratchKept {
		sc.args = nil
	}
	if cap(sc.inline) > maxInline {
		sc.inline = nil
	}
}

// parse looks for one whole request at the start of b. It returns the
// request's length and its arguments (in sc; valid until b or sc change),
// or 0 if the request is not whole yet, or the protocol error that stops
// the stream. A blank inline line is a request with no arguments.
func (p *reqParser) parse(b []byte, sc *scratch) (n int, args [][]byte, err error) {
	if len(b) == 0 {
		return 0, nil, nil
	}
	if b[0] != '*' {
		return p.parseInline(b, sc)
	}
	if p.count == 0 {
		v, next, perr := readNum(b, 1, p.lim.maxArgs, errMultibulkLength)
		if perr != nil || next == 0 {
			return 0, nil, perr
		}
		if v == 0 {
			return 0, nil, errMultibulkLength // redcon refuses "*0"
		}
		p.count, p.pos, p.bulk = int(v), next, -1
	}
	for p.done < p.count {
		if p.bulk < 0 {
			if p.pos >= len(b) {
				return 0, nil, nil
			}
			if c := b[p.pos]; c != '$' {
				p.reset()
				return 0, nil, &protocolError{"expected '$', got '" + printable(c) + "'"}
			}
			v, next, perr := readNum(b, p.pos+1, p.lim.maxBulk, errBulkLength)
			if perr != nil || next == 0 {
				if perr != nil {
					p.reset()
				}
				return 0, nil, perr
			}
			if int64(next)+v+2 > p.lim.maxRequest {
				p.reset()
				return 0, nil, errTooBig
			}
			p.pos, p.bulk = next, v
		}
		end := p.pos + int(p.bulk)
		if end+2 > len(b) {
			return 0, nil, nil
		}
		if b[end] != '\r' || b[end+1] != '\n' {
			p.reset()
			return 0, nil, errBulkLength
		}
		p.pos, p.bulk = end+2, -1
		p.done++
	}
	n, count := p.pos, p.count
	p.reset()
	return n, sc.multibulk(b[:n], count), nil
}

func (p *reqParser) reset() { p.pos, p.count, p.done, p.bulk = 0, 0, 0, -1 }

// multibulk slices the arguments of req, a whole multibulk request that
// parse has checked: it walks the headers again (not the payloads), which
// costs less than keeping every argument's offsets across reads.
func (sc *scratch) multibulk(req []byte, count int) [][]byte {
	args := sc.args[:0]
	i := 1
	for req[i] != '\r' {
		i++
	}
	i += 2
	for range count {
		i++ // '$'
		n := 0
		for ; req[i] != '\r'; i++ {
			n = n*10 + int(req[i]-'0')
		}
		i += 2
		args = append(args, req[i:i+n:i+n])
		i += n + 2
	}
	sc.args = args
	return args
}

// maxDigits bounds the digits of a length, leading zeros included.
const maxDigits = 20

// readNum reads the decimal number at b[from:], up to and including its
// CRLF: its value and the offset after the LF, next = 0 if b ends first.
// Anything but digits, an empty number, a value above limit or a CR
// without LF is bad.
func readNum(b []byte, from int, limit int64, bad *protocolError) (v int64, next int, err error) {
	i := from
	for ; i < len(b); i++ {
		c := b[i]
		if c == '\r' {
			break
		}
		if i-from >= maxDigits {
			return 0, 0, bad // leading zeros without end
		}
		if c < '0' || c > '9' {
			return 0, 0, bad
		}
		v = v*10 + int64(c-'0') // cannot overflow: v <= limit <= maxLimit before
		if v > limit {
			return 0, 0, bad
		}
	}
	switch {
	case i+1 >= len(b):
		return 0, 0, nil
	case i == from || b[i+1] != '\n':
		return 0, 0, bad
	}
	return v, i + 2, nil
}

// parseInline parses an inline request: a line ending in LF (a CR before
// it is dropped).
func (p *reqParser) parseInline(b []byte, sc *scratch) (int, [][]byte, error) {
	lf := -1
	for i := p.pos; i < len(b); i++ {
		if b[i] == '\n' {
			lf = i
			break
		}
	}
	if lf < 0 {
		p.pos = len(b)
		if int64(len(b)) > p.lim.maxInline {
			p.reset()
			return 0, nil, errTooBigInline
		}
		return 0, nil, nil
	}
	p.reset()
	if int64(lf) > p.lim.maxInline {
		return 0, nil, errTooBigInline
	}
	line := b[:lf]
	if len(line) > 0 && line[len(line)-1] == '\r' {
		line = line[:len(line)-1]
	}
	args, err := sc.splitInline(line)
	if err != nil {
		return 0, nil, err
	}
	if int64(len(args)) > p.lim.maxArgs {
		return 0, nil, errMultibulkLength
	}
	return lf + 1, args, nil
}

// splitInline splits an inline line into arguments as redcon does.
func (sc *scratch) splitInline(line []byte) ([][]byte, error) {
	args := sc.args[:0]
	if cap(sc.inline) < len(line) {
		sc.inline = make([]byte, 0, len(line))
	}
	// Unquoted arguments alias line; quoted ones are unescaped into
	// sc.inline, which has room for all of line, so it never moves.
	buf := sc.inline[:0]
	for i := 0; i < len(line); {
		switch c := line[i]; {
		case c == ' ':
			i++
		case c == '"' || c == '\'':
			start := len(buf)
			i++
			closed := false
			for i < len(line) {
				d := line[i]
				i++
				if d == c {
					closed = true
					break
				}
				if d == '\\' {
					if i == len(line) {
						break
					}
					d = line[i]
					i++
					switch d {
					case 'n':
						d = '\n'
					case 'r':
						d = '\r'
					case 't':
						d = '\t'
					}
				}
				buf = append(buf, d)
			}
			if !closed || (i < len(line) && line[i] != ' ') {
				return nil, errQuotes
			}
			args = append(args, buf[start:len(buf):len(buf)])
		default:
			start := i
			for i < len(line) && line[i] != ' ' {
				if line[i] == '"' || line[i] == '\'' {
					return nil, errQuotes // a quote inside an argument
				}
				i++
			}
			args = append(args, line[start:i:i])
		}
	}
	sc.args, sc.inline = args, buf
	return args, nil
}

// printable shows a byte in an error reply: itself if printable ASCII,
// else \xHH.
func printable(c byte) string {
	if c >= 0x20 && c < 0x7f {
		return string(rune(c))
	}
	return `\x` + strconv.FormatUint(uint64(c)>>4, 16) + strconv.FormatUint(uint64(c)&0xf, 16)
}
