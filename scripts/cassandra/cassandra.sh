#!/usr/bin/env bash
# Run a real single-node Apache Cassandra 5.0 for local development and tests,
# from the Maven Central artifact org.apache.cassandra:cassandra-all (no Docker,
# no tarball), or, with CASSANDRA_NODES=N (N > 1), a ring of N such nodes on
# loopback addresses (see "Ring mode" below). See scripts/cassandra/pom.xml for
# the pinned version.
#
# Usage: scripts/cassandra/cassandra.sh {start|stop|restart|status|kill9|pause|resume|logs|wipe|env|pid|nodetool ARGS}
#
#   start   fetch jars if missing, write conf, launch in background, wait until
#           CQL answers and the node logged that it listens for CQL clients.
#           Idempotent: a running node that answers => no-op, exit 0.
#   stop    SIGTERM (SIGCONT first, in case it is paused), wait, SIGKILL after
#           CASSANDRA_STOP_TIMEOUT. Idempotent.
#   restart stop, then start: the way to change CASSANDRA_COMMITLOG_SYNC (or any
#           other setting) of a running node.
#   status  exit 0 if running and answering CQL, 3 if not running, 1 if the
#           process is alive but not answering (starting, paused or wedged).
#           A running node's line ends with its "commitlog_sync <mode>".
#   kill9   SIGKILL (crash test). Idempotent.
#   pause   SIGSTOP (fault test: node hangs, TCP connections stay open).
#   resume  SIGCONT.
#   logs    print the last N (default 50) lines of system.log.
#   wipe    stop, then delete data/ and log/ (jars and conf are kept).
#   env     print the effective settings.
#   pid     print the node's pid (exit 3 if it is not running).
#   nodetool ARGS  run Cassandra's nodetool against the node (needs JMX:
#           CASSANDRA_JMX_PORT, always on in ring mode), e.g. nodetool status.
#
# Everything lives under one directory (git-ignored), default $REPO/.cassandra:
#   lib/ conf/ data/ log/ cassandra.pid
#
# Environment:
#   CASSANDRA_HOME_DIR        base directory            (default $REPO/.cassandra)
#   CASSANDRA_PORT            CQL native port           (default 9042)
#   CASSANDRA_STORAGE_PORT    internode storage port    (default 7000)
#   CASSANDRA_LISTEN_ADDRESS  listen/rpc address        (default 127.0.0.1)
#   CASSANDRA_HEAP            -Xms/-Xmx value           (default 512M)
#   CASSANDRA_JMX_PORT        if set, local-only JMX on this port (nodetool)
#   CASSANDRA_START_TIMEOUT   seconds to wait for ready (default 180)
#   CASSANDRA_STOP_TIMEOUT    seconds before SIGKILL    (default 60)
#   CASSANDRA_JAVA            java binary to use        (default: JAVA_HOME, PATH, /usr/lib/jvm/java-17*)
#   CASSANDRA_JVM_EXTRA_OPTS  extra JVM options (word-split), e.g. -XX:TieredStopAtLevel=1
#                             (C1 only: about 1/3 less CPU to start, slower steady state)
#   CASSANDRA_LIB_DIR         the jars                  (default $CASSANDRA_HOME_DIR/lib;
#                             a second node can share the first one's)
#   CASSANDRA_SECURE          1: clients must log in (PasswordAuthenticator, the
#                             default superuser cassandra/cassandra) and speak TLS
#                             (client_encryption_options, a self-signed certificate
#                             for $CASSANDRA_LISTEN_ADDRESS made with keytool; its PEM
#                             is conf/node.pem, the CA for clients)
#   CASSANDRA_COMMITLOG_SYNC  periodic (default, like production: a SIGKILL loses acked
#                             writes of the last CASSANDRA_COMMITLOG_SYNC_PERIOD, 10000ms),
#                             batch (fsync before ack: kill9 loses nothing acked; slower),
#                             group (CASSANDRA_COMMITLOG_SYNC_WINDOW, default 10ms)
#   CASSANDRA_CLUSTER_NAME    cluster_name              (default readstates-local;
#                             ring mode: readstates-ring)
#   CASSANDRA_SEEDS           seeds, host:port,...      (default this node; ring mode: all)
#   CASSANDRA_NUM_TOKENS      num_tokens                (default 1)
#   CASSANDRA_INITIAL_TOKEN   initial_token, used at the first start only (default none:
#                             random; ring mode: evenly spaced)
#   CASSANDRA_AUTO_BOOTSTRAP  auto_bootstrap            (default unset: Cassandra's true;
#                             ring mode: false)
#
# Ring mode (CASSANDRA_NODES=N, N > 1): N nodes, each a single node of the above
# with its own home, conf, log, pid file and JMX port, all seeds of each other,
# with evenly spaced initial tokens and no bootstrap (a fresh ring of seeds has
# nothing to stream), started in parallel. Every command acts on all nodes, or
# on node CASSANDRA_NODE (1..N) only (pid prints "node<i> <pid>" lines, logs
# each node's log). start waits until every node answers CQL
# and then until every running node sees every running node Up/Normal
# (nodetool status over JMX). The single-node variables above (CASSANDRA_PORT,
# CASSANDRA_STORAGE_PORT, CASSANDRA_HEAP, CASSANDRA_COMMITLOG_SYNC, ...) apply
# to every node; CASSANDRA_SECURE=1 is single-node only. Ring variables:
#   CASSANDRA_NODES           number of nodes           (default 1: single-node mode)
#   CASSANDRA_NODE            act on this node only (1..N; start waits for the ring)
#   CASSANDRA_RING_ADDRESSES  listen/rpc addresses, comma-separated, one per node
#                             (default 127.0.0.1,...,127.0.0.N); every node uses
#                             CASSANDRA_PORT and CASSANDRA_STORAGE_PORT on its own
#   CASSANDRA_RING_DIR        the nodes' homes are node1..nodeN under it
#                             (default $CASSANDRA_HOME_DIR/ring); a start with other
#                             addresses or N than the last one wipes their data
#   CASSANDRA_RING_JMX_PORT   JMX (127.0.0.1) of node 1; node i uses it + i - 1 (default 7201)
#   CASSANDRA_RING_TIMEOUT    seconds to wait for the ring to agree after every
#                             node answers (default 120)
#   CASSANDRA_RING_JVM_OPTS   JVM options of every node, before CASSANDRA_JVM_EXTRA_OPTS
#                             (default "-XX:TieredStopAtLevel=1
#                             -Dcassandra.memtable.row_overhead_size=180": C1 only, a
#                             fresh node of a 3-node ring starts on 9-11 CPU-seconds
#                             instead of 20-27 (which decides how long N nodes take on
#                             2 cores) and serves a test's load on less CPU too; and the
#                             memtable row overhead this JVM measures (180 bytes) given,
#                             not measured at every start by a loop that takes 5-14 s
#                             without C2; set it empty for Cassandra's defaults)
#   The jars are shared: CASSANDRA_LIB_DIR (default $CASSANDRA_HOME_DIR/lib).
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
REPO_ROOT="$(cd "$SCRIPT_DIR/../.." && pwd -P)"
POM="$SCRIPT_DIR/pom.xml"

