#!/usr/bin/env bash
# Benchmarks, each comparing side by side in one run (ratios, not absolute
# times: the machines are shared and noisy):
#   1. the cache table against a pointer-rich LRU, a Go map and a bare
#      random memory probe, at each size in BENCH_SIZES;
#   2. the whole server against a reference redis-server on the same
#      machine, with redis-benchmark, pipelined and not.
# Output goes to stdout and bench-results/ (git-ignored).
set -euo pipefail
cd "$(dirname "$0")/.."
out=bench-results
mkdir -p "$out"
sizes=${BENCH_SIZES:-1000000,10000000}
requests=${BENCH_REQUESTS:-500000}
keyspace=${BENCH_KEYSPACE:-100000}
clients=${BENCH_CLIENTS:-50}

echo "== machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(date -u +%F)"

echo "== 1. cache table (sizes $sizes)"
[ "$sizes" = none ] || READSTATES_BENCH_SIZES=$sizes go test -run '^$' -bench 'Table' -benchtime 2000000x -timeout 60m ./cache/ | tee "$out/cache.txt"

echo "== 2. server vs redis-server (redis-benchmark -c $clients -n $requests -r $keyspace)"
go build -o bin/readstates ./cmd/readstates
port_rs=$((20000 + RANDOM % 10000)); port_redis=$((port_rs + 1))
data=$(mktemp -d)
./bin/readstates --addr 127.0.0.1:$port_rs --data-dir "$data" --cache-entries $((2 * keyspace)) --log-level warn &
rs_pid=$!
redis-server --port $port_redis --bind 127.0.0.1 --save '' --appendonly no --daemonize no --loglevel warning >"$out/redis-server.log" &
redis_pid=$!
trap 'kill $rs_pid $redis_pid 2>/dev/null; wait 2>/dev/null; rm -rf "$data"' EXIT
for p in $port_rs $port_redis; do
	for _ in $(seq 100); do redis-cli -p $p ping >/dev/null 2>&1 && break; sleep 0.1; done
done

rps() { # port pipeline command...: requests per second
	local port=$1 pipe=$2; shift 2
	redis-benchmark -p "$port" -c "$clients" -n "$requests" -r "$keyspace" -P "$pipe" -q "$@" 2>/dev/null |
		tr '\r' '\n' | grep -o '[0-9.]* requests per second' | tail -1 | cut -d' ' -f1
}
# One random id per key on both sides, so both hold the same keyspace
# (two __rand_int__ would make RSINCR's 10^12 keys, every one a miss).
# Warm both (the first pass loads the keyspace into the cache).
requests=$((10 * keyspace)) rps $port_rs 16 RSINCR __rand_int__ 1 >/dev/null
rps $port_redis 16 INCR "s:__rand_int__" >/dev/null
printf '%-4s %14s %14s %14s %9s %9s\n' P RSINCR INCR HINCRBY 'vs INCR' 'vs HINCR' | tee "$out/server.txt"
for pipe in 1 16; do
	a=$(rps $port_rs $pipe RSINCR __rand_int__ 1)
	b=$(rps $port_redis $pipe INCR "s:__rand_int__")
	c=$(rps $port_redis $pipe HINCRBY "h:__rand_int__" __rand_int__ 1)
	awk -v p="$pipe" -v a="$a" -v b="$b" -v c="$c" \
		'BEGIN { printf "%-4s %14s %14s %14s %9.2f %9.2f\n", p, a, b, c, a / b, a / c }' | tee -a "$out/server.txt"
done
