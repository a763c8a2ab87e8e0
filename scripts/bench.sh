#!/usr/bin/env bash
# Benchmarks, each comparing side by side in one run (ratios, not absolute
# times: the machines are shared and noisy):
#   1. the cache table against a pointer-rich LRU, a Go map and a bare
#      random memory probe, at each size in BENCH_SIZES ("none" skips);
#   2. the whole server against a reference redis-server on the same
#      machine, with redis-benchmark, pipelined and not, ROUNDS times
#      interleaved (the median ratio is reported), with the CPU time each
#      server spent per request (BENCH_BASE=<revision> adds that
#      revision's server: before and after in one run);
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
base=$((20000 + RANDOM % 10000))
# readstates four ways: its default (an event loop per core, the journal
# fsynced every second), the same without the journal (what the journal
# costs), one event loop (Redis's one thread of commands), and a goroutine
# per connection.
variants=("loops:--event-loops 0" "nojournal:--event-loops 0 --journal=false" "loop1:--event-loops 1" "goroutines:--event-loops -1")
# BENCH_VARIANTS="name:flags;name:flags" replaces them (e.g. to compare one
# change with BENCH_BASE quickly).
if [ -n "${BENCH_VARIANTS:-}" ]; then IFS=';' read -r -a variants <<<"$BENCH_VARIANTS"; fi
# BENCH_BASE=<git revision> adds that revision's build, both drivers, as
# "base" and "base-gorout": a before/after comparison in the same run.
if [ -n "${BENCH_BASE:-}" ]; then
	src=$(mktemp -d)
	git archive "$BENCH_BASE" | tar -x -C "$src"
	(cd "$src" && go build -o "$OLDPWD/bin/readstates-base" ./cmd/readstates)
	rm -rf "$src"
	variants+=("base:--event-loops 0" "base-gorout:--event-loops -1")
fi
pids=() ports=() dirs=()
trap 'kill ${pids[*]} 2>/dev/null; wait 2>/dev/null; rm -rf ${dirs[*]}' EXIT
for i in "${!variants[@]}"; do
	port=$((base + i)) data=$(mktemp -d) bin=./bin/readstates
	[[ ${variants[$i]} == base* ]] && bin=./bin/readstates-base
	# shellcheck disable=SC2086 # the variant's flags split on purpose
	$bin --addr 127.0.0.1:$port --data-dir "$data" --cache-entries $((2 * keyspace)) --log-level warn ${variants[$i]#*:} &
	pids+=($!) ports+=($port) dirs+=("$data")
done
port_redis=$((base + ${#variants[@]}))
redis-server --port $port_redis --bind 127.0.0.1 --save '' --appendonly no --daemonize no --loglevel warning >"$out/redis-server.log" &
redis_pid=$!
pids+=($redis_pid)
for p in "${ports[@]}" $port_redis; do
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
# two ids are independent __rand_int__ draws. Warm everything first: ten
# passes over the keyspace's size touch all but 0.005% of it (into the
# cache here, into memory in Redis). Then let the write-behind write the
# warm-up out, so an idle server does not flush under another's run.
warm=$((10 * keyspace))
for i in "${!variants[@]}"; do
	requests=$warm bench "${pids[$i]}" "${ports[$i]}" 16 RSINCR __rand_int__ __rand_int__ >/dev/null
done
requests=$warm bench $redis_pid $port_redis 16 INCR "s:__rand_int__:__rand_int__" >/dev/null
requests=$warm bench $redis_pid $port_redis 16 HINCRBY "h:__rand_int__" __rand_int__ 1 >/dev/null
for p in "${ports[@]}"; do
	for _ in $(seq 120); do
		redis-cli -p "$p" info persistence | grep -q '^rdb_changes_since_last_save:0' && break
		sleep 1
	done
done
{
	printf '%-5s %-2s %-10s %10s %10s %10s %8s %8s %9s %9s\n' round P readstates RSINCR/s INCR/s HINCRBY/s 'vs INCR' 'vs HINCR' 'µs/req RS' 'µs/req IN'
	for r in $(seq "$rounds"); do
		for pipe in 1 16; do
			read -r b cb < <(bench $redis_pid $port_redis $pipe INCR "s:__rand_int__:__rand_int__")
			read -r c _ < <(bench $redis_pid $port_redis $pipe HINCRBY "h:__rand_int__" __rand_int__ 1)
			for i in "${!variants[@]}"; do
				read -r a ca < <(bench "${pids[$i]}" "${ports[$i]}" $pipe RSINCR __rand_int__ __rand_int__)
				awk -v r="$r" -v p="$pipe" -v v="${variants[$i]%%:*}" -v a="$a" -v b="$b" -v c="$c" -v ca="$ca" -v cb="$cb" \
					'BEGIN { printf "%-5s %-2s %-10s %10s %10s %10s %8.2f %8.2f %9s %9s\n", r, p, v, a, b, c, a / b, a / c, ca, cb }'
			done
		done
	done
} | tee "$out/server.txt"
# Median over rounds of each ratio, per variant and pipeline depth.
median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
for v in "${variants[@]}"; do
	v=${v%%:*}
	for pipe in 1 16; do
		col() { awk -v p="$pipe" -v v="$v" "\$2 == p && \$3 == v { print $1 }" "$out/server.txt" | median; }
		printf '%-10s P=%-2s median of %s rounds: RSINCR/INCR %sx, RSINCR/HINCRBY %sx; server CPU per request, readstates/redis (INCR): %.2fx\n' \
			"$v" "$pipe" "$rounds" "$(col '$7')" "$(col '$8')" "$(col '$9 / $10')"
	done
done | tee -a "$out/server.txt"
# What the journal costs: the default against the same without it (when
# both variants ran).
[[ " ${variants[*]%%:*} " == *" loops "* && " ${variants[*]%%:*} " == *" nojournal "* ]] && for pipe in 1 16; do
	ratio() { awk -v p="$pipe" '$2 == p && $3 == "loops" { a[$1] = $4 } $2 == p && $3 == "nojournal" { b[$1] = $4 } END { for (r in a) print a[r] / b[r] }' "$out/server.txt" | median; }
	printf 'journal   P=%-2s median of %s rounds: RSINCR/s with the journal (fsync 1s) / without: %.2fx\n' "$pipe" "$rounds" "$(ratio)"
done | tee -a "$out/server.txt"
kill "${pids[@]}" 2>/dev/null; wait 2>/dev/null || true; rm -rf "${dirs[@]}"; trap - EXIT

[ "${LATENCY:-1}" = 0 ] || { echo "== 3. latency under GC"; bash scripts/latency.sh; }
[ "${SWEEP:-1}" = 0 ] || { echo "== 4. size sweep"; bash scripts/sweep.sh; }
[ "${PROFILE:-1}" = 0 ] || { echo "== 5. profiles"; bash scripts/profile.sh; }
