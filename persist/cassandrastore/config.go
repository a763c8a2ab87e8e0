package cassandrastore

import "time"

// Config configures the Cassandra store. Zero values take the
// defaults documented on each field.
type Config struct {
	// Hosts are the contact points, "host" or "host:port" (port 9042).
	Hosts []string
	// Keyspace is created if missing (default "readstates").
	Keyspace string
	// Replication is the CQL replication map used when the keyspace is
	// created (default "{'class': 'SimpleStrategy', 'replication_factor': 1}").
	Replication string
	// Consistency for reads and writes (default "LOCAL_QUORUM"). Reads
	// and writes must overlap (R + W > RF) for read-through to be correct:
	// Open refuses a level that does not for the keyspace's replication,
	// unless AllowStaleReads.
	Consistency     string
	AllowStaleReads bool
	// LocalDC, if set, keeps requests in that data center (DC-aware,
	// token-aware routing); otherwise token-aware round robin.
	LocalDC string
	// ConnectTimeout bounds connection set-up (default 5s); Timeout bounds
	// one query (default 2s).
	ConnectTimeout time.Duration
	Timeout        time.Duration
	// StartupWait is how long Open keeps retrying while Cassandra is not
	// up yet (default 2m).
	StartupWait time.Duration
	// Username and Password enable PasswordAuthenticator.
	Username string
	Password string
	// TLS to Cassandra: enabled when any of these is set.
	TLSCAFile             string
	TLSCertFile           string
	TLSKeyFile            string
	TLSInsecureSkipVerify bool
	// Concurrency bounds the writes in flight (default 16).
	Concurrency int
}