HOME_DIR="${CASSANDRA_HOME_DIR:-$REPO_ROOT/.cassandra}"
# Absolute, so the yaml, the config URL and the pid check never depend on cwd.
HOME_DIR="$(mkdir -p "$HOME_DIR" && cd "$HOME_DIR" && pwd -P)"
CQL_PORT="${CASSANDRA_PORT:-9042}"
STORAGE_PORT="${CASSANDRA_STORAGE_PORT:-7000}"
LISTEN_ADDR="${CASSANDRA_LISTEN_ADDRESS:-127.0.0.1}"
HEAP="${CASSANDRA_HEAP:-512M}"
JMX_PORT="${CASSANDRA_JMX_PORT:-}"
START_TIMEOUT="${CASSANDRA_START_TIMEOUT:-180}"
CLUSTER_NAME="${CASSANDRA_CLUSTER_NAME:-readstates-local}"
SEEDS="${CASSANDRA_SEEDS:-}"
NUM_TOKENS="${CASSANDRA_NUM_TOKENS:-1}"
INITIAL_TOKEN="${CASSANDRA_INITIAL_TOKEN:-}"
AUTO_BOOTSTRAP="${CASSANDRA_AUTO_BOOTSTRAP:-}"
STOP_TIMEOUT="${CASSANDRA_STOP_TIMEOUT:-60}"
COMMITLOG_SYNC="${CASSANDRA_COMMITLOG_SYNC:-periodic}"

LIB_DIR="${CASSANDRA_LIB_DIR:-$HOME_DIR/lib}"
SECURE="${CASSANDRA_SECURE:-0}"
CONF_DIR="$HOME_DIR/conf"
DATA_DIR="$HOME_DIR/data"
LOG_DIR="$HOME_DIR/log"
PID_FILE="$HOME_DIR/cassandra.pid"
LOCK_FILE="$HOME_DIR/.lock"
SYSTEM_LOG="$LOG_DIR/system.log"
STDOUT_LOG="$LOG_DIR/stdout.log"
# Logged by CassandraDaemon after 'Starting listening for CQL clients on ...'.
READY_RE='Startup complete'

log() { printf '[cassandra.sh] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# ---------------------------------------------------------------- java

java_major() { # $1 = java binary; prints the feature version (e.g. 17)
  local v
  v="$("$1" -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java.specification.version = //p' | head -n1)"
  v="${v#1.}"
  printf '%s' "${v%%.*}"
}

find_java() {
  local cands=() c m
  [[ -n "${CASSANDRA_JAVA:-}" ]] && cands+=("$CASSANDRA_JAVA")
  [[ -n "${JAVA_HOME:-}" && -x "${JAVA_HOME}/bin/java" ]] && cands+=("$JAVA_HOME/bin/java")
  command -v java >/dev/null 2>&1 && cands+=("$(command -v java)")
  for c in /usr/lib/jvm/java-17-*/bin/java /usr/lib/jvm/*-17-*/bin/java /usr/lib/jvm/java-11-*/bin/java; do
    [[ -x "$c" ]] && cands+=("$c")
  done
  for c in "${cands[@]}"; do
    m="$(java_major "$c" 2>/dev/null || true)"
    # Cassandra 5.0 supports Java 11 and 17 (18-23 work with the security manager flag).
    if [[ "$m" =~ ^[0-9]+$ ]] && (( m >= 11 && m <= 23 )); then
      JAVA_BIN="$c"; JAVA_MAJOR="$m"; return 0
    fi
  done
  die "no usable Java (11..17 preferred) found; tried: ${cands[*]:-none}. Set CASSANDRA_JAVA."
}

# ---------------------------------------------------------------- jars

pom_stamp() { sha256sum "$POM" | cut -d' ' -f1; }

ensure_jars() {
  local stamp_file="$LIB_DIR/.complete" want
  want="$(pom_stamp)"
  if [[ -f "$stamp_file" && "$(cat "$stamp_file")" == "$want" ]] && compgen -G "$LIB_DIR/cassandra-all-*.jar" >/dev/null; then
    return 0
  fi
  command -v mvn >/dev/null 2>&1 || die "mvn not found (needed once to fetch the Cassandra jars)"
  log "fetching Cassandra jars with Maven into $LIB_DIR ..."
  local tmp="$HOME_DIR/lib.tmp.$$"
  rm -rf "$tmp"; mkdir -p "$tmp"
  if ! (cd "$SCRIPT_DIR" && mvn -B -q -Dstyle.color=never -f "$POM" dependency:copy-dependencies \
        -DincludeScope=runtime -DoutputDirectory="$tmp" >"$HOME_DIR/mvn.log" 2>&1); then
    cat "$HOME_DIR/mvn.log" >&2
    rm -rf "$tmp"; die "mvn dependency:copy-dependencies failed (output above, also in $HOME_DIR/mvn.log)"
  fi
  compgen -G "$tmp/cassandra-all-*.jar" >/dev/null || { rm -rf "$tmp"; die "cassandra-all jar missing after mvn"; }
  printf '%s\n' "$want" >"$tmp/.complete"
  rm -rf "$LIB_DIR"; mv "$tmp" "$LIB_DIR"
  log "jars ready: $(find "$LIB_DIR" -name '*.jar' | wc -l) jars"
}

# ---------------------------------------------------------------- conf

# periodic: ack before fsync; a SIGKILL loses up to one period of acked writes
#           (replay stops at the last sync marker). Measured here: yes, it does.
# batch:    fsync before every ack; nothing acked is lost on SIGKILL.
# group:    fsync every window, acks wait for it; nothing acked is lost.
commitlog_yaml() {
  case "$COMMITLOG_SYNC" in
    periodic) printf 'commitlog_sync: periodic\ncommitlog_sync_period: %s\n' "${CASSANDRA_COMMITLOG_SYNC_PERIOD:-10000ms}" ;;
    batch)    printf 'commitlog_sync: batch\n' ;;
    group)    printf 'commitlog_sync: group\ncommitlog_sync_group_window: %s\n' "${CASSANDRA_COMMITLOG_SYNC_WINDOW:-10ms}" ;;
    *) die "CASSANDRA_COMMITLOG_SYNC must be periodic, batch or group (got '$COMMITLOG_SYNC')" ;;
  esac
}

