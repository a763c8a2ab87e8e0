package commands

import (
	"context"
	"net"
	"strconv"
	"time"

	"github.com/readstates/readstates/cluster"
)

// Cluster mode (Config.Cluster): the read-state commands are routed by
// their key, the user_id, as Redis Cluster routes keys, and the CLUSTER
// commands describe the cluster in Redis's formats, so that cluster
// clients work unmodified. Without it, CLUSTER, READONLY and READWRITE
// are refused as a Redis without cluster support refuses them.

// Cluster is the cluster this server is a node of (cluster.Node).
type Cluster interface {
	// Enter is called before a command on slot runs; with cluster.Serve,
	// Exit(slot) must follow the command.
	Enter(slot int) (cluster.Verdict, string)
	Exit(slot int)
	// View returns the node's current map of the cluster.
	View() *cluster.View
}

const errClusterDisabled = "ERR This instance has cluster support disabled"

// route decides whether this node runs a command whose key is key. With
// ok, the command runs, and d.cluster.Exit(slot) must follow it;
// otherwise the reply (a redirection, or an error) is written, or, with
// hold on the view that never waits, the command is deferred
// (s.deferred) to be run again where it may wait for a slot that moves.
//
// A user is served by the node of the slot of its canonical spelling
// (decimal, no leading zero). A client hashes the bytes it sends, so for
// "042" it computes another slot than for "42": the node it reaches
// serves the command if it holds the user's slot, and otherwise refuses
// it with an error, not a MOVED (a MOVED names the client's slot, whose
// node is this one: the client would come back).
func (d *Dispatcher) route(w Writer, s *Session, key []byte, hold bool) (slot int, ok bool) {
	slot = -1
	padded := false
	if len(key) > 1 && key[0] == '0' { // only then can a valid id be non-canonical
		if user, valid := parseID(key); valid {
			slot, padded = cluster.UserSlot(user), true
		}
	}
	if slot < 0 {
		slot = cluster.Slot(key)
	}
	v, addr := d.cluster.Enter(slot)
	if v == cluster.TryAgain && hold {
		// The slot is being handed over (or the lease renewed): usually
		// done within a second. The command waits for it, then runs or is
		// redirected, rather than answer TRYAGAIN, which some cluster
		// clients (Jedis, Lettuce) do not retry. Where it must not wait
		// (an event loop), it is deferred to a goroutine that may.
		if s.noWait {
			s.deferred = true
			return -1, false
		}
		for deadline := time.Now().Add(maxHold); v == cluster.TryAgain && time.Now().Before(deadline); {
			time.Sleep(holdPoll)
			v, addr = d.cluster.Enter(slot)
		}
	}
	if v == cluster.Serve {
		return slot, true
	}
	s.rejected = true // as Redis counts its redirections
	switch {
	case padded && v != cluster.TryAgain:
		s.writeError(w, "ERR user_id '"+string(key)+"' has leading zeros, and this cluster node does not serve that user: in cluster mode write ids without leading zeros (clients route by the bytes)")
	case v == cluster.Moved:
		s.writeError(w, "MOVED "+strconv.Itoa(slot)+" "+addr)
	case v == cluster.TryAgain:
		s.writeError(w, "TRYAGAIN slot "+strconv.Itoa(slot)+" is moving between nodes, or this node is renewing its lease; retry")
	default:
		s.writeError(w, "CLUSTERDOWN Hash slot not served")
	}
	return -1, false
}

// A command on a slot being handed over waits up to maxHold, checking
// every holdPoll, before it is answered TRYAGAIN.
const (
	maxHold  = 2 * time.Second
	holdPoll = 5 * time.Millisecond
)

// txSlot checks, as a command is queued between MULTI and EXEC, that its
// key is served here and hashes to the slot of the transaction's other
// keys; it writes the error and reports false if not.
func (d *Dispatcher) txSlot(w Writer, s *Session, key []byte) bool {
	slot, ok := d.route(w, s, key, false) // queued at once, or TRYAGAIN
	if !ok {
		return false
	}
	d.cluster.Exit(slot)
	q := s.multi
	if q.slot >= 0 && q.slot != slot {
		s.writeError(w, "CROSSSLOT Keys in request don't hash to the same slot")
		return false
	}
	if q.slot < 0 {
		q.slot, q.keyAt = slot, len(q.cmds)
	}
	return true
}

