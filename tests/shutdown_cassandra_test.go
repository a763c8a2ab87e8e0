//go:build cassandra

package tests

import (
	"testing"
)

// The shutdown scenarios of shutdown_test.go on Cassandra, whose writes are
// round trips: the final flush needs its budget more than the embedded
// store's. The journal is off so that only the final flush can keep the
// acknowledged change, and the row is read from Cassandra directly once
// the process has exited.

// startCassandraShutdown starts servers on a fresh keyspace; afterExit
// checks that keyspace.
func startCassandraShutdown(t *testing.T) (startFunc, func(t *testing.T)) {
	requireCassandra(t)
	ks := cassandraKeyspace(t)
	start := func(t *testing.T, args ...string) *serverProc {
		return startCassandraServer(t, ks, append(args, "--journal=false")...)
	}
	afterExit := func(t *testing.T) {
		compareRows(t, cassandraRows(t, ks), model{{42, 7}: {mentions: 5}}, nil,
			"in Cassandra once the server has exited")
	}
	return start, afterExit
}

// TestCassandraShutdownSlowReaderKeepsFlushBudget: see
// TestShutdownSlowReaderKeepsFlushBudget.
func TestCassandraShutdownSlowReaderKeepsFlushBudget(t *testing.T) {
	start, afterExit := startCassandraShutdown(t)
	slowReaderShutdown(t, start, afterExit)
}

// TestCassandraShutdownSignalDuringShutdown: see
// TestShutdownSignalDuringShutdown.
func TestCassandraShutdownSignalDuringShutdown(t *testing.T) {
	for _, first := range []string{"SHUTDOWN", "SIGTERM"} {
		t.Run(first, func(t *testing.T) {
			start, afterExit := startCassandraShutdown(t)
			signalDuringShutdown(t, start, first, afterExit)
		})
	}
}
