# Shared by latency.sh and sweep.sh (sourced): one server at a time, on a
# fresh port and data directory, stopped and its data removed on exit.

pid=""
data=""
port=""

machine() {
	echo "== machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(go version | cut -d' ' -f3), $(date -u '+%F %H:%M UTC')"
}

stop_server() {
	[ -z "$pid" ] || { kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true; }
	[ -z "$data" ] || rm -rf "$data"
	pid="" data=""
}
trap stop_server EXIT

# start_server binary cache-entries logfile [server flags...]
start_server() {
	port=$((20000 + RANDOM % 10000))
	data=$(mktemp -d)
	"$1" --addr "127.0.0.1:$port" --data-dir "$data" --cache-entries "$2" --log-level warn "${@:4}" 2>"$3" &
	pid=$!
	for _ in $(seq 100); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
}

# start_redis logfile: the reference redis-server (no persistence), in
# place of a readstates server.
start_redis() {
	port=$((20000 + RANDOM % 10000))
	redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --daemonize no --loglevel warning >"$1" 2>&1 &
	pid=$!
	for _ in $(seq 100); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
}

# preload keys [rsload flags]: every read state loaded into the cache (or
# written, into Redis).
preload() {
	local keys=$1
	shift
	./bin/rsload -addr "127.0.0.1:$port" -keys "$keys" -preload -duration 0 "$@" | tail -1
	sleep 5 # let the preload's read-through settle
}

# measure keys label csv [rsload flags]: rsload at $rate on $conns
# connections for $duration (the first 10 s left out of its figures).
# LOADNICE=19 runs rsload at that nice level, so that the kernel hands a
# CPU to a woken server thread before it finishes rsload's timeslice
# (closer to clients on other machines, though it still shares the cores).
measure() {
	local keys=$1 label=$2 csv=$3
	shift 3
	${LOADNICE:+nice -n "$LOADNICE"} ./bin/rsload -addr "127.0.0.1:$port" -keys "$keys" -rate "$rate" -conns "$conns" \
		-duration "$duration" -warmup 10s -label "$label" -out "$csv" "$@"
}

# preload_and_measure keys label csv [rsload flags]: preload, then
# measure, with tools/floor (bin/floor) beside it: the machine's own
# scheduling floor over the same seconds, in csv's name with -floor.
preload_and_measure() {
	local keys=$1 label=$2 csv=$3
	shift 3
	preload "$keys" "$@"
	./bin/floor -duration "$duration" -out "${csv%.csv}-floor.csv" >"${csv%.csv}-floor.txt" &
	local floor=$!
	measure "$keys" "$label" "$csv" "$@"
	wait "$floor"
	cat "${csv%.csv}-floor.txt"
}

# load_shape: the load from the environment, with the defaults of the
# latency chart (KEYS, RATE, CONNS, DURATION), and the output directory.
load_shape() {
	out=bench-results
	mkdir -p "$out"
	keys=${KEYS:-8000000}
	rate=${RATE:-20000}
	conns=${CONNS:-16}
	duration=${DURATION:-10m}
}
