#!/usr/bin/env bash
# The project's whole test run, as CI runs it (make test):
#   1. vet, then unit and end-to-end tests under the race detector, on the
#      embedded store, with real clients (redis-cli, redis-benchmark,
#      go-redis, redis-py, Jedis, redis-rs), on both connection layers (event loops, and a
#      goroutine per connection);
#   2. a real Cassandra 5.0 node started from Maven Central jars
#      (scripts/cassandra/cassandra.sh), the Cassandra store and the
#      server's durability guarantees tested against it, the node stopped;
#   3. a 3-node Cassandra ring (the same script, CASSANDRA_NODES=3), the
#      cluster over it at replication factor 3 while a Cassandra node is
#      killed -9 under load, the ring stopped.
# Prerequisites: Go, Java 17, Maven; scripts/deps.sh installs the clients.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== no build outputs in git"
# A committed binary goes stale and bloats every clone; .gitignore covers
# what the Makefile and scripts build, and this catches the rest.
elf=$(git ls-files -z | xargs -0 -r sh -c 'for f; do [ -f "$f" ] && [ "$(head -c 4 "$f" | od -An -c | tr -d " ")" = "177ELF" ] && echo "$f"; done; true' sh)
if [ -n "$elf" ]; then
	echo "git tracks executable files (git rm --cached them and ignore them):" >&2
	echo "$elf" >&2
	exit 1
fi

echo "== gofmt and go vet"
unformatted=$(gofmt -l $(git ls-files '*.go'))
if [ -n "$unformatted" ]; then
	echo "gofmt needed:" >&2
	echo "$unformatted" >&2
	exit 1
fi
go vet ./...
go vet -tags cassandra ./...
go vet -tags ptrcache ./...
(cd tools && go vet ./...) # the load tools' own module (plotting)

echo "== unit and end-to-end tests (race detector)"
go test -race -count=1 -timeout 20m ./...
go test -race -count=1 -tags ptrcache ./cache/ ./persist/ # the benchmark's pointer-LRU baseline
# The goroutine driver of the connection pipeline (TLS, other systems)
# under the same suites as the default event loops: the server package's,
# and the end-to-end tests of what a connection sees (the ones of the
# engine's durability do not depend on the driver).
READSTATES_TEST_EVENT_LOOPS=-1 go test -race -count=1 ./server/
READSTATES_TEST_EVENT_LOOPS=-1 go test -race -count=1 ./tests/ \
	-run 'Protocol|Pipeline|Inline|RedisCLI|GoRedis|RedisPy|Jedis|RedisRs|RedisBenchmark|TLS|MaxClients|NeverRead|OutputLimit|Shutdown|SIGTERM|TenThousand|FuzzServerStream|Metrics|Admin|Latency|Auth|Transaction|Tracking'

# The allocation tests, without the race detector (which allocates on its
# own, so they are left out of the runs above), on both layers.
go test -count=1 -run 'Alloc' ./...

echo "== Cassandra integration tests"
# CASSANDRA_NODES=1: a CASSANDRA_NODES exported for the ring must not turn
# these into ring commands.
export CASSANDRA_NODES=1
bash scripts/cassandra/cassandra.sh start
trap 'bash scripts/cassandra/cassandra.sh stop' EXIT
READSTATES_CASSANDRA_SCRIPT="$PWD/scripts/cassandra/cassandra.sh" \
	go test -race -count=1 -p 1 -timeout 30m -tags cassandra -run 'Cassandra' ./persist/... ./tests/
bash scripts/cassandra/cassandra.sh stop

echo "== Cassandra ring: 3 nodes, replication factor 3, one killed -9 under load"
# The single node is stopped: the ring takes 127.0.0.1-3 (and the CPU).
ring=(CASSANDRA_NODES=3 CASSANDRA_RING_ADDRESSES=127.0.0.1,127.0.0.2,127.0.0.3)
env "${ring[@]}" bash scripts/cassandra/cassandra.sh start
trap 'env "${ring[@]}" bash scripts/cassandra/cassandra.sh stop' EXIT
READSTATES_CASSANDRA_SCRIPT="$PWD/scripts/cassandra/cassandra.sh" \
READSTATES_CASSANDRA_RING=127.0.0.1:9042,127.0.0.2:9042,127.0.0.3:9042 \
	go test -race -count=1 -p 1 -timeout 15m -tags cassandra -run 'TestClusterRingCassandra' -v ./tests/
