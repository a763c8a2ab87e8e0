#!/usr/bin/env bash
# Latency over time under GC (Discord's chart, reproduced): the same server
# built twice, with the arena cache and with the pointer-rich baseline
# (go build -tags ptrcache: map + container/list LRU, Discord's Go design),
# each holding KEYS read states and driven by rsload at a fixed RATE for
# DURATION; then, as the reference for what this machine and load
# generator allow, a redis-server holding the same read states as hashes
# (rsload -target redis). Output: bench-results/latency-*.csv, latency.txt,
# latency.png (per-second p99.9 and max seen by the clients, GC cycles
# marked) and latency-server.png (the same, of the commands' run time
# inside the server).
#   KEYS=8000000 RATE=20000 CONNS=16 DURATION=10m VARIANTS="arena pointer-lru redis" bash scripts/latency.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/loadlib.sh
load_shape
variants=${VARIANTS:-arena pointer-lru redis}

go build -o bin/rsload ./cmd/rsload
(cd tools && go build -o ../bin/floor ./floor) # beside each measured run: the machine's floor
(cd tools && go build -o ../bin/rschart ./rschart) # its own module: gonum is no dependency of the server
go build -o bin/readstates ./cmd/readstates
go build -tags ptrcache -o bin/readstates-ptrcache ./cmd/readstates

echo "== latency under GC: $keys read states, $rate requests/s on $conns connections for $duration" | tee "$out/latency.txt"
machine | tee -a "$out/latency.txt"

charts=()
for v in $variants; do
	if [ "$v" = redis ]; then
		start_redis "$out/latency-$v.log"
		preload_and_measure "$keys" "$v" "$out/latency-$v.csv" -target redis | tee -a "$out/latency.txt"
		stop_server
		charts+=("redis-server=$out/latency-$v.csv")
		continue
	fi
	bin=bin/readstates
	[ "$v" = pointer-lru ] && bin=bin/readstates-ptrcache
	# A cache with room for every read state: the commands hit, so what the
	# chart shows is the GC's effect on them (the sweep sizes the cache
	# to the keyspace, where a few requests read through). A user's read
	# states share a shard, and rsload's users have 100 channels each, so
	# shards fill unevenly: with 1/16 of room to spare, 2.2-2.4% of the
	# read states did not fit and their commands read Pebble; half again
	# as much room holds them all.
	start_server "$bin" $((keys + keys / 2)) "$out/latency-$v.log"
	redis-cli -p "$port" info keyspace | grep -q "cache_implementation:$v" ||
		{ echo "latency: $bin is not the $v build" >&2; exit 1; }
	preload_and_measure "$keys" "$v" "$out/latency-$v.csv" | tee -a "$out/latency.txt"
	stop_server
	charts+=("$v=$out/latency-$v.csv")
done
title="$keys read states, $rate req/s open loop, $(nproc) cores"
./bin/rschart -o "$out/latency.png" -skip 10 -title "readstates: latency per second seen by the clients ($title)" "${charts[@]}" | tee -a "$out/latency.txt"
./bin/rschart -server -o "$out/latency-server.png" -skip 10 -title "readstates: command run time per second, inside the server ($title)" "${charts[@]}" >/dev/null
echo "== charts: $out/latency.png, $out/latency-server.png"
