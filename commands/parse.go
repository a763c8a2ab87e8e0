package commands

import "math"

// Argument names as the spec words them in error replies.
const (
	argUserID    = "user_id"
	argChannelID = "channel_id"
	argMessageID = "message_id"
	argDelta     = "delta"
)

// Range phrases of the error replies; exact text of the wire contract.
const (
	idRange    = "expected an integer from 0 to 9223372036854775807"
	deltaRange = "expected an integer from -9223372036854775808 to 9223372036854775807"
)

// parseID parses a snowflake id: one or more ASCII digits (leading zeros
// allowed) with a value of at most math.MaxInt64. No sign, no spaces. It
// works on the argument bytes in place and does not allocate.
func parseID(b []byte) (int64, bool) {
	if len(b) == 0 {
		return 0, false
	}
	var n uint64
	for _, c := range b {
		d := uint64(c - '0')
		if d > 9 {
			return 0, false
		}
		// n*10+d > MaxInt64  <=>  n > (MaxInt64-d)/10 (integer division is
		// exact enough here because the right side is floored).
		if n > (math.MaxInt64-d)/10 {
			return 0, false
		}
		n = n*10 + d
	}
	return int64(n), true
}

// parseInt64 parses a signed decimal 64-bit integer with the semantics of
// strconv.ParseInt(s, 10, 64): an optional '+' or '-', then one or more
// ASCII digits (leading zeros allowed), in -2^63 .. 2^63-1. It does not
// allocate.
func parseInt64(b []byte) (int64, bool) {
	neg := false
	if len(b) > 0 && (b[0] == '-' || b[0] == '+') {
		neg = b[0] == '-'
		b = b[1:]
	}
	if len(b) == 0 {
		return 0, false
	}
	// The magnitude may reach 2^63 when negative.
	limit := uint64(math.MaxInt64)
	if neg {
		limit++
	}
	var n uint64
	for _, c := range b {
		d := uint64(c - '0')
		if d > 9 {
			return 0, false
		}
		if n > (limit-d)/10 {
			return 0, false
		}
		n = n*10 + d
	}
	if neg {
		return int64(-n), true // -(2^63) wraps to MinInt64, as wanted
	}
	return int64(n), true
}

// maxQuoted bounds how much of a bad argument an error reply repeats, so a
// megabyte argument cannot make a megabyte error.
const maxQuoted = 64

// appendQuoted appends arg in single quotes, safe for a RESP simple error:
// printable ASCII is kept, a quote or backslash is escaped with a
// backslash, every other byte (CR, LF, control, non-ASCII) is written as
// \xHH. Arguments longer than maxQuoted bytes are cut, and the cut is
// marked with "..." after the closing quote.
func appendQuoted(dst, arg []byte) []byte {
	const hex = "0123456789abcdef"
	cut := len(arg) > maxQuoted
	if cut {
		arg = arg[:maxQuoted]
	}
	dst = append(dst, '\'')
	for _, c := range arg {
		switch {
		case c == '\'' || c == '\\':
			dst = append(dst, '\\', c)
		case c >= 0x20 && c < 0x7f:
			dst = append(dst, c)
		default:
			dst = append(dst, '\\', 'x', hex[c>>4], hex[c&0xf])
		}
	}
	dst = append(dst, '\'')
	if cut {
		dst = append(dst, "..."...)
	}
	return dst
}

// invalidArg builds the error reply for an argument that failed to parse,
// e.g. "ERR invalid channel_id 'abc': expected an integer from 0 to
// 9223372036854775807".
func invalidArg(name string, arg []byte, want string) string {
	b := make([]byte, 0, len("ERR invalid : ")+len(name)+len(want)+maxQuoted+8)
	b = append(b, "ERR invalid "...)
	b = append(b, name...)
	b = append(b, ' ')
	b = appendQuoted(b, arg)
	b = append(b, ": "...)
	b = append(b, want...)
	return string(b)
}