# The keystore and its certificate (PEM), made once per home directory.
KEYSTORE="$CONF_DIR/node.p12"
KEYSTORE_PASS=readstates-test
NODE_PEM="$CONF_DIR/node.pem"

make_keystore() {
  [[ -f "$KEYSTORE" && -f "$NODE_PEM" ]] && return 0
  local keytool
  keytool="$(dirname "$(readlink -f "$(command -v "$JAVA_BIN")")")/keytool"
  [[ -x "$keytool" ]] || die "no keytool next to $JAVA_BIN"
  rm -f "$KEYSTORE" "$NODE_PEM"
  "$keytool" -genkeypair -alias node -keyalg RSA -keysize 2048 -validity 3650 \
    -dname "CN=$LISTEN_ADDR" -ext "san=ip:$LISTEN_ADDR" \
    -keystore "$KEYSTORE" -storetype PKCS12 -storepass "$KEYSTORE_PASS" -keypass "$KEYSTORE_PASS" >/dev/null 2>&1 ||
    die "keytool could not make $KEYSTORE"
  "$keytool" -exportcert -rfc -alias node -keystore "$KEYSTORE" -storepass "$KEYSTORE_PASS" -file "$NODE_PEM" >/dev/null 2>&1 ||
    die "keytool could not export $NODE_PEM"
}

security_yaml() {
  if [[ "$SECURE" != 1 ]]; then
    printf 'authenticator: AllowAllAuthenticator\nauthorizer: AllowAllAuthorizer\n'
    return
  fi
  cat <<YAML
authenticator: PasswordAuthenticator
authorizer: CassandraAuthorizer
client_encryption_options:
  enabled: true
  optional: false
  keystore: $KEYSTORE
  keystore_password: $KEYSTORE_PASS
  store_type: PKCS12
  require_client_auth: false
YAML
}

# Lines for a node of a ring (none for a single node), each after a newline.
ring_yaml() {
  [[ -n "$INITIAL_TOKEN" ]] && printf '\ninitial_token: %s' "$INITIAL_TOKEN"
  [[ -n "$AUTO_BOOTSTRAP" ]] && printf '\nauto_bootstrap: %s' "$AUTO_BOOTSTRAP"
  return 0
}

write_conf() {
  commitlog_yaml >/dev/null   # validate CASSANDRA_COMMITLOG_SYNC here, not inside $(...)
  if [[ "$SECURE" == 1 ]]; then mkdir -p "$CONF_DIR"; make_keystore; fi
  mkdir -p "$CONF_DIR" "$CONF_DIR/triggers" "$DATA_DIR/data" "$DATA_DIR/commitlog" "$DATA_DIR/saved_caches" \
           "$DATA_DIR/hints" "$DATA_DIR/cdc_raw" "$LOG_DIR"
  cat >"$CONF_DIR/cassandra.yaml.tmp" <<EOF
# Written by scripts/cassandra/cassandra.sh on every start; edits are overwritten.
# Lean single-node settings for a 2-core dev/test machine.
cluster_name: '$CLUSTER_NAME'
num_tokens: $NUM_TOKENS$(ring_yaml)
partitioner: org.apache.cassandra.dht.Murmur3Partitioner
endpoint_snitch: SimpleSnitch
seed_provider:
  - class_name: org.apache.cassandra.locator.SimpleSeedProvider
    parameters:
      - seeds: "${SEEDS:-$LISTEN_ADDR:$STORAGE_PORT}"
listen_address: $LISTEN_ADDR
rpc_address: $LISTEN_ADDR
storage_port: $STORAGE_PORT
native_transport_port: $CQL_PORT
start_native_transport: true

data_file_directories:
  - $DATA_DIR/data
commitlog_directory: $DATA_DIR/commitlog
saved_caches_directory: $DATA_DIR/saved_caches
hints_directory: $DATA_DIR/hints
cdc_raw_directory: $DATA_DIR/cdc_raw

$(commitlog_yaml)
commitlog_segment_size: 32MiB
commitlog_total_space: 512MiB

$(security_yaml)
auto_snapshot: false
snapshot_before_compaction: false
hinted_handoff_enabled: false
cdc_enabled: false

concurrent_reads: 4
concurrent_writes: 4
concurrent_counter_writes: 4
concurrent_materialized_view_writes: 2
concurrent_compactors: 1
compaction_throughput: 64MiB/s
native_transport_max_threads: 32

memtable_heap_space: 64MiB
memtable_offheap_space: 64MiB
key_cache_size: 16MiB
counter_cache_size: 0MiB
file_cache_size: 32MiB
prepared_statements_cache_size: 8MiB
index_summary_capacity: 8MiB
EOF
  mv "$CONF_DIR/cassandra.yaml.tmp" "$CONF_DIR/cassandra.yaml"

  cat >"$CONF_DIR/logback.xml.tmp" <<'EOF'
<!-- Written by scripts/cassandra/cassandra.sh. INFO to a size-capped file; no console. -->
<configuration scan="false">
  <appender name="FILE" class="ch.qos.logback.core.rolling.RollingFileAppender">
    <file>${cassandra.logdir}/system.log</file>
    <rollingPolicy class="ch.qos.logback.core.rolling.FixedWindowRollingPolicy">
      <fileNamePattern>${cassandra.logdir}/system.log.%i</fileNamePattern>
      <minIndex>1</minIndex>
      <maxIndex>3</maxIndex>
    </rollingPolicy>
    <triggeringPolicy class="ch.qos.logback.core.rolling.SizeBasedTriggeringPolicy">
      <maxFileSize>20MB</maxFileSize>
    </triggeringPolicy>
    <encoder>
      <pattern>%-5level [%thread] %date{ISO8601} %F:%L - %msg%n</pattern>
    </encoder>
  </appender>
  <root level="INFO">
    <appender-ref ref="FILE"/>
  </root>
</configuration>
EOF
  mv "$CONF_DIR/logback.xml.tmp" "$CONF_DIR/logback.xml"
}

# ---------------------------------------------------------------- process

