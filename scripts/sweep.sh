#!/usr/bin/env bash
# Size sweep of the arena cache: for each size in SIZES, a fresh server
# holding that many read states (preloaded through read-through) under
# RATE requests/s of rsload for DURATION. Reports p99.9 latency, RSS bytes
# per read state, GC CPU fraction and GC pauses (runtime/metrics via INFO)
# into bench-results/sweep.txt.
#   SIZES="1000000 8000000 20000000 100000000" RATE=20000 DURATION=60s bash scripts/sweep.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/loadlib.sh
out=bench-results
mkdir -p "$out"
sizes=${SIZES:-1000000 8000000 20000000 100000000}
rate=${RATE:-20000}
conns=${CONNS:-16}
duration=${DURATION:-60s}

go build -o bin/rsload ./cmd/rsload
(cd tools && go build -o ../bin/floor ./floor) # beside each measured run: the machine's floor
go build -o bin/readstates ./cmd/readstates

echo "== size sweep: $rate requests/s on $conns connections for $duration per size" | tee "$out/sweep.txt"
machine | tee -a "$out/sweep.txt"
for n in $sizes; do
	start_server ./bin/readstates "$n" "$out/sweep-$n.log"
	preload_and_measure "$n" "$n read states" "$out/sweep-$n.csv" | tee -a "$out/sweep.txt"
	stop_server
done
