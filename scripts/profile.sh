#!/usr/bin/env bash
# CPU and allocation profiles of the server under redis-benchmark load
# (RSINCR and RSGET over RANGE^2 cached read states, pipelined and not).
# Writes bench-results/profile-{cpu,allocs}.{pb.gz,txt} and prints the
# allocations per command: bytes and objects allocated during the load
# divided by the commands served.
#   RANGE=1000 SECONDS_CPU=20 bash scripts/profile.sh
set -euo pipefail
cd "$(dirname "$0")/.."
out=bench-results
mkdir -p "$out"
range=${RANGE:-1000}
secs=${SECONDS_CPU:-20}
keyspace=$((range * range))
go build -o bin/readstates ./cmd/readstates
port=$((20000 + RANDOM % 10000)); pport=$((port + 1))
data=$(mktemp -d)
./bin/readstates --addr 127.0.0.1:$port --pprof-addr 127.0.0.1:$pport --data-dir "$data" \
	--cache-entries $((2 * keyspace)) --log-level warn &
pid=$!
trap 'kill $pid 2>/dev/null; wait 2>/dev/null; rm -rf "$data"' EXIT
for _ in $(seq 100); do redis-cli -p $port ping >/dev/null 2>&1 && break; sleep 0.1; done
load() { # requests pipeline command...
	local n=$1 p=$2; shift 2
	redis-benchmark -p $port -c 50 -n "$n" -r "$range" -P "$p" -q "$@" 2>/dev/null | tr '\r' '\n' | grep 'requests per second' | tail -1
}
load $((10 * keyspace)) 16 RSINCR __rand_int__ __rand_int__ # warm: all but 0.005% of the read states cached
# Let the warm-up's writes reach the store, so the profile sees the steady state.
sleep 3
curl -sf -o "$out/profile-allocs-before.pb.gz" "http://127.0.0.1:$pport/debug/pprof/allocs"
cmds0=$(redis-cli -p $port info stats | tr -d '\r' | awk -F: '$1 == "total_commands_processed" { print $2 }')
curl -sf -o "$out/profile-cpu.pb.gz" "http://127.0.0.1:$pport/debug/pprof/profile?seconds=$secs" &
curl_pid=$!
end=$((SECONDS + secs))
while ((SECONDS < end)); do
	load 200000 1 RSINCR __rand_int__ __rand_int__
	load 1000000 16 RSINCR __rand_int__ __rand_int__
	load 200000 1 RSGET __rand_int__ __rand_int__
done
wait $curl_pid
cmds1=$(redis-cli -p $port info stats | tr -d '\r' | awk -F: '$1 == "total_commands_processed" { print $2 }')
curl -sf -o "$out/profile-allocs.pb.gz" "http://127.0.0.1:$pport/debug/pprof/allocs"
go tool pprof -top -nodecount=30 bin/readstates "$out/profile-cpu.pb.gz" 2>/dev/null >"$out/profile-cpu.txt"
go tool pprof -sample_index=alloc_space -base "$out/profile-allocs-before.pb.gz" -top -nodecount=30 \
	bin/readstates "$out/profile-allocs.pb.gz" 2>/dev/null >"$out/profile-allocs.txt"
go tool pprof -sample_index=alloc_objects -base "$out/profile-allocs-before.pb.gz" -top -nodecount=30 \
	bin/readstates "$out/profile-allocs.pb.gz" 2>/dev/null >"$out/profile-allocs-objects.txt"
n=$((cmds1 - cmds0))
# total file: the profile's total, in plain units (pprof prints 696.11MB, 1.2GB, 12345).
total() {
	grep -m1 -o 'of [0-9.]*[kKMG]*B* total' "$1" | awk '{ v = $2; m = 1
		if (v ~ /kB$/) m = 1e3; else if (v ~ /MB$/) m = 1e6; else if (v ~ /GB$/) m = 1e9
		gsub(/[kKMGB]/, "", v); print v * m }'
}
echo "== profiles: $n commands during the profile"
echo "-- CPU, top 15 (bench-results/profile-cpu.txt)"; sed -n '5,21p' "$out/profile-cpu.txt"
echo "-- allocated bytes, top 12 (bench-results/profile-allocs.txt)"; sed -n '5,18p' "$out/profile-allocs.txt"
echo "-- allocated objects, top 12"; sed -n '5,18p' "$out/profile-allocs-objects.txt"
awk -v b="$(total "$out/profile-allocs.txt")" -v o="$(total "$out/profile-allocs-objects.txt")" -v n="$n" \
	'BEGIN { printf "== allocated per command (all goroutines, store included): %.0f bytes, %.2f objects\n", b / n, o / n }'
echo "(allocation profiles are sampled, one sample per 512 KiB allocated, and scaled: the figures are estimates)"