// READONLY, READWRITE: there are no replicas to read from, so both only
// say OK in cluster mode.
func readOnly(_ context.Context, d *Dispatcher, w Writer, s *Session, _ [][]byte) {
	if d.cluster == nil {
		s.writeError(w, errClusterDisabled)
		return
	}
	writeOK(w)
}

// ASKING: this server never answers -ASK (a moving slot is -TRYAGAIN), so
// there is nothing to allow; OK, as Redis.
func asking(_ context.Context, d *Dispatcher, w Writer, s *Session, _ [][]byte) {
	if d.cluster == nil {
		s.writeError(w, errClusterDisabled)
		return
	}
	writeOK(w)
}

// clusterView returns the map, or writes the error of a non-cluster
// server and returns nil.
func (d *Dispatcher) clusterView(w Writer, s *Session) *cluster.View {
	if d.cluster == nil {
		s.writeError(w, errClusterDisabled)
		return nil
	}
	return d.cluster.View()
}

// CLUSTER INFO
func clusterInfo(_ context.Context, d *Dispatcher, w Writer, s *Session, _ [][]byte) {
	v := d.clusterView(w, s)
	if v == nil {
		return
	}
	s.writeVerbatim(w, appendClusterInfo(nil, v))
}

func appendClusterInfo(b []byte, v *cluster.View) []byte {
	held := v.Held() * cluster.GroupSlots
	assigned := v.Assigned() * cluster.GroupSlots
	state := "ok"
	if held < cluster.Slots {
		state = "fail"
	}
	size := map[int]bool{}
	for _, r := range v.Ranges() {
		size[r.Node] = true
	}
	var myEpoch int64
	for i := range v.Nodes() {
		if v.IsSelf(i) {
			myEpoch = v.NodeEpoch(i)
		}
	}
	b = field(b, "cluster_state", state)
	b = fieldInt(b, "cluster_slots_assigned", int64(assigned))
	b = fieldInt(b, "cluster_slots_ok", int64(held))
	b = field(b, "cluster_slots_pfail", "0")
	b = fieldInt(b, "cluster_slots_fail", int64(assigned-held))
	b = fieldInt(b, "cluster_known_nodes", int64(len(v.Nodes())))
	b = fieldInt(b, "cluster_size", int64(len(size)))
	b = fieldInt(b, "cluster_current_epoch", v.Epoch())
	b = fieldInt(b, "cluster_my_epoch", myEpoch)
	b = field(b, "cluster_stats_messages_sent", "0")
	b = field(b, "cluster_stats_messages_received", "0")
	b = field(b, "total_cluster_links_buffer_limit_exceeded", "0")
	return b
}

// CLUSTER MYID, CLUSTER MYSHARDID (a shard is one node: no replicas).
func clusterMyID(_ context.Context, d *Dispatcher, w Writer, s *Session, _ [][]byte) {
	v := d.clusterView(w, s)
	if v == nil {
		return
	}
	w.WriteBulkString(v.ID())
}

// CLUSTER KEYSLOT key
func clusterKeySlot(_ context.Context, d *Dispatcher, w Writer, s *Session, args [][]byte) {
	if d.clusterView(w, s) == nil {
		return
	}
	w.WriteInt64(int64(cluster.Slot(args[2])))
}

// CLUSTER COUNTKEYSINSLOT slot: the read states are not indexed by slot;
// 0, as for a slot this node does not serve.
func clusterCountKeys(_ context.Context, d *Dispatcher, w Writer, s *Session, args [][]byte) {
	if d.clusterView(w, s) == nil {
		return
	}
	if n, err := strconv.Atoi(string(args[2])); err != nil || n < 0 || n >= cluster.Slots {
		s.writeError(w, "ERR Invalid slot")
		return
	}
	w.WriteInt64(0)
}

// CLUSTER NODES: one line per node, Redis's format:
// <id> <ip:port@cport> <flags> <master> <ping-sent> <pong-recv>
// <config-epoch> <link-state> <slot-range> ...
func clusterNodes(_ context.Context, d *Dispatcher, w Writer, s *Session, _ [][]byte) {
	v := d.clusterView(w, s)
	if v == nil {
		return
	}
	ranges := v.Ranges()
	var b []byte
	for i, n := range v.Nodes() {
		host, port := splitHostPort(n.Addr)
		b = append(b, n.ID...)
		b = append(b, ' ')
		// ip:port, IPv6 unbracketed, as Redis writes it.
		b = append(b, host...)
		b = append(b, ':')
		b = strconv.AppendInt(b, int64(port), 10)
		b = append(b, "@0 "...) // no cluster bus: the nodes meet in Cassandra
		if v.IsSelf(i) {
			b = append(b, "myself,"...)
		}
		b = append(b, "master - 0 0 "...)
		b = strconv.AppendInt(b, v.NodeEpoch(i), 10)
		b = append(b, " connected"...)
		for _, r := range ranges {
			if r.Node != i {
				continue
			}
			b = append(b, ' ')
			b = strconv.AppendInt(b, int64(r.Start), 10)
			if r.End != r.Start {
				b = append(b, '-')
				b = strconv.AppendInt(b, int64(r.End), 10)
			}
		}
		b = append(b, '\n')
	}
	s.writeVerbatim(w, b)
}