# pid of our node if the pid file names a live Cassandra of THIS home dir.
node_pid() {
  [[ -f "$PID_FILE" ]] || return 1
  local pid
  pid="$(tr -dc '0-9' <"$PID_FILE")"
  [[ -n "$pid" ]] || return 1
  [[ -r "/proc/$pid/cmdline" ]] || return 1
  local cmd
  cmd="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null || true)"
  [[ "$cmd" == *CassandraDaemon* && "$cmd" == *"$CONF_DIR"* ]] || return 1
  proc_alive "$pid" || return 1
  printf '%s' "$pid"
}

# A running node keeps the ports it was started with, whatever the env says now.
adopt_running_port() {
  local p
  p="$(sed -n 's/^native_transport_port: *\([0-9]*\).*/\1/p' "$CONF_DIR/cassandra.yaml" 2>/dev/null | head -n1)"
  if [[ -n "$p" && "$p" != "$CQL_PORT" ]]; then
    log "note: the running node of $HOME_DIR listens on CQL port $p (not $CQL_PORT)"
    CQL_PORT="$p"
  fi
}

port_open() { # $1 = port
  timeout 2 bash -c "exec 3<>/dev/tcp/$LISTEN_ADDR/$1" 2>/dev/null
}

# Send a native-protocol v4 OPTIONS frame and expect a SUPPORTED response
# (response version byte 0x84, opcode 0x06). Proves the CQL layer answers.
cql_answers() {
  if [[ "$SECURE" == 1 ]]; then
    # The plaintext probe below cannot speak TLS: a verified TLS handshake
    # shows the native transport is up.
    timeout 3 openssl s_client -connect "$LISTEN_ADDR:$CQL_PORT" -CAfile "$NODE_PEM" -verify_return_error </dev/null >/dev/null 2>&1
    return
  fi
  timeout 3 bash -c '
    exec 3<>"/dev/tcp/$0/$1" || exit 1
    printf "\x04\x00\x00\x01\x05\x00\x00\x00\x00" >&3
    hdr="$(head -c 9 <&3 | od -An -tx1 | tr -d " \n")"
    [[ "${hdr:0:2}" == "84" && "${hdr:8:2}" == "06" ]]
  ' "$LISTEN_ADDR" "$CQL_PORT" 2>/dev/null
}

proc_state() { awk '{print $3}' "/proc/$1/stat" 2>/dev/null || true; }

# True while any thread of the process still runs. After SIGKILL a JVM's main
# thread shows as zombie (Z) while its other threads are still being torn
# down and its sockets are still open, so "Z" alone does not mean gone.
proc_alive() {
  kill -0 "$1" 2>/dev/null || return 1
  [[ "$(proc_state "$1")" == "Z" ]] || return 0
  local n
  n="$(find "/proc/$1/task" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)"
  (( n > 1 ))
}

wait_gone() { # $1 pid, $2 seconds; returns 0 if gone
  local pid="$1" deadline=$(( SECONDS + $2 ))
  while proc_alive "$pid"; do
    (( SECONDS >= deadline )) && return 1
    sleep 0.2
  done
  return 0
}

wait_port_free() { # $1 port, $2 seconds; returns 0 once nothing accepts on it
  local deadline=$(( SECONDS + $2 ))
  while port_open "$1"; do
    (( SECONDS >= deadline )) && return 1
    sleep 0.5
  done
  return 0
}

jvm_opts() {
  local o=(
    "-Xms$HEAP" "-Xmx$HEAP" -Xss256k
    -XX:+UseG1GC -XX:+ParallelRefProcEnabled -XX:MaxTenuringThreshold=1 -XX:MaxGCPauseMillis=300
    -XX:+ExitOnOutOfMemoryError "-XX:ErrorFile=$LOG_DIR/hs_err_%p.log"
    -XX:+PerfDisableSharedMem
    # Java 17 module access Cassandra 5.0 needs (conf/jvm17-server.options + cassandra-unit's list).
    --add-exports=java.base/jdk.internal.misc=ALL-UNNAMED
    --add-exports=java.base/jdk.internal.ref=ALL-UNNAMED
    --add-exports=java.base/sun.nio.ch=ALL-UNNAMED
    --add-exports=java.management.rmi/com.sun.jmx.remote.internal.rmi=ALL-UNNAMED
    --add-exports=java.management/com.sun.jmx.remote.security=ALL-UNNAMED
    --add-exports=java.rmi/sun.rmi.registry=ALL-UNNAMED
    --add-exports=java.rmi/sun.rmi.server=ALL-UNNAMED
    --add-exports=java.sql/java.sql=ALL-UNNAMED
    --add-exports=java.base/java.lang.ref=ALL-UNNAMED
    --add-exports=jdk.unsupported/sun.misc=ALL-UNNAMED
    --add-opens=java.base/java.lang.module=ALL-UNNAMED
    --add-opens=java.base/jdk.internal.loader=ALL-UNNAMED
    --add-opens=java.base/jdk.internal.ref=ALL-UNNAMED
    --add-opens=java.base/jdk.internal.reflect=ALL-UNNAMED
    --add-opens=java.base/jdk.internal.math=ALL-UNNAMED
    --add-opens=java.base/jdk.internal.module=ALL-UNNAMED
    --add-opens=java.base/jdk.internal.util.jar=ALL-UNNAMED
    --add-opens=java.base/sun.nio.ch=ALL-UNNAMED
    --add-opens=java.base/java.io=ALL-UNNAMED
    --add-opens=java.base/java.lang.reflect=ALL-UNNAMED
    --add-opens=java.base/java.lang=ALL-UNNAMED
    --add-opens=java.base/java.util=ALL-UNNAMED
    --add-opens=java.base/java.nio=ALL-UNNAMED
    --add-opens=jdk.management/com.sun.management.internal=ALL-UNNAMED
    -Djdk.attach.allowAttachSelf=true
    -Djava.net.preferIPv4Stack=true
    -Dio.netty.tryReflectionSetAccessible=true
    -Dio.netty.allocator.useCacheForAllThreads=true
    -Dio.netty.allocator.maxOrder=11
    -Dchronicle.analytics.disable=true
    "-Dcassandra.config=file://$CONF_DIR/cassandra.yaml"
    "-Dcassandra.storagedir=$DATA_DIR"
    "-Dcassandra.logdir=$LOG_DIR"
    "-Dcassandra.triggers_dir=$CONF_DIR/triggers"
    "-Xlog:gc:file=$LOG_DIR/gc.log:time,uptime:filecount=3,filesize=10M"
    "-Dlogback.configurationFile=$CONF_DIR/logback.xml"
    -Dcassandra-foreground=yes
    -Dcassandra.skip_wait_for_gossip_to_settle=0
    -Dcassandra.ring_delay_ms=1000
  )
  if (( JAVA_MAJOR >= 18 )); then o+=(-Djava.security.manager=allow); fi
  local jamm
  jamm="$(compgen -G "$LIB_DIR/jamm-*.jar" | head -n1 || true)"
  [[ -n "$jamm" ]] && o+=("-javaagent:$jamm")
  if [[ -n "$JMX_PORT" ]]; then
    o+=("-Dcassandra.jmx.local.port=$JMX_PORT")
  fi
  # shellcheck disable=SC2206
  [[ -n "${CASSANDRA_JVM_EXTRA_OPTS:-}" ]] && o+=(${CASSANDRA_JVM_EXTRA_OPTS})
  printf '%s\n' "${o[@]}"
}

