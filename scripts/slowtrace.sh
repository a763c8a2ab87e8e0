#!/usr/bin/env bash
# Where the server's slowest commands spend their time (issue 15): the
# server with every read state cached (KEYS) and --trace-slow THRESHOLD,
# under rsload at RATE for DURATION; each slow command that did not wait
# for the database leaves a trace (at most one per 10 s), and
# tools/traceattr splits each one's run time by what its goroutine did
# (running, waiting for a P, blocked, in a system call), the
# stop-the-world pauses in it, and what ran while it waited for a P.
# Beside them, --slow-seconds THRESHOLD names the cause of every second
# whose slowest command took THRESHOLD or more, and tools/floor, a
# do-nothing process, measures the machine's own scheduling floor in the
# same seconds; tools/slowseconds sums the two up.
# Output: bench-results/slowtrace.txt, slow-seconds.png, the traces in
# bench-results/traces.
#   KEYS=8000000 RATE=20000 DURATION=10m THRESHOLD=1ms bash scripts/slowtrace.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/loadlib.sh
load_shape
threshold=${THRESHOLD:-1ms}

go build -o bin/rsload ./cmd/rsload
go build -o bin/readstates ./cmd/readstates
(cd tools && go build -o ../bin/traceattr ./traceattr && go build -o ../bin/floor ./floor && go build -o ../bin/slowseconds ./slowseconds)

echo "== slow commands: $keys read states, $rate requests/s on $conns connections for $duration, --trace-slow $threshold" | tee "$out/slowtrace.txt"
machine | tee -a "$out/slowtrace.txt"
start_server bin/readstates $((keys + keys / 2)) "$out/slowtrace-server.log" --trace-slow "$threshold" --slow-seconds "$threshold"
rm -rf "$out/traces"
mkdir -p "$out/traces"
# The server keeps its newest 10: take each as it comes.
(while kill -0 "$pid" 2>/dev/null; do cp -n "$data"/traces/*.trace "$out/traces/" 2>/dev/null || true; sleep 2; done) &
copier=$!
preload_and_measure "$keys" slowtrace "$out/slowtrace.csv" | tee -a "$out/slowtrace.txt"
cp -n "$data"/traces/*.trace "$out/traces/" 2>/dev/null || true
stop_server
wait "$copier" || true
echo "== slow seconds (--slow-seconds $threshold) after rsload's 10 s warm-up" | tee -a "$out/slowtrace.txt"
# The seconds of the measured load, after its 10 s of warm-up: the
# floor's (the preload's are left out).
./bin/slowseconds -floor "$out/slowtrace-floor.csv" -late "$threshold" -skip 10s \
	-chart "$out/slow-seconds.png" -title "readstates: seconds with a command over $threshold, by cause ($keys read states, $rate req/s)" \
	"$out/slowtrace-server.log" | tee -a "$out/slowtrace.txt"
shopt -s nullglob
traces=("$out"/traces/slow-*.trace)
echo "== ${#traces[@]} traces" | tee -a "$out/slowtrace.txt"
[ ${#traces[@]} -eq 0 ] || ./bin/traceattr "${traces[@]}" | tee -a "$out/slowtrace.txt"
