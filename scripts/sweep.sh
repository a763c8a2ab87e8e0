#!/usr/bin/env bash
# Size sweep of the arena cache: for each size in SIZES, a fresh server
# holding that many read states (preloaded through read-through) under
# RATE requests/s of rsload for DURATION. Reports p99.9 latency, RSS bytes
# per read state, GC CPU fraction and GC pauses (runtime/metrics via INFO)
# into bench-results/sweep.txt.
#   SIZES="1000000 8000000 20000000 100000000" RATE=20000 DURATION=60s bash scripts/sweep.sh
set -euo pipefail
cd "$(dirname "$0")/.."
out=bench-results
mkdir -p "$out"
sizes=${SIZES:-1000000 8000000 20000000 100000000}
rate=${RATE:-20000}
conns=${CONNS:-16}
duration=${DURATION:-60s}

go build -o bin/rsload ./cmd/rsload
go build -o bin/readstates ./cmd/readstates

echo "== size sweep: $rate requests/s on $conns connections for $duration per size" | tee "$out/sweep.txt"
echo "== machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(go version | cut -d' ' -f3), $(date -u '+%F %H:%M UTC')" | tee -a "$out/sweep.txt"
pid=""
data=""
cleanup() {
	[ -z "$pid" ] || { kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true; }
	[ -z "$data" ] || rm -rf "$data"
}
trap cleanup EXIT
for n in $sizes; do
	port=$((20000 + RANDOM % 10000))
	data=$(mktemp -d)
	./bin/readstates --addr "127.0.0.1:$port" --data-dir "$data" --cache-entries "$n" --log-level warn \
		2>"$out/sweep-$n.log" &
	pid=$!
	for _ in $(seq 100); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
	./bin/rsload -addr "127.0.0.1:$port" -keys "$n" -preload -duration 0 | tail -1 | tee -a "$out/sweep.txt"
	sleep 5
	./bin/rsload -addr "127.0.0.1:$port" -keys "$n" -rate "$rate" -conns "$conns" \
		-duration "$duration" -warmup 10s -label "$n read states" -out "$out/sweep-$n.csv" | tee -a "$out/sweep.txt"
	kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""
	rm -rf "$data"; data=""
done
