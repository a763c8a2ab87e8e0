package cluster

import "context"

// Node states in the membership table.
const (
	StateUp      = "up"      // serving, or ready to
	StateLeaving = "leaving" // handing its groups over before it stops
	StateDown    = "down"    // declared dead by another node, or left
)

// NodeRow is a node's row in the membership table. Every change of the
// row raises Seq, so a compare-and-set on (Incarnation, Seq) fails if
// anything changed it in between.
type NodeRow struct {
	ID          string
	Addr        string // host:port, what clients are told to connect to
	Incarnation int64  // raised at every registration (a start, or a return after being declared down)
	Seq         int64  // raised at every change: lease renewals, state changes
	State       string
	// StampHW is the highest write stamp the node had issued or seen at
	// its last renewal: the base of the fence of whoever takes its groups
	// without a hand-over.
	StampHW int64
}

// GroupRow is a group's row in the ownership table. Epoch rises at every
// change of hands and never falls; a compare-and-set on it fails if the
// group changed hands in between.
type GroupRow struct {
	Owner       string // node ID; "" for none
	Incarnation int64  // the owner's incarnation that holds it
	Epoch       int64  // 0: never owned (the row may not exist)
}

// Store is where the cluster's membership and ownership live: in
// production Cassandra (cassandrastore.Coordinator), whose lightweight
// transactions (Paxos) make PutNode and PutGroup linearizable. The reads
// need not be: every decision that matters is a compare-and-set.
type Store interface {
	// Init creates what the store needs (tables), idempotently.
	Init(ctx context.Context) error
	// Node returns the row of id, and whether it exists.
	Node(ctx context.Context, id string) (NodeRow, bool, error)
	// Nodes returns every node row.
	Nodes(ctx context.Context) ([]NodeRow, error)
	// PutNode writes row if the stored row is prev (same Incarnation and
	// Seq), or, with prev nil, if there is none. When it does not, it
	// returns the stored row (ok false).
	PutNode(ctx context.Context, row NodeRow, prev *NodeRow) (cur NodeRow, ok bool, err error)
	// Groups returns every group row; a group never owned is the zero row.
	Groups(ctx context.Context) ([Groups]GroupRow, error)
	// PutGroup writes row as group g's if the stored row has prev's Epoch
	// (with Epoch 0: if there is none). When it does not, it returns the
	// stored row (ok false).
	PutGroup(ctx context.Context, g int, row, prev GroupRow) (cur GroupRow, ok bool, err error)
	// Group returns group g's row as settled: a PutGroup whose outcome
	// its caller did not learn (an error) has applied or never will.
	Group(ctx context.Context, g int) (GroupRow, error)
	// PutWarmUsers records the users of group g its owner held when it
	// handed the group over, for the owner of epoch to read back.
	PutWarmUsers(ctx context.Context, g int, epoch int64, users []int64) error
	// WarmUsers returns the users recorded for group g at epoch; none if
	// the record is of another epoch, or there is none.
	WarmUsers(ctx context.Context, g int, epoch int64) ([]int64, error)
}

// Host is what a node serves: the read states of its users
// (persist.Engine).
type Host interface {
	// Release writes every change, then drops the read states of the
	// users given from memory; none of them is being served.
	Release(ctx context.Context, users func(user int64) bool) error
	// Discard drops the read states of the users given from memory,
	// written or not; none of them is being served.
	Discard(users func(user int64) bool) int
	// Fence makes every later write stamp greater than stamp.
	Fence(stamp int64)
	// HighStamp returns the highest write stamp issued or seen.
	HighStamp() int64
	// CachedUsers returns the users given that have read states in
	// memory, those used recently first.
	CachedUsers(users func(user int64) bool) []int64
	// Warm reads the partitions of users into memory in order, at most
	// rate users a second, each only if guard lets it (exit is called
	// when that user is read); see persist.Engine.Warm.
	Warm(ctx context.Context, users []int64, rate float64, guard func(user int64) (exit func(), ok bool)) (read, failed int)
}
