// Package commands parses, validates and answers the commands of the
// readstates server: the read-state commands of the wire contract
// (RSINCR, RSRESET, RSGET, RSMGET; see docs/commands.md) and the
// Redis commands that clients and tools send on their own (PING, HELLO,
// AUTH, CLIENT, INFO, CONFIG, LATENCY, COMMAND, ...).
//
// The package knows nothing of sockets. A Dispatcher takes the arguments of
// one command, the connection's Session and a Writer (redcon.Conn satisfies
// it) and writes exactly one reply, whatever the arguments: it never panics
// on input, and an error reply never changes a read state (every argument
// is validated before the Backend is called).
//
// The read-state path (RSINCR, RSRESET, RSGET and RSMGET on cached read
// states) does not allocate: ids are parsed from the argument bytes in
// place, the command is looked up without building a string, and replies
// go straight to the Writer. Error replies, INFO, COMMAND and the other
// administrative commands may allocate.
//
// A Dispatcher is safe for concurrent use by many connections. A Session
// belongs to one connection and is used by one goroutine at a time, except
// for the fields documented as readable by others (CLIENT LIST, INFO).
package commands
