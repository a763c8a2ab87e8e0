package commands

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"strconv"
	"strings"
)

// Connection commands: PING, ECHO, QUIT, HELLO, AUTH, SELECT, CLIENT. The
// replies and error texts are Redis 7's, so that clients and tools
// (redis-cli, redis-benchmark, go-redis, redis-py) work unchanged.

func ping(_ context.Context, _ *Dispatcher, w Writer, _ *Session, args [][]byte) {
	if len(args) == 2 {
		w.WriteBulk(args[1])
		return
	}
	w.WriteString("PONG")
}

func echo(_ context.Context, _ *Dispatcher, w Writer, _ *Session, args [][]byte) {
	w.WriteBulk(args[1])
}

func quit(_ context.Context, _ *Dispatcher, w Writer, s *Session, _ [][]byte) {
	writeOK(w)
	s.closing = true
}

const (
	errWrongPass = "WRONGPASS invalid username-password pair or user is disabled."
	errNoPass    = "ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?"
	errHelloAuth = "NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time"
	errBadName   = "ERR Client names cannot contain spaces, newlines or special characters."
	errSyntax    = "ERR syntax error"
)

// credentialsOK checks a user name and password against the only user,
// "default". Without requirepass the default user has no password (Redis's
// "nopass"), and any password is accepted. The comparison hashes both
// sides first, so its time depends on neither the password's content nor
// its length.
func (d *Dispatcher) credentialsOK(user, pass []byte) bool {
	if string(user) != "default" {
		return false
	}
	if d.pass == "" {
		return true
	}
	got := sha256.Sum256(pass)
	want := sha256.Sum256([]byte(d.pass))
	return subtle.ConstantTimeCompare(got[:], want[:]) == 1
}

// AUTH [username] password
func auth(_ context.Context, d *Dispatcher, w Writer, s *Session, args [][]byte) {
	if len(args) > 3 {
		s.writeError(w, errSyntax)
		return
	}
	user, pass := []byte("default"), args[1]
	if len(args) == 3 {
		user, pass = args[1], args[2]
	} else if d.pass == "" {
		s.writeError(w, errNoPass)
		return
	}
	if !d.credentialsOK(user, pass) {
		s.writeError(w, errWrongPass)
		return
	}
	s.authed = true
	writeOK(w)
}

// HELLO [protover [AUTH username password] [SETNAME clientname]]
func hello(_ context.Context, d *Dispatcher, w Writer, s *Session, args [][]byte) {
	proto := s.Protocol()
	i := 1
	if len(args) > 1 {
		v, ok := parseInt64(args[1])
		if !ok || v != int64(int32(v)) {
			s.writeError(w, "ERR Protocol version is not an integer or out of range")
			return
		}
		if v != RESP2 && v != RESP3 {
			s.writeError(w, "NOPROTO unsupported protocol version")
			return
		}
		proto = int(v)
		i = 2
	}
	var user, pass, name []byte
	var hasAuth, hasName bool
	for ; i < len(args); i++ {
		more := len(args) - i - 1
		switch {
		case equalFold("auth", args[i]) && more >= 2:
			user, pass, hasAuth = args[i+1], args[i+2], true
			i += 2
		case equalFold("setname", args[i]) && more >= 1:
			name, hasName = args[i+1], true
			i++
		default:
			b := appendCut([]byte("ERR Syntax error in HELLO option '"), args[i], 128)
			s.writeError(w, string(append(b, '\'')))
			return
		}
	}
	if hasAuth {
		if !d.credentialsOK(user, pass) {
			s.writeError(w, errWrongPass)
			return
		}
		s.authed = true
	}
	if d.pass != "" && !s.authed {
		s.writeError(w, errHelloAuth)
		return
	}
	if hasName {
		if !validClientName(name) {
			s.writeError(w, errBadName)
			return
		}
		s.setName(string(name))
	}
	if proto != RESP3 {
		d.trackOff(s) // a RESP2 client cannot take invalidation pushes
	}
	s.proto.Store(int32(proto))
	// The reply is in the new protocol, as in Redis.
	s.writeMap(w, 7)
	w.WriteBulkString("server")
	// "redis", as servers of the protocol say (clients check it before
	// they use client-side caching); INFO says which server this is.
	w.WriteBulkString("redis")
	w.WriteBulkString("version")
	w.WriteBulkString(RedisVersion)
	w.WriteBulkString("proto")
	w.WriteInt64(int64(proto))
	w.WriteBulkString("id")
	w.WriteInt64(s.id)
	w.WriteBulkString("mode")
	if d.cluster != nil {
		w.WriteBulkString("cluster")
	} else {
		w.WriteBulkString("standalone")
	}
	w.WriteBulkString("role")
	w.WriteBulkString("master")
	w.WriteBulkString("modules")
	w.WriteArray(0)
}

