#!/usr/bin/env bash
# Side by side, in one run: the loopbench server with each event-loop
# layer (epoll: hand-written, as server/loop_linux.go; gnet v2; netpoll),
# and redis-server as the reference, under redis-benchmark, interleaved
# over ROUNDS rounds (the order of the targets rotates each round). For
# each run: requests/s, the server's CPU time per request (utime+stime of
# the process from /proc/<pid>/stat, before and after), and for loopbench
# its heap allocations per request (runtime.MemStats.Mallocs, printed on
# SIGUSR1). It ends with the medians over the rounds and the per-round
# ratios (median) to the epoll driver and to redis-server. The machine is
# shared and noisy: trust the ratios more than the absolute figures.
#
# Env: ROUNDS (3), REQUESTS (300000, at -P 1), REQUESTS_P16 (1500000, so a
# pipelined run lasts seconds too), CLIENTS (50), RANGE (1000: RANGE^2
# read states / keys), WARM_PASSES (5 passes over the keyspace before
# measuring), CMDS ("RSINCR RSGET"), DRIVERS ("epoll gnet netpoll"),
# SERVER_CPUS (CPU list every server is pinned to, default all CPUs),
# CLIENT_CPUS (the same for redis-benchmark), OUT (directory for the
# results, default ../../bench-results/loopbench).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
rounds=${ROUNDS:-3}
requests=${REQUESTS:-300000}
requests16=${REQUESTS_P16:-1500000}
clients=${CLIENTS:-50}
range=${RANGE:-1000}
warm_passes=${WARM_PASSES:-5}
cmds=${CMDS:-RSINCR RSGET}
read -ra drivers <<<"${DRIVERS:-epoll gnet netpoll}"
ncpu=$(nproc)
server_cpus=${SERVER_CPUS:-0-$((ncpu - 1))}
client_cpus=${CLIENT_CPUS:-0-$((ncpu - 1))}
out=${OUT:-$here/../../bench-results/loopbench}
mkdir -p "$out"
out=$(cd "$out" && pwd)
command -v redis-server >/dev/null && command -v redis-benchmark >/dev/null ||
	{ echo "bench.sh: needs redis-server and redis-benchmark (bash scripts/deps.sh)" >&2; exit 1; }

echo "== machine: $ncpu cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(go version | cut -d' ' -f3), $(date -u +%FT%TZ)"
echo "== servers pinned to CPUs $server_cpus, redis-benchmark to $client_cpus; -c $clients -r $range, -n $requests at -P 1 and $requests16 at -P 16; $rounds rounds"
bin=$(mktemp -d)
(cd "$here/.." && go build -o "$bin/loopbench" ./loopbench)

base=$((20000 + RANDOM % 10000))
targets=() pids=() hosts=() ports=() logs=()
trap 'kill ${pids[*]} 2>/dev/null; wait 2>/dev/null; rm -rf "$bin"' EXIT
i=0
for d in "${drivers[@]}"; do
	h=127.0.0.$((2 + i)) p=$((base + i)) log=$out/$d.log
	taskset -c "$server_cpus" "$bin/loopbench" -driver "$d" -addr "$h:$p" -cache-entries $((2 * range * range)) 2>"$log" &
	targets+=("$d") pids+=($!) hosts+=("$h") ports+=("$p") logs+=("$log")
	i=$((i + 1))
done
h=127.0.0.$((2 + i)) p=$((base + i))
taskset -c "$server_cpus" redis-server --port "$p" --bind "$h" --save '' --appendonly no --daemonize no --loglevel warning >"$out/redis-server.log" 2>&1 &
targets+=(redis) pids+=($!) hosts+=("$h") ports+=("$p") logs+=("")
for i in "${!targets[@]}"; do
	for _ in $(seq 100); do redis-cli -h "${hosts[$i]}" -p "${ports[$i]}" ping >/dev/null 2>&1 && break; sleep 0.1; done
	redis-cli -h "${hosts[$i]}" -p "${ports[$i]}" ping >/dev/null || { echo "bench.sh: ${targets[$i]} did not start" >&2; exit 1; }
