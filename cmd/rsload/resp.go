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

// appendStrings appends a RESP array of bulk strings.
func appendStrings(b []byte, args ...string) []byte {
	b = appendArray(b, len(args))
	for _, a := range args {
		b = appendBulk(b, a)
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

// readValue reads one reply of any type: an int64, a string (simple, bulk
// or verbatim, without the verbatim format), an errReply, nil, or a []any
// (arrays, sets and pushes; a map's keys and values alternate, as RESP2
// sends maps). An error means the stream is broken. For the polling
// connection: it allocates freely.
func readValue(r *bufio.Reader) (any, error) {
	return readValueDepth(r, 0)
}

func readValueDepth(r *bufio.Reader, depth int) (any, error) {
	if depth > 8 {
		return nil, errors.New("reply nested too deep")
	}
	line, err := r.ReadString('\n')
	if err != nil {
		return nil, err
	}
	if len(line) < 3 || line[len(line)-2] != '\r' {
		return nil, fmt.Errorf("malformed reply line %q", line)
	}
	body := line[1 : len(line)-2]
	switch line[0] {
	case '+':
		return body, nil
	case '-', '!':
		return errReply(body), nil
	case ':':
		n, err := strconv.ParseInt(body, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("integer %q: %w", body, err)
		}
		return n, nil
	case '_':
		return nil, nil
	case '$', '=':
		n, err := strconv.Atoi(body)
		if err != nil || n < -1 {
			return nil, fmt.Errorf("bulk length %q", body)
		}
		if n < 0 {
			return nil, nil
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(r, buf); err != nil {
			return nil, err
		}
		if line[0] == '=' && n >= 4 {
			return string(buf[4:n]), nil
		}
		return string(buf[:n]), nil
	case '*', '%', '~', '>':
		n, err := strconv.Atoi(body)
		if err != nil || n < -1 {
			return nil, fmt.Errorf("aggregate length %q", body)
		}
		if n < 0 {
			return nil, nil
		}
		if line[0] == '%' {
			n *= 2
		}
		out := make([]any, 0, min(n, 1024))
		for range n {
			v, err := readValueDepth(r, depth+1)
			if err != nil {
				return nil, err
			}
			out = append(out, v)
		}
		return out, nil
	}
	return nil, fmt.Errorf("unknown reply type %q", line[0])
}

// histograms reads a LATENCY HISTOGRAM reply (readValue's): command name
// -> {"calls": n, "histogram_usec": {bound: cumulative count, ...}}.
func histograms(v any) (map[string]cdf, error) {
	if er, ok := v.(errReply); ok {
		return nil, er
	}
	pairs, ok := v.([]any)
	if !ok || len(pairs)%2 != 0 {
		return nil, fmt.Errorf("reply %v is not a map", v)
	}
	out := make(map[string]cdf, len(pairs)/2)
	for i := 0; i < len(pairs); i += 2 {
		name, ok := pairs[i].(string)
		fields, ok2 := pairs[i+1].([]any)
		if !ok || !ok2 || len(fields)%2 != 0 {
			return nil, fmt.Errorf("entry %v: %v is not a command's histogram", pairs[i], pairs[i+1])
		}
		var h cdf
		for j := 0; j < len(fields); j += 2 {
			switch fields[j] {
			case "calls":
				n, ok := fields[j+1].(int64)
				if !ok || n < 0 {
					return nil, fmt.Errorf("%s: calls %v", name, fields[j+1])
				}
				h.calls = uint64(n)
			case "histogram_usec":
				buckets, ok := fields[j+1].([]any)
				if !ok || len(buckets)%2 != 0 {
					return nil, fmt.Errorf("%s: histogram_usec %v is not a map", name, fields[j+1])
				}
				for k := 0; k < len(buckets); k += 2 {
					b, ok := buckets[k].(int64)
					n, ok2 := buckets[k+1].(int64)
					if !ok || !ok2 || n < 0 {
						return nil, fmt.Errorf("%s: bucket %v: %v", name, buckets[k], buckets[k+1])
					}
					if m := len(h.bounds); m > 0 && (b <= h.bounds[m-1] || uint64(n) < h.counts[m-1]) {
						return nil, fmt.Errorf("%s: bucket %d: %d after %d: %d: not cumulative", name, b, n, h.bounds[m-1], h.counts[m-1])
					}
					h.bounds = append(h.bounds, b)
					h.counts = append(h.counts, uint64(n))
				}
			}
		}
		out[name] = h
	}
	return out, nil
}