// validClientName reports whether name may be a client name or library
// attribute: Redis allows only '!'..'~' (no spaces, newlines or other
// special characters). The empty name is allowed and clears the name.
func validClientName(name []byte) bool {
	for _, c := range name {
		if c < '!' || c > '~' {
			return false
		}
	}
	return true
}

// SELECT index: there is one database, 0.
func selectDB(_ context.Context, _ *Dispatcher, w Writer, s *Session, args [][]byte) {
	n, ok := parseInt64(args[1])
	if !ok || n != int64(int32(n)) {
		s.writeError(w, "ERR value is not an integer or out of range")
		return
	}
	if n != 0 {
		s.writeError(w, "ERR DB index is out of range")
		return
	}
	writeOK(w)
}

func clientID(_ context.Context, _ *Dispatcher, w Writer, s *Session, _ [][]byte) {
	w.WriteInt64(s.id)
}

func clientGetName(_ context.Context, _ *Dispatcher, w Writer, s *Session, _ [][]byte) {
	name := s.Name()
	if name == "" {
		s.writeNull(w)
		return
	}
	w.WriteBulkString(name)
}

func clientSetName(_ context.Context, _ *Dispatcher, w Writer, s *Session, args [][]byte) {
	if !validClientName(args[2]) {
		s.writeError(w, errBadName)
		return
	}
	s.setName(string(args[2]))
	writeOK(w)
}

// CLIENT SETINFO LIB-NAME|LIB-VER value
func clientSetInfo(_ context.Context, _ *Dispatcher, w Writer, s *Session, args [][]byte) {
	var field *string
	var attr string
	switch {
	case equalFold("lib-name", args[2]):
		field, attr = &s.mu.libName, "lib-name"
	case equalFold("lib-ver", args[2]):
		field, attr = &s.mu.libVer, "lib-ver"
	default:
		b := appendCut([]byte("ERR Unrecognized option '"), args[2], 128)
		s.writeError(w, string(append(b, '\'')))
		return
	}
	if !validClientName(args[3]) {
		s.writeError(w, "ERR "+attr+" cannot contain spaces, newlines or special characters.")
		return
	}
	s.mu.Lock()
	*field = string(args[3])
	s.mu.Unlock()
	writeOK(w)
}

// CLIENT INFO: this connection's line of CLIENT LIST.
func clientInfo(_ context.Context, d *Dispatcher, w Writer, s *Session, _ [][]byte) {
	s.writeVerbatim(w, d.appendClient(nil, s))
}

// CLIENT LIST [TYPE NORMAL|MASTER|REPLICA|PUBSUB] [ID client-id ...]
func clientList(_ context.Context, d *Dispatcher, w Writer, s *Session, args [][]byte) {
	var ids []int64
	typ := "normal"
	for i := 2; i < len(args); i++ {
		switch {
		case equalFold("type", args[i]) && i+1 < len(args):
			i++
			typ = strings.ToLower(string(args[i]))
			switch typ {
			case "normal", "master", "replica", "slave", "pubsub":
			default:
				b := appendCut([]byte("ERR Unknown client type '"), args[i], 128)
				s.writeError(w, string(append(b, '\'')))
				return
			}
		case equalFold("id", args[i]) && i+1 < len(args):
			for i++; i < len(args); i++ {
				id, ok := parseInt64(args[i])
				if !ok || id <= 0 {
					s.writeError(w, "ERR Invalid client ID")
					return
				}
				ids = append(ids, id)
			}
		default:
			s.writeError(w, errSyntax)
			return
		}
	}
	var b []byte
	if typ == "normal" {
		if d.host == nil {
			b = d.appendClient(b, s)
		} else {
			d.host.EachSession(func(o *Session) {
				if len(ids) == 0 || containsID(ids, o.id) {
					b = d.appendClient(b, o)
				}
			})
		}
	}
	s.writeVerbatim(w, b)
}

