package commands

import (
	"context"
	"strings"
)

// COMMAND and its subcommands, in Redis 7's reply shapes, so that
// redis-cli, cluster-aware clients and tools can learn the command set.

// COMMAND: every command's info.
func commandAll(_ context.Context, d *Dispatcher, w Writer, s *Session, _ [][]byte) {
	w.WriteArray(len(d.cmds))
	for _, c := range d.cmds {
		c.writeInfo(w, s)
	}
}

func commandCount(_ context.Context, d *Dispatcher, w Writer, _ *Session, _ [][]byte) {
	w.WriteInt64(int64(len(d.cmds)))
}

// find looks a command up by name, "container|sub" for a subcommand.
func (d *Dispatcher) find(name []byte) *Command {
	n := strings.ToLower(string(name))
	parent, sub, ok := strings.Cut(n, "|")
	c := d.byKey[parent]
	if c == nil || !ok {
		return c
	}
	return c.subcommand([]byte(sub))
}

// COMMAND INFO [name ...]: null for an unknown name.
func commandInfo(_ context.Context, d *Dispatcher, w Writer, s *Session, args [][]byte) {
	if len(args) == 2 {
		commandAll(context.Background(), d, w, s, args[:1])
		return
	}
	w.WriteArray(len(args) - 2)
	for _, a := range args[2:] {
		if c := d.find(a); c != nil {
			c.writeInfo(w, s)
		} else {
			s.writeNull(w)
		}
	}
}

// writeInfo writes the command's COMMAND INFO entry: name, arity, flags,
// first key, last key, step, ACL categories, tips, key specs, subcommands.
func (c *Command) writeInfo(w Writer, s *Session) {
	w.WriteArray(10)
	w.WriteBulkString(c.Name)
	w.WriteInt64(int64(c.Arity))
	writeStatusSet(w, s, c.Flags)
	w.WriteInt64(int64(c.FirstKey))
	w.WriteInt64(int64(c.LastKey))
	w.WriteInt64(int64(c.Step))
	writeStatusSet(w, s, c.ACL)
	s.writeSet(w, 0) // tips
	c.writeKeySpecs(w, s)
	if len(c.Subcommands) == 0 {
		s.writeSet(w, 0) // as Redis: an empty set, an array otherwise
		return
	}
	w.WriteArray(len(c.Subcommands))
	for _, sub := range c.Subcommands {
		sub.writeInfo(w, s)
	}
}

// writeKeySpecs writes the command's key specs as Redis 7 does: the
// read-state commands have one key, the user_id at index 1 (cluster
// clients route by it).
func (c *Command) writeKeySpecs(w Writer, s *Session) {
	if c.FirstKey == 0 {
		w.WriteArray(0)
		return
	}
	w.WriteArray(1)
	s.writeMap(w, 3)
	w.WriteBulkString("flags")
	writeStatusSet(w, s, c.KeyFlags)
	w.WriteBulkString("begin_search")
	s.writeMap(w, 2)
	w.WriteBulkString("type")
	w.WriteBulkString("index")
	w.WriteBulkString("spec")
	s.writeMap(w, 1)
	w.WriteBulkString("index")
	w.WriteInt64(int64(c.FirstKey))
	w.WriteBulkString("find_keys")
	s.writeMap(w, 2)
	w.WriteBulkString("type")
	w.WriteBulkString("range")
	w.WriteBulkString("spec")
	s.writeMap(w, 3)
	w.WriteBulkString("lastkey")
	w.WriteInt64(int64(c.LastKey - c.FirstKey))
	w.WriteBulkString("keystep")
	w.WriteInt64(int64(c.Step))
	w.WriteBulkString("limit")
	w.WriteInt64(0)
}

func writeStatusSet(w Writer, s *Session, items []string) {
	s.writeSet(w, len(items))
	for _, it := range items {
		w.WriteString(it)
	}
}

// COMMAND DOCS [name ...]: a map from name to its docs; unknown names are
// left out, as in Redis.
func commandDocs(_ context.Context, d *Dispatcher, w Writer, s *Session, args [][]byte) {
	var cmds []*Command
	if len(args) == 2 {
		cmds = d.cmds
	} else {
		for _, a := range args[2:] {
			if c := d.find(a); c != nil {
				cmds = append(cmds, c)
			}
		}
	}
	s.writeMap(w, len(cmds))
	for _, c := range cmds {
		w.WriteBulkString(c.Name)
		c.writeDocs(w, s)
	}
}

func (c *Command) writeDocs(w Writer, s *Session) {
	n := 4
	if len(c.Subcommands) > 0 {
		n++
	}
	s.writeMap(w, n)
	w.WriteBulkString("summary")
	w.WriteBulkString(c.Summary)
	w.WriteBulkString("since")
	w.WriteBulkString(c.Since)
	w.WriteBulkString("group")
	w.WriteBulkString(c.Group)
	w.WriteBulkString("complexity")
	w.WriteBulkString(c.Complexity)
	if len(c.Subcommands) > 0 {
		w.WriteBulkString("subcommands")
		s.writeMap(w, len(c.Subcommands))
		for _, sub := range c.Subcommands {
			w.WriteBulkString(sub.Name)
			sub.writeDocs(w, s)
		}
	}
}

// COMMAND LIST [FILTERBY ACLCAT category | PATTERN pattern | MODULE name]
func commandList(_ context.Context, d *Dispatcher, w Writer, s *Session, args [][]byte) {
	keep := func(*Command) bool { return true }
	switch {
	case len(args) == 2:
	case len(args) == 5 && equalFold("filterby", args[2]):
		arg := strings.ToLower(string(args[4]))
		switch {
		case equalFold("aclcat", args[3]):
			keep = func(c *Command) bool {
				for _, cat := range c.ACL {
					if cat == "@"+arg {
						return true
					}
				}
				return false
			}
		case equalFold("pattern", args[3]):
			keep = func(c *Command) bool { return globMatch(c.Name, arg) }
		case equalFold("module", args[3]):
			keep = func(*Command) bool { return false } // no modules
		default:
			s.writeError(w, errSyntax)
			return
		}
	default:
		s.writeError(w, errSyntax)
		return
	}
	var names []string
	for _, c := range d.cmds {
		if keep(c) {
			names = append(names, c.Name)
		}
		for _, sub := range c.Subcommands {
			if keep(sub) {
				names = append(names, sub.Name)
			}
		}
	}
	w.WriteArray(len(names))
	for _, n := range names {
		w.WriteBulkString(n)
	}
}

func commandHelp(_ context.Context, _ *Dispatcher, w Writer, _ *Session, _ [][]byte) {
	writeHelp(w, "COMMAND",
		"(no subcommand)", "    Return details about all commands.",
		"COUNT", "    Return the total number of commands in this server.",
		"LIST", "    Return a list of all commands in this server.",
		"INFO [<command-name> ...]", "    Return details about multiple commands.",
		"    If no command names are given, documentation details for all", "    commands are returned.",
		"DOCS [<command-name> ...]", "    Return documentation details about multiple commands.",
		"    If no command names are given, documentation details for all", "    commands are returned.",
		"HELP", "    Print this help.",
	)
}
