package cassandrastore

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/gocql/gocql"
)

// cassandraCheckOverlap refuses a consistency whose reads and writes need
// not share a replica for the keyspace's replication factor (R + W <= RF,
// R and W both the one level the store uses): a read-through could then
// miss the newest write of a read state and serve an old one, which the
// next write would store over the new. gocql cannot tell; the keyspace's
// replication, as the nodes hold it (which may differ from
// --cassandra-replication, for a keyspace made earlier), can.
func cassandraCheckOverlap(ctx context.Context, s *gocql.Session, keyspace, localDC string, cons gocql.Consistency) error {
	var replicas int
	switch cons {
	case gocql.One, gocql.LocalOne:
		replicas = 1
	case gocql.Two:
		replicas = 2
	case gocql.Three:
		replicas = 3
	default:
		return nil // the quorums and ALL always overlap
	}
	var repl map[string]string
	if err := s.Query("SELECT replication FROM system_schema.keyspaces WHERE keyspace_name = ?", keyspace).
		WithContext(ctx).Consistency(gocql.One).Scan(&repl); err != nil {
		return fmt.Errorf("read the replication of keyspace %s: %w", keyspace, err)
	}
	rf, err := replicationFactor(repl, localDC, cons == gocql.LocalOne)
	if err != nil {
		return fmt.Errorf("keyspace %s: %w", keyspace, err)
	}
	if 2*replicas > rf {
		return nil
	}
	return fmt.Errorf("consistency %s reads %d and writes %d of the %d replicas of keyspace %s (%v): "+
		"a read may miss the newest write, and read-through serve an old read state that the next write stores over the new one; "+
		"use LOCAL_QUORUM (or QUORUM), or accept it with --cassandra-allow-stale-reads",
		cons, replicas, replicas, rf, keyspace, repl)
}

// replicationFactor is the number of replicas a level's replicas are
// counted among: for a LOCAL_ level those of the local data center (the
// largest, if none is named), otherwise all of them.
func replicationFactor(repl map[string]string, localDC string, local bool) (int, error) {
	factor := func(v string) (int, error) {
		// "3", or "3/1" with transient replicas: the first is the total.
		n, err := strconv.Atoi(strings.TrimSpace(strings.SplitN(v, "/", 2)[0]))
		if err != nil {
			return 0, fmt.Errorf("replication factor %q: %w", v, err)
		}
		return n, nil
	}
	if v, ok := repl["replication_factor"]; ok {
		return factor(v)
	}
	total, largest := 0, 0
	for dc, v := range repl {
		if dc == "class" {
			continue
		}
		n, err := factor(v)
		if err != nil {
			return 0, err
		}
		if local && localDC != "" && dc == localDC {
			return n, nil
		}
		total += n
		largest = max(largest, n)
	}
	if local {
		return largest, nil
	}
	return total, nil
}