func containsID(ids []int64, id int64) bool {
	for _, x := range ids {
		if x == id {
			return true
		}
	}
	return false
}

// appendClient appends one CLIENT LIST line: Redis's fields that mean
// something here, plus tot-cmds. It may be called for another
// connection's session, so it reads only fields safe for that.
func (d *Dispatcher) appendClient(b []byte, s *Session) []byte {
	s.mu.Lock()
	name, libName, libVer := s.mu.name, s.mu.libName, s.mu.libVer
	s.mu.Unlock()
	age := d.now().Sub(s.created) / 1e9
	b = append(b, "id="...)
	b = strconv.AppendInt(b, s.id, 10)
	b = append(b, " addr="...)
	b = append(b, s.addr...)
	b = append(b, " laddr="...)
	b = append(b, s.laddr...)
	b = append(b, " name="...)
	b = append(b, name...)
	b = append(b, " age="...)
	b = strconv.AppendInt(b, int64(age), 10)
	b = append(b, " flags=N db=0 sub=0 psub=0 ssub=0 multi=-1 user=default resp="...)
	b = strconv.AppendInt(b, int64(s.Protocol()), 10)
	b = append(b, " lib-name="...)
	b = append(b, libName...)
	b = append(b, " lib-ver="...)
	b = append(b, libVer...)
	b = append(b, " tot-cmds="...)
	b = strconv.AppendUint(b, s.Commands(), 10)
	return append(b, '\n')
}

func clientHelp(_ context.Context, _ *Dispatcher, w Writer, _ *Session, _ [][]byte) {
	writeHelp(w, "CLIENT",
		"ID", "    Return the ID of the current connection.",
		"GETNAME", "    Return the name of the current connection.",
		"SETNAME <name>", "    Assign the name <name> to the current connection.",
		"SETINFO <option> <value>", "    Set client meta attr. Options are:",
		"    * LIB-NAME: the client lib name.", "    * LIB-VER: the client lib version.",
		"INFO", "    Return information about the current client connection.",
		"KILL <ip:port>", "    Kill connection made from <ip:port>.",
		"KILL <option> <value> [<option> <value> [...]]", "    Kill connections. Options are: ID <client-id>, ADDR <ip:port>, LADDR <ip:port>, USER <username>, TYPE normal, SKIPME (YES|NO) (default YES).",
		"REPLY (ON|OFF|SKIP)", "    Control the replies sent to the current connection.",
		"TRACKING (ON|OFF) [OPTIN] [OPTOUT] [NOLOOP]", "    Control server assisted client side caching (RESP3; no BCAST, PREFIX or REDIRECT).",
		"CACHING (YES|NO)", "    Enable/disable tracking of the keys for next command in OPTIN/OPTOUT modes.",
		"TRACKINGINFO", "    Report tracking status for the current connection.",
		"GETREDIR", "    Return the client ID we are redirecting to when tracking is enabled.",
		"NO-EVICT (ON|OFF)", "    Protect current client connection from eviction.",
		"LIST [TYPE <type>] [ID <id> [<id> ...]]", "    Return information about client connections.",
		"HELP", "    Print this help.",
	)
}

// writeHelp writes a HELP reply as Redis does: an array of simple strings,
// headed by "<COMMAND> <subcommand> [<arg> [value] [opt] ...]. Subcommands are:".
func writeHelp(w Writer, container string, lines ...string) {
	w.WriteArray(len(lines) + 1)
	w.WriteString(container + " <subcommand> [<arg> [value] [opt] ...]. Subcommands are:")
	for _, l := range lines {
		w.WriteString(l)
	}
}
