package commands

import (
	"context"

	"github.com/readstates/readstates/cache"
)

// Command describes one command: what COMMAND INFO and COMMAND DOCS report,
// and the handler that runs it.
type Command struct {
	// Name is the lower-case name ("rsincr", or "client|setname" for a
	// subcommand).
	Name string
	// Index is the command's position in Dispatcher.Commands(), for
	// metrics kept in a slice.
	Index int
	// Arity follows Redis: n > 0 means exactly n arguments counting the
	// name, n < 0 means at least -n.
	Arity int
	// MaxArgs, if not 0, is the most arguments (counting the name) the
	// command takes; more is a wrong-arity error.
	MaxArgs int
	// Flags, ACL categories, key positions and docs as Redis reports them.
	Flags                   []string
	ACL                     []string
	FirstKey, LastKey, Step int
	KeyFlags                []string // the key spec's flags (RW ACCESS UPDATE, RO ACCESS)
	Summary, Since, Group   string
	Complexity              string
	Subcommands             []*Command

	noAuth bool // allowed before AUTH
	admin  bool // changes the server, not read states: see Dispatcher.denied
	// inTx: may be queued between MULTI and EXEC; txControl: runs at once
	// even then (MULTI, EXEC, DISCARD, QUIT).
	inTx, txControl bool
	// keys appends the read states the command touches to dst (a
	// read-state command), for EXEC to lock them.
	keys    func(args [][]byte, dst []cache.Key) []cache.Key
	handler func(ctx context.Context, d *Dispatcher, w Writer, s *Session, args [][]byte)
}

func (c *Command) arityOK(n int) bool {
	if c.Arity >= 0 {
		return n == c.Arity
	}
	if n < -c.Arity {
		return false
	}
	return c.MaxArgs == 0 || n <= c.MaxArgs
}

// run calls the handler; for a container (CLIENT, CONFIG, LATENCY, COMMAND)
// called with a subcommand it looks the subcommand up and checks its arity
// first.
// A container without a handler of its own has arity -2, so it always has
// a subcommand here.
func (c *Command) run(ctx context.Context, d *Dispatcher, w Writer, s *Session, args [][]byte) {
	if len(c.Subcommands) == 0 || len(args) < 2 {
		if c.admin && d.denied(s) {
			s.writeError(w, deniedAdmin(c.Name))
			return
		}
		c.handler(ctx, d, w, s, args)
		return
	}
	sub := c.subcommand(args[1])
	if sub == nil {
		s.writeError(w, unknownSubcommand(upper(c.Name), args[1]))
		return
	}
	if !sub.arityOK(len(args)) {
		s.writeError(w, wrongArity(sub.Name))
		return
	}
	if sub.admin && d.denied(s) {
		s.writeError(w, deniedAdmin(sub.Name))
		return
	}
	sub.handler(ctx, d, w, s, args)
}

// subcommand finds a subcommand case-insensitively; containers are few and
// small, so a scan is cheaper than a map.
func (c *Command) subcommand(name []byte) *Command {
	for _, sub := range c.Subcommands {
		short := sub.Name[len(c.Name)+1:]
		if equalFold(short, name) {
			return sub
		}
	}
	return nil
}

// equalFold reports whether lower-case ASCII s equals b ignoring ASCII case.
func equalFold(s string, b []byte) bool {
	if len(s) != len(b) {
		return false
	}
	for i := range len(b) {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != s[i] {
			return false
		}
	}
	return true
}

func upper(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'a' <= c && c <= 'z' {
			b[i] = c - ('a' - 'A')
		}
	}
	return string(b)
}

