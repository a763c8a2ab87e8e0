#!/usr/bin/env bash
# Latency over time under GC (Discord's chart, reproduced): the same server
# built twice, with the arena cache and with the pointer-rich baseline
# (go build -tags ptrcache: map + container/list LRU, Discord's Go design),
# each holding KEYS read states and driven by rsload at a fixed RATE for
# DURATION. Output: bench-results/latency-*.csv, latency.txt and
# latency.png (per-second p99.9 and max, GC cycles marked).
#   KEYS=8000000 RATE=20000 CONNS=16 DURATION=10m bash scripts/latency.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/loadlib.sh
out=bench-results
mkdir -p "$out"
keys=${KEYS:-8000000}
rate=${RATE:-20000}
conns=${CONNS:-16}
duration=${DURATION:-10m}
variants=${VARIANTS:-arena pointer-lru}

go build -o bin/rsload ./cmd/rsload
go build -o bin/rschart ./cmd/rschart
go build -o bin/readstates ./cmd/readstates
go build -tags ptrcache -o bin/readstates-ptrcache ./cmd/readstates

echo "== latency under GC: $keys read states, $rate requests/s on $conns connections for $duration" | tee "$out/latency.txt"
machine | tee -a "$out/latency.txt"

charts=()
for v in $variants; do
	bin=bin/readstates
	[ "$v" = pointer-lru ] && bin=bin/readstates-ptrcache
	start_server "$bin" "$keys" "$out/latency-$v.log"
	redis-cli -p "$port" info keyspace | grep -q "cache_implementation:$v" ||
		{ echo "latency: $bin is not the $v build" >&2; exit 1; }
	preload_and_measure "$keys" "$v" "$out/latency-$v.csv" | tee -a "$out/latency.txt"
	stop_server
	charts+=("$v=$out/latency-$v.csv")
done
./bin/rschart -o "$out/latency.png" -skip 10 \
	-title "readstates, $keys read states, $rate req/s open loop: latency per second ($(nproc) cores)" "${charts[@]}"
echo "== chart: $out/latency.png"
