package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strconv"
)

// appendCommand appends a RESP array of bulk strings: the command, then
// integer arguments (every argument of the read-state commands is one).
func appendCommand(b []byte, name string, args ...int64) []byte {
	b = appendArray(b, 1+len(args))
	b = appendBulk(b, name)
	for _, a := range args {
		b = appendBulkInt(b, "", a)
	}
	return b
}

func appendArray(b []byte, n int) []byte {
	b = append(b, '*')
	b = strconv.AppendInt(b, int64(n), 10)
	return append(b, "\r\n"...)
}

func appendBulk(b []byte, s string) []byte {
	b = append(b, '$')
	b = strconv.AppendInt(b, int64(len(s)), 10)
	b = append(b, "\r\n"...)
	b = append(b, s...)
	return append(b, "\r\n"...)
}

// appendBulkInt appends the bulk string prefix+v without allocating.
func appendBulkInt(b []byte, prefix string, v int64) []byte {
	var num [20]byte
	d := strconv.AppendInt(num[:0], v, 10)
	b = append(b, '$')
	b = strconv.AppendInt(b, int64(len(prefix)+len(d)), 10)
	b = append(b, "\r\n"...)
	b = append(b, prefix...)
	b = append(b, d...)
	return append(b, "\r\n"...)
}

// errReply is a RESP error reply (the server's answer, not a broken stream).
type errReply string

func (e errReply) Error() string { return string(e) }

// skipReply reads one reply of any type and discards it; an error reply
// is returned as errReply. It allocates nothing for the replies the
// read-state commands give (integers and arrays of integers).
func skipReply(r *bufio.Reader) error {
	line, err := r.ReadSlice('\n')
	if err != nil {
		return err
	}
	if len(line) < 3 || line[len(line)-2] != '\r' {
		return fmt.Errorf("malformed reply line %q", line)
	}
	body := line[1 : len(line)-2]
	switch line[0] {
	case '+', ':', '_', '#', ',', '(':
		return nil
	case '-', '!':
		return errReply(string(body))
	case '$', '=':
		n, err := strconv.Atoi(string(body))
		if err != nil {
			return fmt.Errorf("bulk length %q: %w", body, err)
		}
		if n < 0 {
			return nil
		}
		_, err = r.Discard(n + 2)
		return err
	case '*', '%', '~', '>':
		n, err := strconv.Atoi(string(body))
		if err != nil {
			return fmt.Errorf("array length %q: %w", body, err)
		}
		if line[0] == '%' {
			n *= 2
		}
		var first error
		for range n {
			if err := skipReply(r); err != nil {
				var er errReply
				if !errors.As(err, &er) {
					return err
				}
				first = cmpErr(first, err)
			}
		}
		return first
	}
	return fmt.Errorf("unknown reply type %q", line[0])
}

func cmpErr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// readBulk reads one bulk string reply (INFO's) into a new string.
func readBulk(r *bufio.Reader) (string, error) {
	line, err := r.ReadSlice('\n')
	if err != nil {
		return "", err
	}
	if len(line) < 3 || (line[0] != '$' && line[0] != '=') {
		return "", fmt.Errorf("expected a bulk string, got %q", line)
	}
	n, err := strconv.Atoi(string(line[1 : len(line)-2]))
	if err != nil || n < 0 {
		return "", fmt.Errorf("bulk length %q", line)
	}
	buf := make([]byte, n+2)
	if _, err := io.ReadFull(r, buf); err != nil {
		return "", err
	}
	return string(buf[:n]), nil
}