// table returns the command table. It is built per Dispatcher (nothing
// package-level is mutable); Index is assigned by New.
func table() []*Command {
	// The flags of the connection commands allowed before AUTH.
	flagsConn := []string{"noscript", "loading", "stale", "fast", "no_auth", "allow_busy"}
	client := &Command{
		Name: "client", Arity: -2, Group: "connection",
		Summary: "A container for client connection commands.", Since: "2.4.0",
		Complexity: "Depends on subcommand.", ACL: []string{"@slow"},
	}
	client.Subcommands = []*Command{
		{Name: "client|id", Arity: 2, handler: clientID, Summary: "Returns the unique client ID of the connection.", Since: "5.0.0", Complexity: "O(1)"},
		{Name: "client|getname", Arity: 2, handler: clientGetName, Summary: "Returns the name of the connection.", Since: "2.6.9", Complexity: "O(1)"},
		{Name: "client|setname", Arity: 3, handler: clientSetName, Summary: "Sets the connection name.", Since: "2.6.9", Complexity: "O(1)"},
		{Name: "client|setinfo", Arity: 4, handler: clientSetInfo, Summary: "Sets information specific to the client or connection.", Since: "7.2.0", Complexity: "O(1)"},
		{Name: "client|info", Arity: 2, handler: clientInfo, Summary: "Returns information about the connection.", Since: "6.2.0", Complexity: "O(1)"},
		{Name: "client|list", Arity: -2, handler: clientList, Summary: "Lists open connections.", Since: "2.4.0", Complexity: "O(N) where N is the number of client connections"},
		{Name: "client|tracking", Arity: -3, handler: clientTracking, Summary: "Controls server-assisted client-side caching for the connection.", Since: "6.0.0", Complexity: "O(1). Some options may introduce additional complexity."},
		{Name: "client|caching", Arity: 3, handler: clientCaching, Summary: "Instructs the server whether to track the keys in the next request.", Since: "6.0.0", Complexity: "O(1)"},
		{Name: "client|trackinginfo", Arity: 2, handler: clientTrackingInfo, Summary: "Returns information about server-assisted client-side caching for the connection.", Since: "6.2.0", Complexity: "O(1)"},
		{Name: "client|getredir", Arity: 2, handler: clientGetRedir, Summary: "Returns the client ID to which the connection's tracking notifications are redirected.", Since: "6.0.0", Complexity: "O(1)"},
		{Name: "client|kill", Arity: -3, handler: clientKill, admin: true, Flags: []string{"admin", "noscript", "loading", "stale"}, ACL: []string{"@admin", "@slow", "@dangerous", "@connection"}, Summary: "Terminates open connections.", Since: "2.4.0", Complexity: "O(N) where N is the number of client connections"},
		{Name: "client|reply", Arity: 3, handler: clientReply, Summary: "Instructs the server whether to reply to commands.", Since: "3.2.0", Complexity: "O(1)"},
		{Name: "client|no-evict", Arity: 3, handler: clientNoEvict, Summary: "Sets the client eviction mode of the connection.", Since: "7.0.0", Complexity: "O(1)"},
		{Name: "client|help", Arity: 2, handler: clientHelp, Summary: "Returns helpful text about the different subcommands.", Since: "5.0.0", Complexity: "O(1)"},
	}
	config := &Command{
		Name: "config", Arity: -2, Group: "server",
		Summary: "A container for server configuration commands.", Since: "2.0.0",
		Complexity: "Depends on subcommand.", ACL: []string{"@slow"},
	}
	config.Subcommands = []*Command{
		{Name: "config|get", Arity: -3, handler: configGet, Summary: "Returns the effective values of configuration parameters.", Since: "2.0.0", Complexity: "O(N) when N is the number of configuration parameters provided"},
		{Name: "config|set", Arity: -4, handler: configSet, admin: true, Summary: "Sets configuration parameters in-flight.", Since: "2.0.0", Complexity: "O(N) when N is the number of configuration parameters provided"},
		{Name: "config|resetstat", Arity: 2, handler: configResetStat, admin: true, Summary: "Resets the server's statistics.", Since: "2.0.0", Complexity: "O(1)"},
		{Name: "config|help", Arity: 2, handler: configHelp, Summary: "Returns helpful text about the different subcommands.", Since: "5.0.0", Complexity: "O(1)"},
	}
	latency := &Command{
		Name: "latency", Arity: -2, Group: "server",
		Summary: "A container for latency diagnostics commands.", Since: "2.8.13",
		Complexity: "Depends on subcommand.", ACL: []string{"@slow"},
	}
	latency.Subcommands = []*Command{
		// Redis's flags and ACL categories; not admin here (it changes
		// nothing: see Dispatcher.denied), like INFO latencystats.
		{
			Name: "latency|histogram", Arity: -2, handler: latencyHistogram,
			Flags: []string{"admin", "noscript", "loading", "stale"}, ACL: []string{"@admin", "@slow", "@dangerous"},
			Summary: "Returns the cumulative distribution of latencies of a subset or all commands.", Since: "7.0.0",
			Complexity: "O(N) where N is the number of commands with latency information being retrieved.",
		},
		{Name: "latency|help", Arity: 2, handler: latencyHelp, Summary: "Returns helpful text about the different subcommands.", Since: "2.8.13", Complexity: "O(1)"},
	}
	command := &Command{
		Name: "command", Arity: -1, handler: commandAll, Group: "server",
		Flags: []string{"loading", "stale"}, ACL: []string{"@slow", "@connection"},
		Summary: "Returns detailed information about all commands.", Since: "2.8.13",
		Complexity: "O(N) where N is the total number of Redis commands",
	}
	command.Subcommands = []*Command{
		{Name: "command|count", Arity: 2, handler: commandCount, Summary: "Returns a count of commands.", Since: "2.8.13", Complexity: "O(1)"},
		{Name: "command|info", Arity: -2, handler: commandInfo, Summary: "Returns information about one, multiple or all commands.", Since: "2.8.13", Complexity: "O(N) where N is the number of commands to look up"},
		{Name: "command|docs", Arity: -2, handler: commandDocs, Summary: "Returns documentary information about one, multiple or all commands.", Since: "7.0.0", Complexity: "O(N) where N is the number of commands to look up"},
		{Name: "command|list", Arity: -2, handler: commandList, Summary: "Returns a list of command names.", Since: "7.0.0", Complexity: "O(N) where N is the total number of Redis commands"},
		{Name: "command|help", Arity: 2, handler: commandHelp, Summary: "Returns helpful text about the different subcommands.", Since: "5.0.0", Complexity: "O(1)"},
	}
	clusterCmd := &Command{
		Name: "cluster", Arity: -2, handler: clusterHelp, Group: "cluster",
		Flags: []string{"loading", "stale"}, ACL: []string{"@slow"},
		Summary: "A container for Redis Cluster commands.", Since: "3.0.0",
		Complexity: "Depends on subcommand.",
	}
	clusterCmd.Subcommands = []*Command{
		{Name: "cluster|info", Arity: 2, handler: clusterInfo, Summary: "Returns information about the state of a node.", Since: "3.0.0", Complexity: "O(1)"},
		{Name: "cluster|myid", Arity: 2, handler: clusterMyID, Summary: "Returns the ID of a node.", Since: "3.0.0", Complexity: "O(1)"},
		{Name: "cluster|myshardid", Arity: 2, handler: clusterMyID, Summary: "Returns the shard ID of a node.", Since: "7.2.0", Complexity: "O(1)"},
		{Name: "cluster|keyslot", Arity: 3, handler: clusterKeySlot, Summary: "Returns the hash slot for a key.", Since: "3.0.0", Complexity: "O(N) where N is the number of bytes in the key"},
		{Name: "cluster|countkeysinslot", Arity: 3, handler: clusterCountKeys, Summary: "Returns the number of keys in a hash slot.", Since: "3.0.0", Complexity: "O(1)"},
		{Name: "cluster|nodes", Arity: 2, handler: clusterNodes, Summary: "Returns the cluster configuration for a node.", Since: "3.0.0", Complexity: "O(N) where N is the total number of Cluster nodes"},
		{Name: "cluster|slots", Arity: 2, handler: clusterSlots, Summary: "Returns the mapping of cluster slots to nodes.", Since: "3.0.0", Complexity: "O(N) where N is the total number of Cluster nodes"},
		{Name: "cluster|shards", Arity: 2, handler: clusterShards, Summary: "Returns the mapping of cluster slots to shards.", Since: "7.0.0", Complexity: "O(N) where N is the total number of cluster nodes"},
		{Name: "cluster|help", Arity: 2, handler: clusterHelp, Summary: "Returns helpful text about the different subcommands.", Since: "5.0.0", Complexity: "O(1)"},
	}
	for _, c := range [...]*Command{client, config, latency, command, clusterCmd} {
		for _, sub := range c.Subcommands {
			sub.Group = c.Group
			if sub.Flags == nil {
				sub.Flags = []string{"loading", "stale"}
			}
			if sub.ACL == nil {
				sub.ACL = []string{"@slow", "@" + c.Group}
			}
		}
	}
	return []*Command{
		// The read-state commands. The user_id is the "key": every command
		// touches one user's read states, so a cluster-aware client would
		// route by it.
		{
			Name: "rsincr", Arity: -3, MaxArgs: 4, handler: rsIncr, inTx: true, keys: keyOf,
			Flags: []string{"write", "denyoom", "fast"}, ACL: []string{"@write", "@fast"},
			FirstKey: 1, LastKey: 1, Step: 1, KeyFlags: []string{"RW", "ACCESS", "UPDATE"},
			Group: "readstates", Since: "1.0.0", Complexity: "O(1)",
			Summary: "Adds delta (default 1) to the mention_count of a read state and returns the new value.",
		},
		{
			Name: "rsreset", Arity: -3, MaxArgs: 4, handler: rsReset, inTx: true, keys: keyOf,
			Flags: []string{"write", "fast"}, ACL: []string{"@write", "@fast"},
			FirstKey: 1, LastKey: 1, Step: 1, KeyFlags: []string{"RW", "ACCESS", "UPDATE"},
			Group: "readstates", Since: "1.0.0", Complexity: "O(1)",
			Summary: "Sets the mention_count of a read state to 0 (and last_message_id, if given) and returns the mention_count before.",
		},
		{
			Name: "rsget", Arity: 3, handler: rsGet, inTx: true, keys: keyOf,
			Flags: []string{"readonly", "fast"}, ACL: []string{"@read", "@fast"},
			FirstKey: 1, LastKey: 1, Step: 1, KeyFlags: []string{"RO", "ACCESS"},
			Group: "readstates", Since: "1.0.0", Complexity: "O(1)",
			Summary: "Returns [mention_count, last_message_id] of a read state.",
		},
		{
			Name: "rsmget", Arity: -3, handler: rsMGet, inTx: true, keys: keysOfMGet,
			Flags: []string{"readonly"}, ACL: []string{"@read"},
			FirstKey: 1, LastKey: 1, Step: 1, KeyFlags: []string{"RO", "ACCESS"},
			Group: "readstates", Since: "1.0.0",
			Complexity: "O(N) where N is the number of channel_ids",
			Summary:    "Returns [mention_count, last_message_id] of one user's read states in several channels.",
		},
		// Redis commands that clients and tools send.
		{
			Name: "ping", Arity: -1, MaxArgs: 2, handler: ping, inTx: true,
			Flags: []string{"fast", "sentinel"}, ACL: []string{"@fast", "@connection"},
			Group: "connection", Since: "1.0.0", Complexity: "O(1)", Summary: "Returns the server's liveliness response.",
		},
		{
			Name: "echo", Arity: 2, handler: echo, inTx: true,
			Flags: []string{"fast"}, ACL: []string{"@fast", "@connection"},
			Group: "connection", Since: "1.0.0", Complexity: "O(1)", Summary: "Returns the given string.",
		},
		{
			Name: "pttl", Arity: 2, handler: pttl, inTx: true,
			Flags: []string{"readonly", "fast"}, ACL: []string{"@keyspace", "@read", "@fast"},
			FirstKey: 1, LastKey: 1, Step: 1, KeyFlags: []string{"RO", "ACCESS"},
			Group: "generic", Since: "2.6.0", Complexity: "O(1)",
			Summary: "Returns the expiration time in milliseconds of a key: -1 for a user_id (read states never expire).",
		},
		// Compatibility (compat.go).
		{
			Name: "reset", Arity: 1, handler: reset, noAuth: true, txControl: true,
			Flags: flagsConn, ACL: []string{"@fast", "@connection"},
			Group: "connection", Since: "6.2.0", Complexity: "O(1)", Summary: "Resets the connection.",
		},
		{
			Name: "role", Arity: 1, handler: role,
			Flags: []string{"noscript", "loading", "stale", "fast"}, ACL: []string{"@admin", "@fast", "@dangerous"},
			Group: "server", Since: "2.8.12", Complexity: "O(1)", Summary: "Returns the replication role.",
		},
		clusterCmd,
		{
			Name: "asking", Arity: 1, handler: asking,
			Flags: []string{"fast"}, ACL: []string{"@fast", "@connection"},
			Group: "cluster", Since: "3.0.0", Complexity: "O(1)", Summary: "Signals that a cluster client is following an -ASK redirect.",
		},
		{
			Name: "readonly", Arity: 1, handler: readOnly,
			Flags: []string{"loading", "stale", "fast"}, ACL: []string{"@fast", "@connection"},
			Group: "cluster", Since: "3.0.0", Complexity: "O(1)", Summary: "Enables read-only queries for a connection to a Redis Cluster replica node.",
		},
		{
			Name: "readwrite", Arity: 1, handler: readOnly,
			Flags: []string{"loading", "stale", "fast"}, ACL: []string{"@fast", "@connection"},
			Group: "cluster", Since: "3.0.0", Complexity: "O(1)", Summary: "Enables read-write queries for a connection to a Redis Cluster replica node.",
		},
		// Transactions (multi.go).
		{
			Name: "multi", Arity: 1, handler: multi, txControl: true,
			Flags: []string{"noscript", "loading", "stale", "fast", "allow_busy"}, ACL: []string{"@fast", "@transaction"},
			Group: "transactions", Since: "1.2.0", Complexity: "O(1)", Summary: "Starts a transaction.",
		},
		{
			Name: "exec", Arity: 1, handler: exec, txControl: true,
			Flags: []string{"noscript", "loading", "stale", "skip_slowlog"}, ACL: []string{"@slow", "@transaction"},
			Group: "transactions", Since: "1.2.0", Complexity: "Depends on commands in the transaction",
			Summary: "Executes all commands in a transaction.",
		},
		{
			Name: "discard", Arity: 1, handler: discard, txControl: true,
			Flags: []string{"noscript", "loading", "stale", "fast", "allow_busy"}, ACL: []string{"@fast", "@transaction"},
			Group: "transactions", Since: "2.0.0", Complexity: "O(N), when N is the number of queued commands",
			Summary: "Discards a transaction.",
		},
		{
			Name: "quit", Arity: -1, handler: quit, noAuth: true, txControl: true,
			Flags: flagsConn, ACL: []string{"@fast", "@connection"},
			Group: "connection", Since: "1.0.0", Complexity: "O(1)", Summary: "Closes the connection.",
		},
		{
			Name: "hello", Arity: -1, handler: hello, noAuth: true,
			Flags: append([]string{"sentinel"}, flagsConn...), ACL: []string{"@fast", "@connection"},
			Group: "connection", Since: "6.0.0", Complexity: "O(1)", Summary: "Handshakes with the Redis server.",
		},
		{
			Name: "auth", Arity: -2, handler: auth, noAuth: true,
			Flags: append([]string{"sentinel"}, flagsConn...), ACL: []string{"@fast", "@connection"},
			Group: "connection", Since: "1.0.0", Complexity: "O(N) where N is the number of passwords defined for the user",
			Summary: "Authenticates the connection.",
		},
		{
			Name: "select", Arity: 2, handler: selectDB,
			Flags: []string{"loading", "stale", "fast"}, ACL: []string{"@fast", "@connection"},
			Group: "connection", Since: "1.0.0", Complexity: "O(1)", Summary: "Changes the selected database.",
		},
		client,
		{
			Name: "info", Arity: -1, handler: info,
			Flags: []string{"loading", "stale", "sentinel"}, ACL: []string{"@slow", "@dangerous"},
			Group: "server", Since: "1.0.0", Complexity: "O(1)",
			Summary: "Returns information and statistics about the server.",
		},
		config,
		latency,
		command,
		{
			Name: "dbsize", Arity: 1, handler: dbSize,
			Flags: []string{"readonly", "fast"}, ACL: []string{"@keyspace", "@read", "@fast"},
			Group: "server", Since: "1.0.0", Complexity: "O(1)",
			Summary: "Returns the number of read states in the cache.",
		},
		{
			Name: "shutdown", Arity: -1, MaxArgs: 4, handler: shutdown, admin: true,
			Flags: []string{"admin", "noscript", "loading", "stale", "no_multi", "sentinel", "allow_busy"},
			ACL:   []string{"@admin", "@slow", "@dangerous"},
			Group: "server", Since: "1.0.0", Complexity: "O(N) when saving, where N is the number of changed read states",
			Summary: "Flushes every change to the database and stops the server.",
		},
	}
}
