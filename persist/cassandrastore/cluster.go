package cassandrastore

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/gocql/gocql"

	"github.com/readstates/readstates/cluster"
)

// Coordinator is cluster.Store in Cassandra: the membership and ownership
// tables of a readstates cluster, in the keyspace of the read states.
// Every change is a lightweight transaction (Paxos, at LOCAL_SERIAL), so
// that two nodes racing for one row never both win; reads are at
// LOCAL_QUORUM whatever --cassandra-consistency says (a read at ONE could
// miss a committed hand-over and have its reader serve a group again).
type Coordinator struct {
	session *gocql.Session
	ks      string
}

// Coordinator returns the cluster coordination tables on the store's
// session.
func (c *Store) Coordinator() *Coordinator {
	return &Coordinator{session: c.session, ks: c.keyspace}
}

var _ cluster.Store = (*Coordinator)(nil)

// Init creates the tables.
func (c *Coordinator) Init(ctx context.Context) error {
	stmts := []string{
		"CREATE TABLE IF NOT EXISTS " + c.ks + ".cluster_nodes (" +
			"id text PRIMARY KEY, addr text, incarnation bigint, seq bigint, state text, stamp_hw bigint)",
		"CREATE TABLE IF NOT EXISTS " + c.ks + ".cluster_groups (" +
			"grp int PRIMARY KEY, owner text, incarnation bigint, epoch bigint)",
		"CREATE TABLE IF NOT EXISTS " + c.ks + ".cluster_warm (" +
			"grp int PRIMARY KEY, epoch bigint, users blob)",
	}
	for _, stmt := range stmts {
		if err := c.session.Query(stmt).WithContext(ctx).Consistency(gocql.One).Idempotent(true).Exec(); err != nil {
			return cassandraError(err, "cluster schema")
		}
	}
	if err := c.session.AwaitSchemaAgreement(ctx); err != nil {
		return cassandraError(err, "cluster schema agreement")
	}
	return nil
}

const nodeCols = "id, addr, incarnation, seq, state, stamp_hw"

func scanNode(scan func(...any) bool) (cluster.NodeRow, bool) {
	var r cluster.NodeRow
	ok := scan(&r.ID, &r.Addr, &r.Incarnation, &r.Seq, &r.State, &r.StampHW)
	return r, ok
}

// Node returns the row of id.
func (c *Coordinator) Node(ctx context.Context, id string) (cluster.NodeRow, bool, error) {
	return c.node(ctx, id, gocql.LocalQuorum)
}

func (c *Coordinator) node(ctx context.Context, id string, cons gocql.Consistency) (cluster.NodeRow, bool, error) {
	it := c.session.Query("SELECT "+nodeCols+" FROM "+c.ks+".cluster_nodes WHERE id = ?", id).
		WithContext(ctx).Consistency(cons).Iter()
	r, found := scanNode(it.Scan)
	if err := it.Close(); err != nil {
		return r, false, cassandraError(err, "read node %s", id)
	}
	return r, found, nil
}

// Nodes returns every node row.
func (c *Coordinator) Nodes(ctx context.Context) ([]cluster.NodeRow, error) {
	it := c.session.Query("SELECT " + nodeCols + " FROM " + c.ks + ".cluster_nodes").WithContext(ctx).Consistency(gocql.LocalQuorum).Iter()
	var rows []cluster.NodeRow
	for {
		r, ok := scanNode(it.Scan)
		if !ok {
			break
		}
		rows = append(rows, r)
	}
	if err := it.Close(); err != nil {
		return nil, cassandraError(err, "read nodes")
	}
	return rows, nil
}

// PutNode writes row if the stored one is prev (or, prev nil, absent).
func (c *Coordinator) PutNode(ctx context.Context, row cluster.NodeRow, prev *cluster.NodeRow) (cluster.NodeRow, bool, error) {
	var q *gocql.Query
	if prev == nil {
		q = c.session.Query("INSERT INTO "+c.ks+".cluster_nodes ("+nodeCols+") VALUES (?, ?, ?, ?, ?, ?) IF NOT EXISTS",
			row.ID, row.Addr, row.Incarnation, row.Seq, row.State, row.StampHW)
	} else {
		q = c.session.Query("UPDATE "+c.ks+".cluster_nodes SET addr = ?, incarnation = ?, seq = ?, state = ?, stamp_hw = ?"+
			" WHERE id = ? IF incarnation = ? AND seq = ?",
			row.Addr, row.Incarnation, row.Seq, row.State, row.StampHW, row.ID, prev.Incarnation, prev.Seq)
	}
	applied, err := cas(ctx, q)
	if err != nil {
		return cluster.NodeRow{}, false, cassandraError(err, "write node %s", row.ID)
	}
	if applied {
		return row, true, nil
	}
	cur, _, err := c.node(ctx, row.ID, gocql.Consistency(gocql.LocalSerial))
	return cur, false, err
}

