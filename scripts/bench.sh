#!/usr/bin/env bash
# Benchmarks, each comparing side by side in one run (ratios, not absolute
# times: the machines are shared and noisy):
#   1. the cache table against a pointer-rich LRU, a Go map and a bare
#      random memory probe, at each size in BENCH_SIZES ("none" skips);
#   2. the whole server against a reference redis-server on the same
#      machine, with redis-benchmark, pipelined and not, ROUNDS times
#      interleaved (the median ratio is reported), with the CPU time each
#      server spent per request;
#   3. latency over time under GC, arena vs pointer-rich cache
#      (scripts/latency.sh; LATENCY=0 skips);
#   4. the size sweep (scripts/sweep.sh; SWEEP=0 skips);
#   5. CPU and allocation profiles of the server under load
#      (scripts/profile.sh; PROFILE=0 skips).
# Output goes to stdout and bench-results/ (git-ignored).
set -euo pipefail
cd "$(dirname "$0")/.."
out=bench-results
mkdir -p "$out"
sizes=${BENCH_SIZES:-1000000,10000000}
requests=${BENCH_REQUESTS:-300000}
range=${BENCH_RANGE:-1000} # __rand_int__ range: two of them make range^2 read states
clients=${BENCH_CLIENTS:-50}
rounds=${BENCH_ROUNDS:-3}

echo "== machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(go version | cut -d' ' -f3), $(date -u +%F)"

echo "== 1. cache table (sizes $sizes)"
[ "$sizes" = none ] || READSTATES_BENCH_SIZES=$sizes go test -run '^$' -bench 'Table' -benchtime 2000000x -timeout 60m ./cache/ | tee "$out/cache.txt"

keyspace=$((range * range))
echo "== 2. server vs redis-server (redis-benchmark -c $clients -n $requests -r $range: $keyspace read states / keys, $rounds rounds)"
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

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# bench pid port pipeline command...: prints "requests/s server-CPU-µs-per-request"
bench() {
	local pid=$1 port=$2 pipe=$3; shift 3
	local t0 t1 rps
	t0=$(cpu_ticks "$pid")
	rps=$(redis-benchmark -p "$port" -c "$clients" -n "$requests" -r "$range" -P "$pipe" -q "$@" 2>/dev/null |
		tr '\r' '\n' | grep -o '[0-9.]* requests per second' | tail -1 | cut -d' ' -f1)
	t1=$(cpu_ticks "$pid")
	awk -v r="$rps" -v t=$((t1 - t0)) -v n="$requests" -v hz="$(getconf CLK_TCK)" \
		'BEGIN { printf "%s %.2f\n", r, t / hz * 1e6 / n }'
}
# The same keyspace on both sides: RSINCR's two ids and the Redis key's
# two ids are independent __rand_int__ draws. Warm both first: the first
# pass loads the keyspace (into the cache here, into memory in Redis).
requests=$((3 * keyspace)) bench $rs_pid $port_rs 16 RSINCR __rand_int__ __rand_int__ >/dev/null
requests=$((3 * keyspace)) bench $redis_pid $port_redis 16 INCR "s:__rand_int__:__rand_int__" >/dev/null
requests=$((3 * keyspace)) bench $redis_pid $port_redis 16 HINCRBY "h:__rand_int__" __rand_int__ 1 >/dev/null
{
	printf '%-5s %-2s %10s %10s %10s %8s %8s %9s %9s %9s\n' round P RSINCR/s INCR/s HINCRBY/s 'vs INCR' 'vs HINCR' 'µs/req RS' 'µs/req IN' 'µs/req HI'
	for r in $(seq "$rounds"); do
		for pipe in 1 16; do
			read -r a ca < <(bench $rs_pid $port_rs $pipe RSINCR __rand_int__ __rand_int__)
			read -r b cb < <(bench $redis_pid $port_redis $pipe INCR "s:__rand_int__:__rand_int__")
			read -r c cc < <(bench $redis_pid $port_redis $pipe HINCRBY "h:__rand_int__" __rand_int__ 1)
			awk -v r="$r" -v p="$pipe" -v a="$a" -v b="$b" -v c="$c" -v ca="$ca" -v cb="$cb" -v cc="$cc" \
				'BEGIN { printf "%-5s %-2s %10s %10s %10s %8.2f %8.2f %9s %9s %9s\n", r, p, a, b, c, a / b, a / c, ca, cb, cc }'
		done
	done
} | tee "$out/server.txt"
# Median over rounds of each ratio, per pipeline depth.
median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
for pipe in 1 16; do
	col() { awk -v p="$pipe" "\$2 == p { print $1 }" "$out/server.txt" | median; }
	printf 'P=%-2s median of %s rounds: RSINCR/INCR %sx, RSINCR/HINCRBY %sx; server CPU per request, readstates/redis (INCR): %.2fx\n' \
		"$pipe" "$rounds" "$(col '$6')" "$(col '$7')" "$(col '$8 / $9')"
done | tee -a "$out/server.txt"
kill $rs_pid $redis_pid 2>/dev/null; wait 2>/dev/null || true; rm -rf "$data"; trap - EXIT

[ "${LATENCY:-1}" = 0 ] || { echo "== 3. latency under GC"; bash scripts/latency.sh; }
[ "${SWEEP:-1}" = 0 ] || { echo "== 4. size sweep"; bash scripts/sweep.sh; }
[ "${PROFILE:-1}" = 0 ] || { echo "== 5. profiles"; bash scripts/profile.sh; }
