#!/usr/bin/env bash
# Single-node Apache Kafka 4.x broker (KRaft, combined broker+controller) for
# local development and tests, assembled from Maven Central jars.
# Run `kafka.sh help` for usage.
set -euo pipefail

SCRIPT_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd -- "$SCRIPT_DIR/../.." && pwd)
POM="$SCRIPT_DIR/pom.xml"
LOG_CONFIG="$SCRIPT_DIR/log4j2.properties"
PROG=${0##*/}

usage() {
    cat <<EOF
Usage: $PROG COMMAND [ARGS]

Runs a single-node Apache Kafka broker (KRaft combined mode) on 127.0.0.1.

Commands:
  fetch           download the Kafka jars into the cache (once; no-op when cached)
  start           fetch if needed, format storage if new, start the broker in the
                  background, wait until it answers; prints the bootstrap address
  stop            stop the broker (SIGTERM, SIGKILL after 30 s); quiet if not running
  status          exit 0 if the broker is running and answering
  wait [SECONDS]  block until the broker answers (default: \$DECLIC_KAFKA_TIMEOUT)
  reset           stop the broker and delete its data directory
  logs [LINES]    print the log file path and its last LINES lines (default 50)
  topics ARGS...  run Kafka's TopicCommand against the broker, e.g. \`topics --list\`
  help            show this help

Environment:
  DECLIC_KAFKA_PORT        client port (default 19092); controller uses PORT+1
  DECLIC_KAFKA_CACHE       jar cache (default \${XDG_CACHE_HOME:-\$HOME/.cache}/declic/kafka-VERSION)
  DECLIC_KAFKA_RUN_DIR     data, pid and log files (default <repo>/.run/kafka)
  DECLIC_KAFKA_HEAP        broker heap flags (default "-Xms256m -Xmx768m")
  DECLIC_KAFKA_PARTITIONS  default partitions for new topics (default 4)
  DECLIC_KAFKA_TIMEOUT     seconds to wait for the broker to answer (default 90)
  DECLIC_KAFKA_VERSION     Kafka version (default from pom.xml: $(pom_kafka_version))
  DECLIC_KAFKA_JVM_OPTS    extra broker JVM flags (default "-XX:+UseSerialGC")
  MAVEN_OPTS               passed through to Maven
EOF
}

log() { printf '%s: %s\n' "$PROG" "$*" >&2; }
die() { log "error: $*"; exit 1; }

pom_kafka_version() {
    sed -n 's:.*<kafka\.version>\([^<]*\)</kafka\.version>.*:\1:p' "$POM" | head -n 1
}

# --------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------
KAFKA_VERSION=${DECLIC_KAFKA_VERSION:-$(pom_kafka_version)}
[[ -n $KAFKA_VERSION ]] || die "cannot read <kafka.version> from $POM"
PORT=${DECLIC_KAFKA_PORT:-19092}
if ! [[ $PORT =~ ^[0-9]+$ ]] || ((PORT < 1 || PORT > 65534)); then
    die "DECLIC_KAFKA_PORT must be a port number between 1 and 65534, got '$PORT'"
fi
CONTROLLER_PORT=$((PORT + 1))
BOOTSTRAP="127.0.0.1:$PORT"
CACHE=${DECLIC_KAFKA_CACHE:-${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/declic/kafka-$KAFKA_VERSION}
LIBS="$CACHE/libs"
MARKER="$CACHE/fetched"
RUN_DIR=${DECLIC_KAFKA_RUN_DIR:-$REPO_ROOT/.run/kafka}
DATA_DIR="$RUN_DIR/data"
PID_FILE="$RUN_DIR/kafka.pid"
LOG_FILE="$RUN_DIR/kafka.log"
PROPS="$RUN_DIR/server.properties"
HEAP=${DECLIC_KAFKA_HEAP:--Xms256m -Xmx768m}
JVM_OPTS=${DECLIC_KAFKA_JVM_OPTS:--XX:+UseSerialGC}
PARTITIONS=${DECLIC_KAFKA_PARTITIONS:-4}
[[ $PARTITIONS =~ ^[1-9][0-9]*$ ]] || die "DECLIC_KAFKA_PARTITIONS must be a positive integer, got '$PARTITIONS'"
TIMEOUT=${DECLIC_KAFKA_TIMEOUT:-90}
[[ $TIMEOUT =~ ^[0-9]+$ ]] || die "DECLIC_KAFKA_TIMEOUT must be a number of seconds, got '$TIMEOUT'"
STOP_GRACE=30
JAVA=java
if [[ -n ${JAVA_HOME:-} && -x $JAVA_HOME/bin/java ]]; then
    JAVA="$JAVA_HOME/bin/java"
fi

# --------------------------------------------------------------------------
# Prerequisites (Java 17+, Maven)
# --------------------------------------------------------------------------
APT_UPDATED=0
apt_install() {
    if [[ $(id -u) != 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
        return 1
    fi
    if ((APT_UPDATED == 0)); then
        log "running apt-get update"
        DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 || return 1
        APT_UPDATED=1
    fi
    log "installing $*"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >&2
}

java_major() {
    local line
    line=$("$JAVA" -version 2>&1 | head -n 1) || return 1
    [[ $line =~ \"([0-9]+)(\.([0-9]+))? ]] || return 1
    if [[ ${BASH_REMATCH[1]} == 1 ]]; then
        echo "${BASH_REMATCH[3]}"
    else
        echo "${BASH_REMATCH[1]}"
    fi
}

ensure_java() {
    if ! command -v "$JAVA" >/dev/null 2>&1; then
        apt_install openjdk-17-jre-headless || apt_install default-jre-headless ||
            die "java not found: install a Java 17+ runtime (e.g. openjdk-17-jre-headless) or set JAVA_HOME"
        JAVA=java
    fi
    local major
    major=$(java_major) || die "cannot run '$JAVA -version'"
    ((major >= 17)) || die "Kafka $KAFKA_VERSION needs Java 17 or newer; '$JAVA' is Java $major"
}

ensure_maven() {
    command -v mvn >/dev/null 2>&1 && return 0
    apt_install maven || die "mvn not found: install Apache Maven 3.6+ (e.g. apt-get install maven)"
}

# Serialises concurrent invocations (flock(1) from util-linux, when present).
lock_fd() {
    if command -v flock >/dev/null 2>&1; then flock "$1"; fi
}

# --------------------------------------------------------------------------
# fetch
# --------------------------------------------------------------------------
marker_content() {
    printf 'kafka %s\npom %s\n' "$KAFKA_VERSION" "$(cksum <"$POM" | cut -d' ' -f1)"
}

is_fetched() {
    [[ -f $MARKER && -f $LIBS/kafka_2.13-$KAFKA_VERSION.jar ]] &&
        [[ $(<"$MARKER") == "$(marker_content)" ]]
}

cmd_fetch() {
    is_fetched && return 0
    mkdir -p "$CACHE"
    exec 8>"$CACHE/.lock"
    lock_fd 8
    if is_fetched; then exec 8>&-; return 0; fi
    ensure_maven
    ensure_java
    log "fetching Kafka $KAFKA_VERSION jars from Maven into $LIBS"
    local tmp="$CACHE/libs.tmp.$$" start=$SECONDS
    rm -rf "$tmp"
    if ! mvn -B -q -Dstyle.color=never -f "$POM" "-Dkafka.version=$KAFKA_VERSION" \
        dependency:copy-dependencies -DincludeScope=runtime \
        "-DoutputDirectory=$tmp" 2>&1 | sed 's/\x1b\[[0-9;]*m//g' >&2; then
        rm -rf "$tmp"
        die "Maven could not fetch Kafka $KAFKA_VERSION (see the output above)"
    fi
    [[ -f $tmp/kafka_2.13-$KAFKA_VERSION.jar ]] || { rm -rf "$tmp"; die "Maven did not produce kafka_2.13-$KAFKA_VERSION.jar"; }
    rm -rf "$LIBS"
    mv "$tmp" "$LIBS"
    marker_content >"$MARKER"
    log "fetched $(find "$LIBS" -name '*.jar' | wc -l) jars in $((SECONDS - start)) s"
    exec 8>&-
}

# --------------------------------------------------------------------------
# Process and protocol checks
# --------------------------------------------------------------------------
# Pid of the broker that uses this run dir, if it is alive.
broker_pid() {
    local pid=""
    if [[ -f $PID_FILE ]]; then
        pid=$(<"$PID_FILE")
        if [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null &&
            tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF "kafka.Kafka $PROPS"; then
            echo "$pid"
            return 0
        fi
    fi
    # Pid file missing or stale: look for a broker started with our properties file.
    local pattern
    pattern=$(printf '%s' "kafka.Kafka $PROPS" | sed 's/[][\.*^$+?(){}|]/\\&/g')
    pid=$(pgrep -f -x ".* $pattern" 2>/dev/null | head -n 1 || true)
    [[ -n $pid ]] || return 1
    echo "$pid"
}

# The snippets run by `bash -c` below expand their own arguments.
# shellcheck disable=SC2016
port_open() {
    timeout 2 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1"' _ "$1" 2>/dev/null
}

# A real Kafka round trip without a JVM: send ApiVersions v0 (correlation id
# "DEC1") and check the response header and error code.
# shellcheck disable=SC2016
api_versions_ok() {
    local reply
    reply=$(timeout 5 bash -c '
        exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
        printf "\x00\x00\x00\x0a\x00\x12\x00\x00\x44\x45\x43\x31\xff\xff" >&3
        head -c 10 <&3' _ "$PORT" 2>/dev/null | od -An -tx1 | tr -d ' \n') || return 1
    [[ ${reply:8:8} == 44454331 && ${reply:16:4} == 0000 ]]
}

# run_tool SECONDS CLASS ARGS...: runs a Kafka tool class in a small,
# fast-starting JVM (SECONDS=0: no time limit).
run_tool() {
    local limit=$1 class=$2
    shift 2
    timeout "$limit" "$JAVA" -Xms32m -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 \
        -Djava.awt.headless=true -Dlog4j2.configurationFile="$LOG_CONFIG" \
        -Ddeclic.kafka.log.level=WARN -cp "$LIBS/*" "$class" "$@"
}

# Metadata round trip through the admin client (slower: starts a JVM).
topics_list_ok() {
    run_tool 30 org.apache.kafka.tools.TopicCommand --bootstrap-server "$BOOTSTRAP" --list >/dev/null 2>&1
}

# wait_until_answering SECONDS [PID]: 0 when answering, 1 on timeout,
# 2 when PID (the broker being started) exited.
wait_until_answering() {
    local deadline=$((SECONDS + $1)) pid=${2:-}
    while :; do
        if [[ -n $pid ]] && ! kill -0 "$pid" 2>/dev/null; then return 2; fi
        if port_open "$PORT" && api_versions_ok; then break; fi
        ((SECONDS < deadline)) || return 1
        sleep 0.2
    done
    while :; do
        if [[ -n $pid ]] && ! kill -0 "$pid" 2>/dev/null; then return 2; fi
        if topics_list_ok; then return 0; fi
        ((SECONDS < deadline)) || return 1
        sleep 1
    done
}

print_log_tail() {
    if [[ -f $LOG_FILE ]]; then
        log "last 40 lines of $LOG_FILE:"
        tail -n 40 "$LOG_FILE" >&2
    fi
}

# --------------------------------------------------------------------------
# start
# --------------------------------------------------------------------------
write_properties() {
    cat >"$PROPS" <<EOF
# Generated by deploy/local/kafka.sh; rewritten on every start.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$PORT,CONTROLLER://127.0.0.1:$CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$DATA_DIR

# Single node: every replication factor and ISR minimum is 1.
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=4
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
default.replication.factor=1
min.insync.replicas=1
num.partitions=$PARTITIONS
group.initial.rebalance.delay.ms=0
# Topics are created explicitly by their owners.
auto.create.topics.enable=false
delete.topic.enable=true

# Small machine: fewer threads and a smaller log-cleaner buffer (heap).
num.network.threads=2
num.io.threads=4
num.recovery.threads.per.data.dir=1
log.cleaner.threads=1
log.cleaner.dedupe.buffer.size=33554432
EOF
}

new_cluster_id() {
    head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n'
}

format_storage() {
    [[ -f $DATA_DIR/meta.properties ]] && return 0
    local id
    id=$(new_cluster_id)
    log "formatting storage in $DATA_DIR (cluster id $id)"
    mkdir -p "$DATA_DIR"
    if ! run_tool 120 kafka.tools.StorageTool format -t "$id" -c "$PROPS" >>"$LOG_FILE" 2>&1; then
        print_log_tail
        die "formatting storage failed"
    fi
}

# Starts the broker detached and sets LAUNCHED_PID.
launch_broker() {
    local heap_opts jvm_opts
    read -r -a heap_opts <<<"$HEAP"
    read -r -a jvm_opts <<<"$JVM_OPTS"
    rm -f "$PID_FILE"
    # setsid detaches from the terminal's session; the inner shell records its
    # own pid and then becomes the JVM, so the pid file names the broker itself.
    # shellcheck disable=SC2016
    nohup setsid bash -c 'echo "$$" >"$1"; shift; exec "$@"' _ "$PID_FILE" \
        "$JAVA" -server "${heap_opts[@]}" "${jvm_opts[@]}" \
        -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true \
        -Dlog4j2.configurationFile="$LOG_CONFIG" -Dkafka.logs.dir="$RUN_DIR" \
        -cp "$LIBS/*" kafka.Kafka "$PROPS" \
        </dev/null >>"$LOG_FILE" 2>&1 8>&- 9>&- &
    local i
    for ((i = 0; i < 50; i++)); do
        [[ -s $PID_FILE ]] && break
        sleep 0.1
    done
    [[ -s $PID_FILE ]] || die "the broker did not start (no pid file written)"
    LAUNCHED_PID=$(<"$PID_FILE")
}

lock_run_dir() {
    mkdir -p "$RUN_DIR"
    exec 9>"$RUN_DIR/.lock"
    lock_fd 9
}

cmd_start() {
    cmd_fetch
    ensure_java
    lock_run_dir
    local pid
    if pid=$(broker_pid); then
        if api_versions_ok; then
            log "already running (pid $pid) at $BOOTSTRAP"
            echo "$BOOTSTRAP"
            return 0
        fi
        log "broker (pid $pid) is running but not answering yet; waiting"
        if wait_until_answering "$TIMEOUT" "$pid"; then
            echo "$BOOTSTRAP"
            return 0
        fi
        print_log_tail
        die "broker (pid $pid) did not answer within ${TIMEOUT}s; try '$PROG stop' or '$PROG reset'"
    fi
    local p
    for p in "$PORT" "$CONTROLLER_PORT"; do
        if port_open "$p"; then
            die "port $p on 127.0.0.1 is already in use by another process; choose another DECLIC_KAFKA_PORT (the controller uses PORT+1)"
        fi
    done

    [[ -f $LOG_FILE ]] && mv -f "$LOG_FILE" "$LOG_FILE.1"
    printf '=== %s: starting Kafka %s on %s\n' "$(date -u +%FT%TZ)" "$KAFKA_VERSION" "$BOOTSTRAP" >"$LOG_FILE"
    write_properties
    format_storage

    local start=$SECONDS rc=0
    launch_broker
    pid=$LAUNCHED_PID
    log "started Kafka $KAFKA_VERSION (pid $pid), waiting for it to answer on $BOOTSTRAP"
    wait_until_answering "$TIMEOUT" "$pid" || rc=$?
    case $rc in
        0)
            log "ready in $((SECONDS - start)) s; log: $LOG_FILE"
            echo "$BOOTSTRAP"
            ;;
        2)
            rm -f "$PID_FILE"
            print_log_tail
            die "the broker exited during start"
            ;;
        *)
            print_log_tail
            log "the broker did not answer within ${TIMEOUT}s; stopping it"
            stop_pid "$pid"
            die "start timed out"
            ;;
    esac
}

# --------------------------------------------------------------------------
# stop / reset
# --------------------------------------------------------------------------
stop_pid() {
    local pid=$1 deadline=$((SECONDS + STOP_GRACE))
    kill -TERM "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null; do
        if ((SECONDS >= deadline)); then
            log "broker (pid $pid) still running after ${STOP_GRACE}s; sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
            while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
            break
        fi
        sleep 0.2
    done
    rm -f "$PID_FILE"
}

cmd_stop() {
    [[ -d $RUN_DIR ]] || return 0
    lock_run_dir
    local pid
    if ! pid=$(broker_pid); then
        rm -f "$PID_FILE"
        return 0
    fi
    log "stopping broker (pid $pid)"
    stop_pid "$pid"
    log "stopped"
}

cmd_reset() {
    cmd_stop
    if [[ -d $DATA_DIR ]]; then
        log "deleting $DATA_DIR"
        rm -rf -- "${DATA_DIR:?}"
    fi
}

# --------------------------------------------------------------------------
# status / wait / logs / topics
# --------------------------------------------------------------------------
cmd_status() {
    local pid
    if ! pid=$(broker_pid); then
        log "not running (run dir $RUN_DIR)"
        return 1
    fi
    if api_versions_ok; then
        log "running (pid $pid) at $BOOTSTRAP"
        return 0
    fi
    log "running (pid $pid) but not answering on $BOOTSTRAP"
    return 1
}

cmd_wait() {
    local secs=${1:-$TIMEOUT}
    [[ $secs =~ ^[0-9]+$ ]] || die "wait: SECONDS must be a number, got '$secs'"
    is_fetched || die "Kafka jars are not fetched yet; run '$PROG fetch' or '$PROG start'"
    ensure_java
    if wait_until_answering "$secs"; then
        echo "$BOOTSTRAP"
        return 0
    fi
    die "no Kafka broker answered on $BOOTSTRAP within ${secs}s"
}

cmd_logs() {
    local lines=${1:-50}
    [[ $lines =~ ^[0-9]+$ ]] || die "logs: LINES must be a number, got '$lines'"
    echo "$LOG_FILE"
    [[ -f $LOG_FILE ]] || { log "no log file yet"; return 0; }
    tail -n "$lines" "$LOG_FILE"
}

cmd_topics() {
    is_fetched || die "Kafka jars are not fetched yet; run '$PROG fetch' or '$PROG start'"
    ensure_java
    run_tool 0 org.apache.kafka.tools.TopicCommand --bootstrap-server "$BOOTSTRAP" "$@"
}

main() {
    local cmd=${1:-help}
    (($# == 0)) || shift
    case $cmd in
        fetch) cmd_fetch ;;
        start) cmd_start ;;
        stop) cmd_stop ;;
        status) cmd_status ;;
        wait) cmd_wait "$@" ;;
        reset) cmd_reset ;;
        logs) cmd_logs "$@" ;;
        topics) cmd_topics "$@" ;;
        help | -h | --help) usage ;;
        *)
            usage >&2
            die "unknown command '$cmd'"
            ;;
    esac
}

main "$@"