# Last N lines of what this start wrote (system.log and the JVM's stdout/stderr).
tail_log() {
  local n="${1:-50}"
  if [[ -f "$SYSTEM_LOG" ]]; then
    log "last $n lines of $SYSTEM_LOG (this start):"
    tail -c +"$(( ${LOG_OFFSET:-0} + 1 ))" "$SYSTEM_LOG" | tail -n "$n" >&2
  fi
  if [[ -s "$STDOUT_LOG" ]]; then
    log "last $n lines of $STDOUT_LOG (this start):"
    tail -c +"$(( ${OUT_OFFSET:-0} + 1 ))" "$STDOUT_LOG" | tail -n "$n" >&2
  fi
}

with_lock() {
  mkdir -p "$HOME_DIR"
  exec 9>"$LOCK_FILE"
  flock -w 600 9 || die "could not lock $LOCK_FILE"
}

# ---------------------------------------------------------------- commands

cmd_start() {
  with_lock
  local pid
  if pid="$(node_pid)"; then
    adopt_running_port
    if cql_answers; then
      log "already running (pid $pid) and answering on $LISTEN_ADDR:$CQL_PORT"
      return 0
    fi
    if [[ "$(proc_state "$pid")" == "T" ]]; then
      die "node (pid $pid) is paused (SIGSTOP); run '$0 resume' or '$0 stop'"
    fi
    log "node (pid $pid) is alive but not answering yet; waiting for it"
  else
    rm -f "$PID_FILE"
    # A node killed a moment ago may still hold its ports while exiting.
    if ! wait_port_free "$CQL_PORT" 10; then
      die "port $LISTEN_ADDR:$CQL_PORT is already in use by another process (not the node of $HOME_DIR)"
    fi
    if ! wait_port_free "$STORAGE_PORT" 10; then
      die "storage port $LISTEN_ADDR:$STORAGE_PORT is already in use by another process"
    fi
    find_java
    ensure_jars
    write_conf
    local opts=()
    mapfile -t opts < <(jvm_opts)
    touch "$SYSTEM_LOG" "$STDOUT_LOG"
    LOG_OFFSET="$(stat -c %s "$SYSTEM_LOG")"
    OUT_OFFSET="$(stat -c %s "$STDOUT_LOG")"
    log "starting Cassandra (java $JAVA_MAJOR, heap $HEAP) on $LISTEN_ADDR:$CQL_PORT, home $HOME_DIR"
    printf '\n===== start %s =====\n' "$(date -Is)" >>"$STDOUT_LOG"
    # setsid: own session, so Ctrl-C / the caller's process group do not hit it.
    (cd "$HOME_DIR" && exec setsid nohup "$JAVA_BIN" "${opts[@]}" \
        -cp "$CONF_DIR:$LIB_DIR/*" org.apache.cassandra.service.CassandraDaemon \
        </dev/null >>"$STDOUT_LOG" 2>&1 9>&-) &
    pid=$!
    printf '%s\n' "$pid" >"$PID_FILE"
  fi
  : "${LOG_OFFSET:=0}" "${OUT_OFFSET:=0}"

  local t0=$SECONDS deadline=$(( SECONDS + START_TIMEOUT )) logged=0
  while :; do
    if ! proc_alive "$pid"; then
      wait "$pid" 2>/dev/null || true
      rm -f "$PID_FILE"
      log "Cassandra process $pid exited during startup"
      tail_log 50
      exit 1
    fi
    if (( !logged )) && tail -c +"$(( LOG_OFFSET + 1 ))" "$SYSTEM_LOG" 2>/dev/null | grep -q "$READY_RE"; then
      logged=1
    fi
    if (( logged )) && cql_answers; then
      log "ready after $(( SECONDS - t0 ))s (pid $pid, CQL $LISTEN_ADDR:$CQL_PORT)"
      return 0
    fi
    if (( SECONDS >= deadline )); then
      log "not ready after ${START_TIMEOUT}s; stopping pid $pid so no half-started node is left behind"
      tail_log 50
      kill -CONT "$pid" 2>/dev/null || true
      kill -TERM "$pid" 2>/dev/null || true
      wait_gone "$pid" 20 || kill -KILL "$pid" 2>/dev/null || true
      wait_gone "$pid" 10 || true
      rm -f "$PID_FILE"
      exit 1
    fi
    sleep 0.5
  done
}

cmd_stop() {
  with_lock
  local pid
  if ! pid="$(node_pid)"; then
    rm -f "$PID_FILE"; log "not running"; return 0
  fi
  kill -CONT "$pid" 2>/dev/null || true   # a paused JVM cannot handle SIGTERM
  kill -TERM "$pid" 2>/dev/null || true
  log "SIGTERM sent to $pid, waiting up to ${STOP_TIMEOUT}s"
  if ! wait_gone "$pid" "$STOP_TIMEOUT"; then
    log "still alive after ${STOP_TIMEOUT}s; SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    wait_gone "$pid" 30 || die "pid $pid survived SIGKILL"
  fi
  rm -f "$PID_FILE"
  log "stopped"
}

cmd_kill9() {
  with_lock
  local pid
  if ! pid="$(node_pid)"; then
    rm -f "$PID_FILE"; log "not running"; return 0
  fi
  kill -KILL "$pid" 2>/dev/null || true
  wait_gone "$pid" 30 || die "pid $pid survived SIGKILL"
  rm -f "$PID_FILE"
  log "killed (SIGKILL) $pid"
}

cmd_signal() { # $1 = STOP|CONT
  local pid
  pid="$(node_pid)" || die "not running"
  kill "-$1" "$pid"
  log "SIG$1 sent to $pid"
}

