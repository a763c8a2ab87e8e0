# Developer and test entry points. Add targets below; keep each one a thin
# wrapper around a script so CI and humans run the same thing.

SHELL := /usr/bin/env bash
CASSANDRA_SH := scripts/cassandra/cassandra.sh

.PHONY: cassandra-start cassandra-stop cassandra-status build run test unit bench fuzz vet

# Local single-node Cassandra 5.0 under .cassandra/ (env: CASSANDRA_PORT,
# CASSANDRA_HOME_DIR, CASSANDRA_HEAP, CASSANDRA_START_TIMEOUT; see the script),
# or a ring of N nodes on 127.0.0.1..N: make cassandra-start CASSANDRA_NODES=3
# (homes under .cassandra/ring/; other addresses: CASSANDRA_RING_ADDRESSES=
# 127.0.0.2,127.0.0.3,127.0.0.4; stop and status take the same variables).
CASSANDRA_NODES ?= 1
CASSANDRA_RING_ADDRESSES ?=
CASSANDRA_ENV = CASSANDRA_NODES=$(CASSANDRA_NODES) $(if $(CASSANDRA_RING_ADDRESSES),CASSANDRA_RING_ADDRESSES=$(CASSANDRA_RING_ADDRESSES))

cassandra-start:
	$(CASSANDRA_ENV) bash $(CASSANDRA_SH) start

cassandra-stop:
	$(CASSANDRA_ENV) bash $(CASSANDRA_SH) stop

cassandra-status:
	$(CASSANDRA_ENV) bash $(CASSANDRA_SH) status

# The server binary.
build:
	go build -o bin/readstates ./cmd/readstates

# Build, then serve on 127.0.0.1:6380 with the embedded store in ./data
# (more flags: make run ARGS="--metrics-addr :9121"; see bin/readstates --help).
run: build
	./bin/readstates $(ARGS)

# Everything CI runs: vet, unit and end-to-end tests with real clients under
# the race detector, then a local Cassandra node and the integration tests
# against it (scripts/test.sh). Clients: bash scripts/deps.sh.
test:
	bash scripts/test.sh

# Unit and end-to-end tests only (no Cassandra): the quick loop.
unit:
	go test -race ./...

# Benchmarks, side by side in one run (scripts/bench.sh; results in
# BENCHMARKS.md). BENCH_SIZES sets the cache sizes.
bench:
	bash scripts/bench.sh

# Every fuzz target for FUZZTIME each (scripts/fuzz.sh); SAVE=1 copies what
# the fuzzer found into testdata/fuzz/, the committed corpus.
FUZZTIME ?= 10s
fuzz:
	FUZZTIME=$(FUZZTIME) bash scripts/fuzz.sh

vet:
	go vet ./...
	@test -z "$$(gofmt -l $$(git ls-files -co --exclude-standard '*.go'))" || { gofmt -l $$(git ls-files -co --exclude-standard '*.go'); echo "gofmt needed"; exit 1; }