done

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# mallocs i: the heap allocations of loopbench target i so far (SIGUSR1).
mallocs() {
	local log=${logs[$1]} n
	n=$(grep -c 'mallocs=' "$log" || true)
	kill -USR1 "${pids[$1]}"
	for _ in $(seq 100); do
		[ "$(grep -c 'mallocs=' "$log" || true)" -gt "$n" ] && break
		sleep 0.02
	done
	grep 'mallocs=' "$log" | tail -1 | cut -d= -f2
}
# The command of a target: the read-state command, or for Redis the
# nearest one on the same keyspace (two independent __rand_int__ draws).
command_of() {
	case "$1:$2" in
	redis:RSINCR) echo "INCR s:__rand_int__:__rand_int__" ;;
	redis:RSGET) echo "GET s:__rand_int__:__rand_int__" ;;
	*) echo "$2 __rand_int__ __rand_int__" ;;
	esac
}
# bench i pipeline n cmd: prints "requests/s CPU-µs-per-request allocs-per-request"
bench() {
	local i=$1 pipe=$2 n=$3 cmd=$4 m0=0 m1=0 t0 t1 rps
	[ -z "${logs[$i]}" ] || m0=$(mallocs "$i")
	t0=$(cpu_ticks "${pids[$i]}")
	# shellcheck disable=SC2046 # the command splits into words on purpose
	rps=$(taskset -c "$client_cpus" redis-benchmark -h "${hosts[$i]}" -p "${ports[$i]}" -c "$clients" -n "$n" -r "$range" -P "$pipe" -q \
		$(command_of "${targets[$i]}" "$cmd") 2>/dev/null | tr '\r' '\n' | grep -o '[0-9.]* requests per second' | tail -1 | cut -d' ' -f1)
	t1=$(cpu_ticks "${pids[$i]}")
	[ -z "${logs[$i]}" ] || m1=$(mallocs "$i")
	awk -v r="${rps:-0}" -v t=$((t1 - t0)) -v n="$n" -v hz="$(getconf CLK_TCK)" -v m=$((m1 - m0)) -v redis=$([ -z "${logs[$i]}" ] && echo 1 || echo 0) \
		'BEGIN { printf "%s %.2f %s\n", r, t / hz * 1e6 / n, redis ? "-" : sprintf("%.3f", m / n) }'
}

echo "== warm-up: $warm_passes passes over the $((range * range)) read states / keys"
warm=$((warm_passes * range * range))
for i in "${!targets[@]}"; do
	bench "$i" 16 "$warm" RSINCR >/dev/null
done

res=$out/runs.txt
{
	printf '%-5s %-2s %-6s %-8s %10s %8s %10s\n' round P cmd target req/s 'µs/req' 'allocs/req'
	for r in $(seq "$rounds"); do
		for pipe in 1 16; do
			n=$requests
			[ "$pipe" = 1 ] || n=$requests16
			for cmd in $cmds; do
				k=${#targets[@]}
				for j in $(seq 0 $((k - 1))); do
					i=$(((j + r) % k)) # rotate the order each round
					read -r a c m < <(bench "$i" "$pipe" "$n" "$cmd")
					printf '%-5s %-2s %-6s %-8s %10s %8s %10s\n' "$r" "$pipe" "$cmd" "${targets[$i]}" "$a" "$c" "$m"
				done
			done
		done
	done
} | tee "$res"

# Medians over rounds; ratios are taken within a round, then the median.
echo "== medians over $rounds rounds (ratios: per round, then the median)"
printf '%-2s %-6s %-8s %10s %8s %10s %9s %9s %9s %9s\n' P cmd target req/s 'µs/req' 'allocs/req' 'rps/epoll' 'rps/redis' 'cpu/epoll' 'cpu/redis'
awk -v tl="${targets[*]}" -v cl="$cmds" '
	function median(s,   a, n, i, j, t) {
		n = split(s, a, " ")
		for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j - 1] + 0 > a[j] + 0; j--) { t = a[j]; a[j] = a[j - 1]; a[j - 1] = t }
		return n ? a[int((n + 1) / 2)] : "-"
	}
	function div(a, b) { return b + 0 ? a / b : "nan" }
	NR > 1 { rps[$1, $2, $3, $4] = $5; cpu[$1, $2, $3, $4] = $6; al[$1, $2, $3, $4] = $7; rounds[$1] = 1 }
	END {
		nt = split(tl, ts, " "); nc = split(cl, cs, " ")
		for (p = 1; p <= 16; p += 15) for (c = 1; c <= nc; c++) for (t = 1; t <= nt; t++) {
			cm = cs[c]; tg = ts[t]; R = C = A = RE = RR = CE = CR = ""
			for (r in rounds) {
				R = R " " rps[r, p, cm, tg]; C = C " " cpu[r, p, cm, tg]; A = A " " al[r, p, cm, tg]
				RE = RE " " div(rps[r, p, cm, tg], rps[r, p, cm, "epoll"]); RR = RR " " div(rps[r, p, cm, tg], rps[r, p, cm, "redis"])
				CE = CE " " div(cpu[r, p, cm, tg], cpu[r, p, cm, "epoll"]); CR = CR " " div(cpu[r, p, cm, tg], cpu[r, p, cm, "redis"])
			}
			printf "%-2s %-6s %-8s %10s %8s %10s %9.2f %9.2f %9.2f %9.2f\n", p, cm, tg, median(R), median(C), (tg == "redis" ? "-" : median(A)), median(RE), median(RR), median(CE), median(CR)
		}
	}' "$res" | tee "$out/summary.txt"
echo "== results in $out (runs.txt, summary.txt)"
