package cassandrastore

import "testing"

func TestReplicationFactor(t *testing.T) {
	for _, tc := range []struct {
		repl  map[string]string
		dc    string
		local bool
		want  int
	}{
		{map[string]string{"class": "org.apache.cassandra.locator.SimpleStrategy", "replication_factor": "3"}, "", false, 3},
		{map[string]string{"class": "org.apache.cassandra.locator.SimpleStrategy", "replication_factor": "3/1"}, "", true, 3},
		{map[string]string{"class": "org.apache.cassandra.locator.NetworkTopologyStrategy", "dc1": "3", "dc2": "2"}, "", false, 5},
		{map[string]string{"class": "org.apache.cassandra.locator.NetworkTopologyStrategy", "dc1": "3", "dc2": "2"}, "dc2", true, 2},
		{map[string]string{"class": "org.apache.cassandra.locator.NetworkTopologyStrategy", "dc1": "3", "dc2": "2"}, "", true, 3},
	} {
		got, err := replicationFactor(tc.repl, tc.dc, tc.local)
		if err != nil || got != tc.want {
			t.Errorf("replicationFactor(%v, %q, local %v) = %d, %v; want %d", tc.repl, tc.dc, tc.local, got, err, tc.want)
		}
	}
	if _, err := replicationFactor(map[string]string{"replication_factor": "x"}, "", false); err == nil {
		t.Error("a factor that is not a number: no error")
	}
}
