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
echo "== machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(go version | cut -d' ' -f3), $(date -u '+%F %H:%M UTC')" | tee -a "$out/latency.txt"
pid=""
data=""
cleanup() {
	[ -z "$pid" ] || { kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true; }
	[ -z "$data" ] || rm -rf "$data"
}
trap cleanup EXIT

charts=()
for v in $variants; do
	bin=bin/readstates
	[ "$v" = pointer-lru ] && bin=bin/readstates-ptrcache
	port=$((20000 + RANDOM % 10000))
	data=$(mktemp -d)
	"$bin" --addr "127.0.0.1:$port" --data-dir "$data" --cache-entries "$keys" --log-level warn \
		2>"$out/latency-$v.log" &
	pid=$!
	for _ in $(seq 100); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
	redis-cli -p "$port" info keyspace | grep -q "cache_implementation:$v" ||
		{ echo "latency: $bin is not the $v build" >&2; exit 1; }
	./bin/rsload -addr "127.0.0.1:$port" -keys "$keys" -preload -duration 0
	# Let the preload's read-through settle before measuring.
	sleep 5
	./bin/rsload -addr "127.0.0.1:$port" -keys "$keys" -rate "$rate" -conns "$conns" \
		-duration "$duration" -warmup 10s -label "$v" -out "$out/latency-$v.csv" | tee -a "$out/latency.txt"
	kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""
	rm -rf "$data"; data=""
	charts+=("$v=$out/latency-$v.csv")
done
./bin/rschart -o "$out/latency.png" -skip 10 \
	-title "readstates, $keys read states, $rate req/s open loop: latency per second ($(nproc) cores)" "${charts[@]}"
echo "== chart: $out/latency.png"