cmd_status() {
  local pid
  if ! pid="$(node_pid)"; then
    echo "stopped"; return 3
  fi
  if [[ "$(proc_state "$pid")" == "T" ]]; then
    echo "paused (pid $pid)"; return 1
  fi
  adopt_running_port 2>/dev/null
  if cql_answers; then
    local rss
    rss="$(awk '/^VmRSS/ {print $2" "$3}' "/proc/$pid/status" 2>/dev/null || true)"
    local sync
    sync="$(sed -n 's/^commitlog_sync: *\([a-z]*\).*/\1/p' "$CONF_DIR/cassandra.yaml" 2>/dev/null | head -n1)"
    echo "running (pid $pid, CQL $LISTEN_ADDR:$CQL_PORT, RSS $rss, commitlog_sync ${sync:-unknown})"; return 0
  fi
  echo "alive but not answering CQL (pid $pid)"; return 1
}

cmd_wipe() {
  cmd_stop
  rm -rf "$DATA_DIR" "$LOG_DIR"
  log "wiped $DATA_DIR and $LOG_DIR"
}

cmd_env() {
  cat <<EOF
CASSANDRA_HOME_DIR=$HOME_DIR
CASSANDRA_PORT=$CQL_PORT
CASSANDRA_STORAGE_PORT=$STORAGE_PORT
CASSANDRA_LISTEN_ADDRESS=$LISTEN_ADDR
CASSANDRA_HEAP=$HEAP
CASSANDRA_JMX_PORT=$JMX_PORT
CASSANDRA_START_TIMEOUT=$START_TIMEOUT
CASSANDRA_STOP_TIMEOUT=$STOP_TIMEOUT
CASSANDRA_COMMITLOG_SYNC=$COMMITLOG_SYNC
CASSANDRA_LIB_DIR=$LIB_DIR
CASSANDRA_SECURE=$SECURE
CASSANDRA_CLUSTER_NAME=$CLUSTER_NAME
CASSANDRA_SEEDS=${SEEDS:-$LISTEN_ADDR:$STORAGE_PORT}
CASSANDRA_NUM_TOKENS=$NUM_TOKENS
CASSANDRA_INITIAL_TOKEN=$INITIAL_TOKEN
CASSANDRA_AUTO_BOOTSTRAP=$AUTO_BOOTSTRAP
EOF
}

cmd_pid() {
  local pid
  pid="$(node_pid)" || { echo "stopped"; return 3; }
  echo "$pid"
}

# A running node keeps the JMX port it was started with.
adopt_running_jmx_port() {
  local pid p
  pid="$(node_pid)" || return 0
  p="$(tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null | sed -n 's/^-Dcassandra\.jmx\.local\.port=//p' | head -n1)"
  [[ -n "$p" ]] && JMX_PORT="$p"
  return 0
}

# nodetool (org.apache.cassandra.tools.NodeTool of the node's jars) over the
# node's local JMX port: a small client JVM, quiet unless something fails
# (its history file goes to the node's home, not ~/.cassandra).
cmd_nodetool() {
  adopt_running_jmx_port
  [[ -n "$JMX_PORT" ]] || die "nodetool needs JMX: start the node with CASSANDRA_JMX_PORT set (ring mode always does)"
  find_java
  mkdir -p "$CONF_DIR"
  local lb="$CONF_DIR/logback-tools.xml"
  if [[ ! -f "$lb" ]]; then
    cat >"$lb.tmp.$$" <<'EOF'
<!-- Written by scripts/cassandra/cassandra.sh: nodetool logs warnings to stderr. -->
<configuration scan="false">
  <appender name="STDERR" class="ch.qos.logback.core.ConsoleAppender">
    <target>System.err</target>
    <encoder><pattern>%-5level %msg%n</pattern></encoder>
  </appender>
  <root level="WARN"><appender-ref ref="STDERR"/></root>
</configuration>
EOF
    mv "$lb.tmp.$$" "$lb"
  fi
  "$JAVA_BIN" -Xms32m -Xmx256m -Xss512k -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Xshare:auto \
    -XX:+PerfDisableSharedMem -Djava.net.preferIPv4Stack=true \
    --add-exports=java.base/jdk.internal.misc=ALL-UNNAMED --add-exports=java.base/jdk.internal.ref=ALL-UNNAMED \
    --add-exports=java.base/sun.nio.ch=ALL-UNNAMED --add-opens=java.base/sun.nio.ch=ALL-UNNAMED \
    --add-exports=java.rmi/sun.rmi.registry=ALL-UNNAMED --add-exports=java.rmi/sun.rmi.server=ALL-UNNAMED \
    "-Duser.home=$HOME_DIR" \
    "-Dlogback.configurationFile=$lb" "-Dcassandra.logdir=$LOG_DIR" "-Dcassandra.storagedir=$DATA_DIR" \
    -cp "$LIB_DIR/*" org.apache.cassandra.tools.NodeTool -h 127.0.0.1 -p "$JMX_PORT" "$@"
}

# ---------------------------------------------------------------- ring mode

# The script runs each node of a ring as a single node: itself, with the
# node's variables (ring_node_env) and CASSANDRA_NODES=1.

NODES="${CASSANDRA_NODES:-1}"