// Groups returns every group row; a group never written is the zero row.
func (c *Coordinator) Groups(ctx context.Context) ([cluster.Groups]cluster.GroupRow, error) {
	var gs [cluster.Groups]cluster.GroupRow
	it := c.session.Query("SELECT grp, owner, incarnation, epoch FROM " + c.ks + ".cluster_groups").WithContext(ctx).Consistency(gocql.LocalQuorum).Iter()
	var (
		g int
		r cluster.GroupRow
	)
	for it.Scan(&g, &r.Owner, &r.Incarnation, &r.Epoch) {
		if g >= 0 && g < cluster.Groups {
			gs[g] = r
		}
	}
	if err := it.Close(); err != nil {
		return gs, cassandraError(err, "read groups")
	}
	return gs, nil
}

// PutGroup writes row as group g's if the stored epoch is prev's.
func (c *Coordinator) PutGroup(ctx context.Context, g int, row, prev cluster.GroupRow) (cluster.GroupRow, bool, error) {
	if row.Epoch <= prev.Epoch {
		return prev, false, errors.New("cluster: a group's epoch must grow")
	}
	var q *gocql.Query
	if prev.Epoch == 0 {
		q = c.session.Query("INSERT INTO "+c.ks+".cluster_groups (grp, owner, incarnation, epoch) VALUES (?, ?, ?, ?) IF NOT EXISTS",
			g, row.Owner, row.Incarnation, row.Epoch)
	} else {
		q = c.session.Query("UPDATE "+c.ks+".cluster_groups SET owner = ?, incarnation = ?, epoch = ? WHERE grp = ? IF epoch = ?",
			row.Owner, row.Incarnation, row.Epoch, g, prev.Epoch)
	}
	applied, err := cas(ctx, q)
	if err != nil {
		return prev, false, cassandraError(err, "write group %d", g)
	}
	if applied {
		return row, true, nil
	}
	cur, err := c.Group(ctx, g)
	return cur, false, err
}

// Group reads group g's row at LOCAL_SERIAL: a lightweight transaction
// left in progress (its writer timed out) is completed or dropped first,
// so the row read is settled.
func (c *Coordinator) Group(ctx context.Context, g int) (cluster.GroupRow, error) {
	it := c.session.Query("SELECT owner, incarnation, epoch FROM "+c.ks+".cluster_groups WHERE grp = ?", g).
		WithContext(ctx).Consistency(gocql.Consistency(gocql.LocalSerial)).Iter()
	var cur cluster.GroupRow
	it.Scan(&cur.Owner, &cur.Incarnation, &cur.Epoch)
	if err := it.Close(); err != nil {
		return cur, cassandraError(err, "read group %d", g)
	}
	return cur, nil
}

// cas runs a lightweight transaction and reports whether it applied. A
// timeout leaves the outcome unknown: the caller reads the row again (the
// Node does, at its next round) rather than retry blindly.
func cas(ctx context.Context, q *gocql.Query) (bool, error) {
	row := map[string]any{}
	applied, err := q.WithContext(ctx).Consistency(gocql.LocalQuorum).SerialConsistency(gocql.LocalSerial).MapScanCAS(row)
	if err != nil {
		return false, fmt.Errorf("lightweight transaction: %w", err)
	}
	return applied, nil
}

// PutWarmUsers records the users of group g for its owner at epoch, as 8
// bytes each, big-endian. One row per group: the next hand-over replaces
// it.
func (c *Coordinator) PutWarmUsers(ctx context.Context, g int, epoch int64, users []int64) error {
	blob := make([]byte, 0, 8*len(users))
	for _, u := range users {
		blob = binary.BigEndian.AppendUint64(blob, uint64(u))
	}
	err := c.session.Query("INSERT INTO "+c.ks+".cluster_warm (grp, epoch, users) VALUES (?, ?, ?)", g, epoch, blob).
		WithContext(ctx).Consistency(gocql.LocalQuorum).Idempotent(true).Exec()
	if err != nil {
		return cassandraError(err, "record the users of group %d", g)
	}
	return nil
}

// WarmUsers returns the users recorded for group g at epoch.
func (c *Coordinator) WarmUsers(ctx context.Context, g int, epoch int64) ([]int64, error) {
	var (
		at   int64
		blob []byte
	)
	err := c.session.Query("SELECT epoch, users FROM "+c.ks+".cluster_warm WHERE grp = ?", g).
		WithContext(ctx).Consistency(gocql.LocalQuorum).Scan(&at, &blob)
	switch {
	case errors.Is(err, gocql.ErrNotFound):
		return nil, nil
	case err != nil:
		return nil, cassandraError(err, "read the users of group %d", g)
	case at != epoch || len(blob)%8 != 0:
		return nil, nil
	}
	users := make([]int64, len(blob)/8)
	for i := range users {
		users[i] = int64(binary.BigEndian.Uint64(blob[8*i:]))
	}
	return users, nil
}
