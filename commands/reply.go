package commands

import "strconv"

// Writer receives one command's reply. redcon.Conn satisfies it. Calls
// append to the connection's output buffer; nothing is sent before the
// server flushes, so a reply costs no system call of its own.
//
// WriteRaw's argument is copied before the call returns, so callers may
// reuse the buffer.
type Writer interface {
	WriteError(msg string)
	WriteString(str string)
	WriteBulk(bulk []byte)
	WriteBulkString(bulk string)
	WriteInt64(num int64)
	WriteArray(count int)
	WriteNull()
	WriteRaw(data []byte)
}

// Protocol versions a connection can speak.
const (
	RESP2 = 2
	RESP3 = 3
)

// The helpers below write the reply types whose encoding depends on the
// connection's protocol. redcon only knows RESP2, so the RESP3 frames are
// built in the session's scratch buffer (reused, so no allocation once it
// has grown) and written raw.

// writeHeader writes a RESP3 aggregate header such as "%2\r\n".
func (s *Session) writeHeader(w Writer, kind byte, n int) {
	b := append(s.scratch[:0], kind)
	b = strconv.AppendInt(b, int64(n), 10)
	b = append(b, '\r', '\n')
	s.scratch = b
	w.WriteRaw(b)
}

// writeMap writes the header of a map of n pairs: a RESP3 map, or in RESP2
// a flat array of 2n elements (key, value, key, value...), as Redis does.
func (s *Session) writeMap(w Writer, n int) {
	if s.Protocol() == RESP3 {
		s.writeHeader(w, '%', n)
		return
	}
	w.WriteArray(2 * n)
}

// writeSet writes the header of a set of n elements (an array in RESP2).
func (s *Session) writeSet(w Writer, n int) {
	if s.Protocol() == RESP3 {
		s.writeHeader(w, '~', n)
		return
	}
	w.WriteArray(n)
}

// writeNull writes the null reply: "_" in RESP3, the null bulk string in
// RESP2.
func (s *Session) writeNull(w Writer) {
	if s.Protocol() == RESP3 {
		s.scratch = append(s.scratch[:0], '_', '\r', '\n')
		w.WriteRaw(s.scratch)
		return
	}
	w.WriteNull()
}

// writeVerbatim writes text as a RESP3 verbatim string of format "txt" (what
// Redis uses for INFO), or as a bulk string in RESP2.
func (s *Session) writeVerbatim(w Writer, text []byte) {
	if s.Protocol() != RESP3 {
		w.WriteBulk(text)
		return
	}
	b := append(s.scratch[:0], '=')
	b = strconv.AppendInt(b, int64(len(text)+4), 10)
	b = append(b, "\r\ntxt:"...)
	b = append(b, text...)
	b = append(b, '\r', '\n')
	w.WriteRaw(b)
	s.scratch = b[:0]
	if cap(s.scratch) > maxScratch {
		s.scratch = nil // an INFO reply must not pin its buffer for the connection's life
	}
}

// maxScratch is the largest scratch buffer a session keeps between
// commands.
const maxScratch = 4096

// writeError writes an error reply, marks the command as failed for the
// server's error metrics and counts the reply by its code (INFO
// errorstats).
func (s *Session) writeError(w Writer, msg string) {
	s.failed = true
	if s.errs != nil {
		s.errs.count(msg)
	}
	w.WriteError(msg)
}

// writeOK writes the simple string OK.
func writeOK(w Writer) { w.WriteString("OK") }