ring_init() {
  [[ "$SECURE" != 1 ]] || die "CASSANDRA_SECURE=1 is single-node only"
  RING_DIR="${CASSANDRA_RING_DIR:-$HOME_DIR/ring}"
  RING_DIR="$(mkdir -p "$RING_DIR" && cd "$RING_DIR" && pwd -P)"
  RING_ADDRS=()
  if [[ -n "${CASSANDRA_RING_ADDRESSES:-}" ]]; then
    read -r -a RING_ADDRS <<<"${CASSANDRA_RING_ADDRESSES//,/ }"
  else
    local i
    for (( i = 1; i <= NODES; i++ )); do RING_ADDRS+=("127.0.0.$i"); done
  fi
  (( ${#RING_ADDRS[@]} == NODES )) ||
    die "CASSANDRA_RING_ADDRESSES names ${#RING_ADDRS[@]} addresses, CASSANDRA_NODES is $NODES"
  RING_JMX_BASE="${CASSANDRA_RING_JMX_PORT:-7201}"
  RING_TIMEOUT="${CASSANDRA_RING_TIMEOUT:-120}"
  RING_CLUSTER="${CASSANDRA_CLUSTER_NAME:-readstates-ring}"
  RING_JVM_OPTS="${CASSANDRA_RING_JVM_OPTS--XX:TieredStopAtLevel=1 -Dcassandra.memtable.row_overhead_size=180}"
  local a seeds=()
  for a in "${RING_ADDRS[@]}"; do seeds+=("$a:$STORAGE_PORT"); done
  RING_SEEDS="$(IFS=,; printf '%s' "${seeds[*]}")"
  # Evenly spaced Murmur3 tokens, one per node (summed step by step: no
  # intermediate value leaves the signed 64-bit range).
  RING_TOKENS=()
  local t=$(( -9223372036854775807 - 1 )) step=$(( 9223372036854775807 / NODES * 2 )) i
  for (( i = 0; i < NODES; i++ )); do RING_TOKENS+=("$t"); t=$(( t + step )); done
  RING_SEL=()
  if [[ -n "${CASSANDRA_NODE:-}" ]]; then
    [[ "$CASSANDRA_NODE" =~ ^[0-9]+$ ]] && (( CASSANDRA_NODE >= 1 && CASSANDRA_NODE <= NODES )) ||
      die "CASSANDRA_NODE must be 1..$NODES (got '$CASSANDRA_NODE')"
    RING_SEL=("$CASSANDRA_NODE")
  else
    for (( i = 1; i <= NODES; i++ )); do RING_SEL+=("$i"); done
  fi
}

ring_home() { printf '%s/node%s' "$RING_DIR" "$1"; }

ring_node_env() { # $1 = node (1-based): that node's variables, NAME=value per line
  local i="$1"
  printf '%s\n' \
    CASSANDRA_NODES=1 CASSANDRA_NODE= \
    "CASSANDRA_HOME_DIR=$(ring_home "$i")" \
    "CASSANDRA_LIB_DIR=$LIB_DIR" \
    "CASSANDRA_LISTEN_ADDRESS=${RING_ADDRS[i-1]}" \
    "CASSANDRA_JMX_PORT=$(( RING_JMX_BASE + i - 1 ))" \
    "CASSANDRA_CLUSTER_NAME=$RING_CLUSTER" \
    "CASSANDRA_SEEDS=$RING_SEEDS" \
    "CASSANDRA_INITIAL_TOKEN=${RING_TOKENS[i-1]}" \
    "CASSANDRA_AUTO_BOOTSTRAP=false" \
    "CASSANDRA_JVM_EXTRA_OPTS=$RING_JVM_OPTS${CASSANDRA_JVM_EXTRA_OPTS:+ $CASSANDRA_JVM_EXTRA_OPTS}"
}

ring_node() { # $1 = node, then the script's arguments for it
  local i="$1"; shift
  local envs=()
  mapfile -t envs < <(ring_node_env "$i")
  # shellcheck disable=SC2086
  ${RING_CMD_TIMEOUT:+timeout $RING_CMD_TIMEOUT} env "${envs[@]}" bash "$SCRIPT_DIR/$(basename "${BASH_SOURCE[0]}")" "$@"
}

# Runs one action on the selected nodes at once, each one's output prefixed
# with its name; returns the worst (largest) exit code.
ring_parallel() { # $1 = action
  local i pids=() rc=0 r out
  out="$(mktemp -d "$RING_DIR/.out.XXXXXX")"
  for i in "${RING_SEL[@]}"; do
    ring_node "$i" "$@" >"$out/$i" 2>&1 &
    pids+=("$!")
  done
  for i in "${!pids[@]}"; do
    r=0; wait "${pids[i]}" || r=$?
    sed "s/^/node${RING_SEL[i]} ${RING_ADDRS[RING_SEL[i]-1]}: /" "$out/${RING_SEL[i]}" >&2
    (( r > rc )) && rc=$r
  done
  rm -rf "$out"
  return "$rc"
}

# What a ring's data was made for: a start with anything else wipes it.
ring_layout() {
  printf 'cluster_name=%s\nseeds=%s\ntokens=%s\n' "$RING_CLUSTER" "$RING_SEEDS" "${RING_TOKENS[*]}"
}

ring_running() { # prints the nodes (1-based) whose process is alive
  local i
  for (( i = 1; i <= NODES; i++ )); do
    ring_node "$i" pid >/dev/null 2>&1 && printf '%s\n' "$i"
  done
  return 0
}

ring_check_layout() {
  local f="$RING_DIR/layout" want
  want="$(ring_layout)"
  if [[ -f "$f" && "$(cat "$f")" != "$want" ]]; then
    [[ -z "$(ring_running)" ]] ||
      die "nodes under $RING_DIR run with another layout (addresses, N or cluster name); stop them first (with the old CASSANDRA_NODES and CASSANDRA_RING_ADDRESSES)"
    log "the ring's layout changed (other addresses, N or cluster name): wiping the nodes' data under $RING_DIR"
    local d
    for d in "$RING_DIR"/node*; do [[ -d "$d" ]] && rm -rf "$d/data" "$d/log"; done
  fi
  printf '%s\n' "$want" >"$f"
}

# True once every running node sees every running node Up and Normal (UN)
# in nodetool status; RING_VIEW holds the last view that was not.
ring_agrees() {
  local up=() i j view a
  mapfile -t up < <(ring_running)
  (( ${#up[@]} > 0 )) || { RING_VIEW="no node is running"; return 1; }
  for i in "${up[@]}"; do
    # (A paused node would hold nodetool forever.)
    if ! view="$(RING_CMD_TIMEOUT=60 ring_node "$i" nodetool status 2>&1)"; then
      RING_VIEW="node$i: nodetool status failed: $(tail -n 3 <<<"$view")"
      return 1
    fi
    for j in "${up[@]}"; do
      a="${RING_ADDRS[j-1]}"
      if ! grep -Eq "^UN +${a//./\\.}(:[0-9]+)? " <<<"$view"; then
        RING_VIEW="node$i does not see node$j ($a) Up/Normal yet:"$'\n'"$view"
        return 1
      fi
    done
  done
}

# Fails before anything starts if a selected node that is not running
# would find its CQL or storage port taken (by the single node, say).
ring_check_ports() {
  local i a p deadline
  for i in "${RING_SEL[@]}"; do
    ring_node "$i" pid >/dev/null 2>&1 && continue
    a="${RING_ADDRS[i-1]}"
    for p in "$CQL_PORT" "$STORAGE_PORT"; do
      # A node killed a moment ago may still hold its ports while exiting.
      deadline=$(( SECONDS + 10 ))
      while timeout 2 bash -c "exec 3<>/dev/tcp/$a/$p" 2>/dev/null; do
        (( SECONDS < deadline )) ||
          die "node$i: $a:$p is in use by another process (the single node? stop it, or choose CASSANDRA_RING_ADDRESSES); nothing started"
        sleep 0.5
      done
    done
  done
}

ring_start() {
  local t0=$SECONDS
  ring_check_ports
  ring_check_layout
  # The jars, once, before the nodes start at once (they share them).
  if ! [[ -f "$LIB_DIR/.complete" && "$(cat "$LIB_DIR/.complete")" == "$(pom_stamp)" ]]; then
    ( with_lock; ensure_jars )
  fi
  log "starting node(s) ${RING_SEL[*]} of a $NODES-node ring ($RING_SEEDS; CQL port $CQL_PORT; heap $HEAP each; JMX from 127.0.0.1:$RING_JMX_BASE; homes under $RING_DIR)"
  if ! ring_parallel start; then
    die "a node did not start (its output above; its log: CASSANDRA_NODES=$NODES CASSANDRA_NODE=<n> $0 logs)"
  fi
  local t1=$SECONDS deadline=$(( SECONDS + RING_TIMEOUT ))
  log "node(s) ${RING_SEL[*]} answer CQL after $(( t1 - t0 ))s; waiting until every running node sees every running node UN"
  while ! ring_agrees; do
    if (( SECONDS >= deadline )); then
      log "the ring did not agree within ${RING_TIMEOUT}s: $RING_VIEW"
      die "ring not ready (the nodes keep running; stop them with the same CASSANDRA_NODES)"
    fi
    sleep 1
  done
  log "ring ready after $(( SECONDS - t0 ))s ($(( SECONDS - t1 ))s of it until the nodes saw each other UN); CPU so far: $(ring_cpu)"
}

ring_cpu() { # the CPU seconds each selected node's JVM has used
  local i pid sep=
  for i in "${RING_SEL[@]}"; do
    pid="$(ring_node "$i" pid 2>/dev/null)" || continue
    printf '%snode%s %s' "$sep" "$i" "$(awk -v t="$(getconf CLK_TCK)" '{printf "%.1fs", ($14 + $15) / t}' "/proc/$pid/stat" 2>/dev/null)"
    sep=', '
  done
}

ring_status() {
  local i r rc_all=-1 out
  for i in "${RING_SEL[@]}"; do
    r=0; out="$(ring_node "$i" status 2>/dev/null)" || r=$?
    printf 'node%s %s: %s\n' "$i" "${RING_ADDRS[i-1]}" "$out"
    if (( rc_all == -1 )); then rc_all=$r
    elif (( rc_all != r )); then rc_all=1
    fi
  done
  # 0: all running and answering; 3: all stopped; 1: anything else.
  return "$rc_all"
}

ring_env() {
  cat <<EOF
CASSANDRA_NODES=$NODES
CASSANDRA_NODE=${CASSANDRA_NODE:-}
CASSANDRA_RING_ADDRESSES=$(IFS=,; printf '%s' "${RING_ADDRS[*]}")
CASSANDRA_RING_DIR=$RING_DIR
CASSANDRA_RING_JMX_PORT=$RING_JMX_BASE
CASSANDRA_RING_TIMEOUT=$RING_TIMEOUT
CASSANDRA_CLUSTER_NAME=$RING_CLUSTER
CASSANDRA_RING_JVM_OPTS=$RING_JVM_OPTS
CASSANDRA_JVM_EXTRA_OPTS=${CASSANDRA_JVM_EXTRA_OPTS:-}
CASSANDRA_PORT=$CQL_PORT
CASSANDRA_STORAGE_PORT=$STORAGE_PORT
CASSANDRA_HEAP=$HEAP
CASSANDRA_START_TIMEOUT=$START_TIMEOUT
CASSANDRA_STOP_TIMEOUT=$STOP_TIMEOUT
CASSANDRA_COMMITLOG_SYNC=$COMMITLOG_SYNC
CASSANDRA_LIB_DIR=$LIB_DIR
EOF
  local i
  for i in "${RING_SEL[@]}"; do
    printf 'node%s: home %s, CQL %s:%s, JMX 127.0.0.1:%s, initial_token %s\n' "$i" "$(ring_home "$i")" \
      "${RING_ADDRS[i-1]}" "$CQL_PORT" "$(( RING_JMX_BASE + i - 1 ))" "${RING_TOKENS[i-1]}"
  done
}

ring_pid() {
  local i r rc=0 out
  for i in "${RING_SEL[@]}"; do
    r=0; out="$(ring_node "$i" pid 2>/dev/null)" || r=$?
    printf 'node%s %s\n' "$i" "$out"
    (( r > rc )) && rc=$r
  done
  return "$rc"
}

ring_main() {
  ring_init
  case "${1:-}" in
    start)   ring_start ;;
    stop)    ring_parallel stop ;;
    restart) ring_parallel stop; ring_start ;;
    status)  ring_status ;;
    kill9)   ring_parallel kill9 ;;
    pause)   ring_parallel pause ;;
    resume)  ring_parallel resume ;;
    wipe)    ring_parallel wipe; [[ -n "${CASSANDRA_NODE:-}" ]] || rm -f "$RING_DIR/layout" ;;
    env)     ring_env ;;
    pid)     ring_pid ;;
    logs)
      local i
      for i in "${RING_SEL[@]}"; do
        printf '==> node%s %s <==\n' "$i" "${RING_ADDRS[i-1]}"
        ring_node "$i" logs "${2:-50}" || true
      done ;;
    nodetool) shift; ring_node "${RING_SEL[0]}" nodetool "$@" ;;
    *) echo "usage: CASSANDRA_NODES=N [CASSANDRA_NODE=n] $0 {start|stop|restart|status|kill9|pause|resume|logs [N]|wipe|env|pid|nodetool ARGS}" >&2; exit 2 ;;
  esac
}

[[ "$NODES" =~ ^[1-9][0-9]*$ ]] || die "CASSANDRA_NODES must be a positive number (got '$NODES')"
if (( NODES > 1 )); then
  ring_main "$@"
  exit
fi

case "${1:-}" in
  start)  cmd_start ;;
  stop)   cmd_stop ;;
  restart) cmd_stop; cmd_start ;;
  status) cmd_status ;;
  kill9)  cmd_kill9 ;;
  pause)  cmd_signal STOP ;;
  resume) cmd_signal CONT ;;
  logs)   tail -n "${2:-50}" "$SYSTEM_LOG" ;;
  wipe)   cmd_wipe ;;
  env)    cmd_env ;;
  pid)    cmd_pid ;;
  nodetool) shift; cmd_nodetool "$@" ;;
  *) echo "usage: $0 {start|stop|restart|status|kill9|pause|resume|logs [N]|wipe|env|pid|nodetool ARGS}" >&2; exit 2 ;;
esac
