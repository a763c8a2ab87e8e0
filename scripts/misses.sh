#!/usr/bin/env bash
# Misses on the embedded store while the flush runs (issue 15): the server
# with a cache of SHARE percent of KEYS, so that about the rest of
# rsload's commands miss and read through Pebble, while the periodic
# flush writes to it. Reports, over the measured run (the preload's
# figures cleared by CONFIG RESETSTAT), the deferred commands' whole
# time inside the server (INFO persistence: from the event loop's first
# attempt to the answer, a read of Pebble between) next to every
# command's run time (INFO latencystats), the flush cycles in the run, and
# the machine's floor beside it. BINS names the servers to run, one after
# the other ("label=path ...", default the current build) to compare
# builds in one run; "label=VAR=value,...:path" runs path with those
# environment variables set. SLOW=1ms also runs each server with
# --slow-seconds 1ms and sums its slow seconds by cause against the
# floor (tools/slowseconds). Output: bench-results/misses.txt.
#   KEYS=4000000 SHARE=95 RATE=20000 CONNS=16 DURATION=3m bash scripts/misses.sh
#   BINS="before=/tmp/readstates-old after=bin/readstates" bash scripts/misses.sh
#   BINS="loopPs=bin/readstates before=GOMAXPROCS=2:bin/readstates" bash scripts/misses.sh
#   SHARE=150 SLOW=1ms BINS="before=/tmp/readstates-old after=bin/readstates" bash scripts/misses.sh
#   BINS="plain=bin/readstates niced=LOADNICE=19:bin/readstates" bash scripts/misses.sh  (rsload at nice 19: loadlib.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/loadlib.sh
load_shape
keys=${KEYS:-4000000}
duration=${DURATION:-3m}
share=${SHARE:-95}
txt=$out/misses.txt

go build -o bin/rsload ./cmd/rsload
(cd tools && go build -o ../bin/floor ./floor && go build -o ../bin/slowseconds ./slowseconds)
go build -o bin/readstates ./cmd/readstates

cache=$((keys * share / 100))
echo "== misses on Pebble while the flush runs: $keys read states, a cache of $cache, $rate requests/s on $conns connections for $duration" | tee "$txt"
machine | tee -a "$txt"
for variant in ${BINS:-current=bin/readstates}; do
label=${variant%%=*} bin=${variant#*=} envs=""
if [[ $bin == *:* ]]; then envs=${bin%:*} bin=${bin##*:}; fi
echo "== $label: $bin ${envs:+(with $envs)}" | tee -a "$txt"
for kv in ${envs//,/ }; do export "${kv?}"; done
mport=$((30000 + RANDOM % 10000))
start_server "$bin" "$cache" "$out/misses-$label-server.log" --metrics-addr "127.0.0.1:$mport" ${SLOW:+--slow-seconds "$SLOW"}
loads() { curl -s "127.0.0.1:$mport/metrics" | grep '^readstates_store_load_duration_seconds_bucket'; }
preload "$keys" | tee -a "$txt"
redis-cli -p "$port" config set latency-tracking-info-percentiles "50 99 99.9 99.99 100" >/dev/null
redis-cli -p "$port" config resetstat >/dev/null
before=$(redis-cli -p "$port" info all | tr -d '\r')
loads_before=$(loads)
./bin/floor -duration "$duration" -out "$out/misses-$label-floor.csv" >"$out/misses-$label-floor.txt" &
floor=$!
measure "$keys" "$label" "$out/misses-$label.csv" -warmup 0s | tee -a "$txt"
wait "$floor"
cat "$out/misses-$label-floor.txt" | tee -a "$txt"
after=$(redis-cli -p "$port" info all | tr -d '\r')
loads_after=$(loads)
field() { grep -m1 "^$1:" <<<"$2" | cut -d: -f2-; }
{
	echo "== inside the server, over the run"
	for f in keyspace_hits keyspace_misses store_loads store_user_loads misses_without_load flush_cycles store_writes; do
		echo "$f: $(( $(field "$f" "$after") - $(field "$f" "$before") ))"
	done
	echo "deferred_commands: $(field deferred_commands "$after")"
	echo "deferred (whole time, µs): $(field deferred_latency_percentiles_usec "$after")"
	grep '^latency_percentiles_usec_rs' <<<"$after" | sed 's/^latency_percentiles_usec_/run time (µs) /'
	grep -E '^go_gc' <<<"$after" || true
	echo "store reads (Pebble), cumulative, in the run:"
	join <(sed -E 's/.*le="([^"]+)"} (.*)/\1 \2/' <<<"$loads_before" | sort) \
		<(sed -E 's/.*le="([^"]+)"} (.*)/\1 \2/' <<<"$loads_after" | sort) |
		awk '{printf "  <= %s s: %d\n", $1, $3 - $2}' | sort -n -k4
} | tee -a "$txt"
stop_server
if [ -n "${SLOW:-}" ]; then
	echo "== slow seconds (--slow-seconds $SLOW), against the floor" | tee -a "$txt"
	./bin/slowseconds -floor "$out/misses-$label-floor.csv" -late "$SLOW" "$out/misses-$label-server.log" | tee -a "$txt"
fi
for kv in ${envs//,/ }; do unset "${kv%%=*}"; done
done