// CLUSTER SLOTS: [start, end, [ip, port, id, {metadata}]] per range.
func clusterSlots(_ context.Context, d *Dispatcher, w Writer, s *Session, _ [][]byte) {
	v := d.clusterView(w, s)
	if v == nil {
		return
	}
	ranges := v.Ranges()
	nodes := v.Nodes()
	w.WriteArray(len(ranges))
	for _, r := range ranges {
		n := nodes[r.Node]
		host, port := splitHostPort(n.Addr)
		w.WriteArray(3)
		w.WriteInt64(int64(r.Start))
		w.WriteInt64(int64(r.End))
		w.WriteArray(4)
		w.WriteBulkString(host)
		w.WriteInt64(int64(port))
		w.WriteBulkString(n.ID)
		s.writeMap(w, 0)
	}
}

// CLUSTER SHARDS: a shard per node that holds slots (Redis 7 format).
func clusterShards(_ context.Context, d *Dispatcher, w Writer, s *Session, _ [][]byte) {
	v := d.clusterView(w, s)
	if v == nil {
		return
	}
	ranges := v.Ranges()
	nodes := v.Nodes()
	w.WriteArray(len(nodes))
	for i, n := range nodes {
		host, port := splitHostPort(n.Addr)
		s.writeMap(w, 2)
		w.WriteBulkString("slots")
		var mine []cluster.Range
		for _, r := range ranges {
			if r.Node == i {
				mine = append(mine, r)
			}
		}
		w.WriteArray(2 * len(mine))
		for _, r := range mine {
			w.WriteInt64(int64(r.Start))
			w.WriteInt64(int64(r.End))
		}
		w.WriteBulkString("nodes")
		w.WriteArray(1)
		s.writeMap(w, 7)
		w.WriteBulkString("id")
		w.WriteBulkString(n.ID)
		w.WriteBulkString("port")
		w.WriteInt64(int64(port))
		w.WriteBulkString("ip")
		w.WriteBulkString(host)
		w.WriteBulkString("endpoint")
		w.WriteBulkString(host)
		w.WriteBulkString("role")
		w.WriteBulkString("master")
		w.WriteBulkString("replication-offset")
		w.WriteInt64(0)
		w.WriteBulkString("health")
		w.WriteBulkString("online") // a master is online unless failing; failed nodes are not listed
	}
}

// CLUSTER HELP
func clusterHelp(_ context.Context, d *Dispatcher, w Writer, s *Session, _ [][]byte) {
	if d.clusterView(w, s) == nil {
		return
	}
	lines := []string{
		"CLUSTER <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
		"COUNTKEYSINSLOT <slot>",
		"    Return 0: read states are not counted by slot.",
		"INFO",
		"    Return information about the cluster.",
		"KEYSLOT <key>",
		"    Return the hash slot for <key>.",
		"MYID",
		"    Return the node id.",
		"MYSHARDID",
		"    Return the node's shard id (its node id: there are no replicas).",
		"NODES",
		"    Return cluster configuration seen by node. Output format:",
		"    <id> <ip:port@cport> <flags> <master> <pings> <pongs> <epoch> <link> <slot> ...",
		"SHARDS",
		"    Return information about slot range mappings and the nodes associated with them.",
		"SLOTS",
		"    Return information about slots range mappings. Each range is made of:",
		"    start, end, master and replicas IP addresses, ports and ids",
		"HELP",
		"    Print this help.",
	}
	w.WriteArray(len(lines))
	for _, l := range lines {
		w.WriteString(l)
	}
}

// splitHostPort splits an announced address; a malformed one (refused
// at start) gives it whole and port 0.
func splitHostPort(addr string) (string, int) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return addr, 0
	}
	port, _ := strconv.Atoi(p)
	return host, port
}
