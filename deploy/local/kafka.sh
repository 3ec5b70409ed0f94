#!/usr/bin/env bash
# Single-node Apache Kafka 4.x broker (KRaft, combined broker+controller) for
# local development and tests, assembled from Maven Central jars; also runs a
# local cluster of N such nodes for failover tests (the cluster-* and node-*
# commands).
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

Runs a single-node Apache Kafka broker (KRaft combined mode) on 127.0.0.1,
or a cluster of N such nodes (node I = broker and controller with node.id I).

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
  acls ARGS...    run Kafka's AclCommand against the broker's PLAINTEXT listener, e.g.
                  \`acls --add --allow-principal User:alice --operation Read --topic t\`
  help            show this help

Cluster commands (node numbers I run from 1 to N):
  cluster-start [N]        fetch if needed, format new storage (one cluster id),
                           start every node that is not running, wait until all N
                           brokers answer; prints the bootstrap list
  cluster-stop             stop every node (SIGTERM, SIGKILL after 30 s); quiet if none runs
  cluster-status           one line per node; exit 0 if every node runs and answers
  cluster-wait [SECONDS]   block until every node answers and no partition is
                           under-replicated (default: \$DECLIC_KAFKA_TIMEOUT); prints
                           the bootstrap list
  cluster-reset            stop every node and delete the cluster's data
  cluster-bootstrap [N]    print the bootstrap list (starts nothing)
  cluster-logs I [LINES]   print node I's log file path and its last LINES lines (default 50)
  cluster-topics ARGS...   run Kafka's TopicCommand against the cluster
  cluster-consume ARGS...  run Kafka's console consumer against the cluster, e.g.
                           \`cluster-consume --topic T --from-beginning
                           --isolation-level read_committed --timeout-ms 15000\`
  node-start I             start node I again on its data and ports, wait until it answers
  node-stop I              stop node I (SIGTERM, wait for it to exit; SIGKILL after 30 s)
  node-kill I              kill node I with SIGKILL at once (a crash)
  node-pause I             freeze node I with SIGSTOP (a hung broker)
  node-resume I            let a paused node I continue (SIGCONT)

Environment:
  DECLIC_KAFKA_PORT        client port (default 19092); controller uses PORT+1
  DECLIC_KAFKA_CACHE       jar cache (default \${XDG_CACHE_HOME:-\$HOME/.cache}/declic/kafka-VERSION)
  DECLIC_KAFKA_RUN_DIR     data, pid and log files (default <repo>/.run/kafka)
  DECLIC_KAFKA_HEAP        broker heap flags (default "-Xms256m -Xmx768m")
  DECLIC_KAFKA_PARTITIONS  default partitions for new topics (default 4)
  DECLIC_KAFKA_TIMEOUT     seconds to wait for the broker to answer (default 90)
  DECLIC_KAFKA_VERSION     Kafka version (default from pom.xml: $(pom_kafka_version))
  DECLIC_KAFKA_JVM_OPTS    extra broker JVM flags (default "-XX:+UseSerialGC")
  DECLIC_KAFKA_EXTRA_CONFIG  a properties file appended to the single node's generated
                           server.properties at every start (the last value of a key
                           wins: listeners, TLS, SASL, an authorizer; default none)
  DECLIC_KAFKA_FORMAT_ARGS extra arguments of the single node's storage format, split on
                           whitespace (no quoting), used only when its storage is new, e.g.
                           "--add-scram SCRAM-SHA-512=[name=alice,password=alice-secret]"
  MAVEN_OPTS               passed through to Maven

Cluster environment (DECLIC_KAFKA_PARTITIONS, _TIMEOUT, _JVM_OPTS, _CACHE and
_VERSION apply too):
  DECLIC_KAFKA_CLUSTER_PORT     base port (default 29092): node I's client port is
                                PORT+10*(I-1), its controller port that + 1
  DECLIC_KAFKA_CLUSTER_NODES    number of nodes N when no N is given (default: the
                                size of the cluster in the run dir, else 3)
  DECLIC_KAFKA_CLUSTER_RUN_DIR  default <repo>/.run/kafka-cluster; node I uses node-I/
  DECLIC_KAFKA_CLUSTER_HEAP     heap flags per node (default "-Xms256m -Xmx512m")
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
EXTRA_CONFIG=${DECLIC_KAFKA_EXTRA_CONFIG:-}
read -r -a FORMAT_ARGS <<<"${DECLIC_KAFKA_FORMAT_ARGS:-}"
PARTITIONS=${DECLIC_KAFKA_PARTITIONS:-4}
[[ $PARTITIONS =~ ^[1-9][0-9]*$ ]] || die "DECLIC_KAFKA_PARTITIONS must be a positive integer, got '$PARTITIONS'"
TIMEOUT=${DECLIC_KAFKA_TIMEOUT:-90}
[[ $TIMEOUT =~ ^[0-9]+$ ]] || die "DECLIC_KAFKA_TIMEOUT must be a number of seconds, got '$TIMEOUT'"
STOP_GRACE=30
CLUSTER_PORT=${DECLIC_KAFKA_CLUSTER_PORT:-29092}
if ! [[ $CLUSTER_PORT =~ ^[0-9]+$ ]] || ((CLUSTER_PORT < 1 || CLUSTER_PORT > 65534)); then
    die "DECLIC_KAFKA_CLUSTER_PORT must be a port number between 1 and 65534, got '$CLUSTER_PORT'"
fi
# Empty: the size of the cluster last started in the run dir, else 3.
CLUSTER_NODES=${DECLIC_KAFKA_CLUSTER_NODES:-}
CLUSTER_RUN_DIR=${DECLIC_KAFKA_CLUSTER_RUN_DIR:-$REPO_ROOT/.run/kafka-cluster}
CLUSTER_HEAP=${DECLIC_KAFKA_CLUSTER_HEAP:--Xms256m -Xmx512m}
CLUSTER_MAX_NODES=9
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
# process_state PID: the state letter of /proc/PID/stat (R, S, T, Z, ...).
process_state() {
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    stat=${stat##*) }
    echo "${stat:0:1}"
}

# pid_alive PID: the process exists and is not a zombie waiting to be reaped.
pid_alive() {
    kill -0 "$1" 2>/dev/null && [[ $(process_state "$1") != Z ]]
}

# broker_pid PID_FILE PROPS: pid of the broker started with the properties
# file PROPS, if it is alive.
broker_pid() {
    local pid_file=$1 props=$2 pid=""
    if [[ -f $pid_file ]]; then
        pid=$(<"$pid_file")
        if [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null &&
            tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF "kafka.Kafka $props"; then
            echo "$pid"
            return 0
        fi
    fi
    # Pid file missing or stale: look for a broker started with that properties file.
    local pattern
    pattern=$(printf '%s' "kafka.Kafka $props" | sed 's/[][\.*^$+?(){}|]/\\&/g')
    pid=$(pgrep -f -x ".* $pattern" 2>/dev/null | head -n 1 || true)
    [[ -n $pid ]] || return 1
    echo "$pid"
}

# The snippets run by `bash -c` below expand their own arguments.
# shellcheck disable=SC2016
port_open() {
    timeout 2 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1"' _ "$1" 2>/dev/null
}

# api_versions_ok PORT: a real Kafka round trip without a JVM: send
# ApiVersions v0 (correlation id "DEC1") and check the response header and
# error code. A KRaft broker serves its client port only once the controller
# has unfenced it.
# shellcheck disable=SC2016
api_versions_ok() {
    local reply
    reply=$(timeout 5 bash -c '
        exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
        printf "\x00\x00\x00\x0a\x00\x12\x00\x00\x44\x45\x43\x31\xff\xff" >&3
        head -c 10 <&3' _ "$1" 2>/dev/null | od -An -tx1 | tr -d ' \n') || return 1
    [[ ${reply:8:8} == 44454331 && ${reply:16:4} == 0000 ]]
}

# broker_answers PORT
broker_answers() {
    port_open "$1" && api_versions_ok "$1"
}

# check_ports_free HINT PORT...: dies when another process listens on a PORT.
check_ports_free() {
    local hint=$1 p
    shift
    for p in "$@"; do
        if port_open "$p"; then
            die "port $p on 127.0.0.1 is already in use by another process; $hint"
        fi
    done
}

# run_tool SECONDS CLASS ARGS...: runs a Kafka tool class in a small,
# fast-starting JVM (SECONDS=0: no time limit).
run_tool() {
    local limit=$1 class=$2
    shift 2
    timeout "$limit" "$JAVA" -Xms32m -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 \
        -Djava.awt.headless=true -Dlog4j2.configurationFile="$LOG_CONFIG" \
        -Ddeclic.kafka.log.level=WARN -Ddeclic.kafka.log.target=SYSTEM_ERR \
        -cp "$LIBS/*" "$class" "$@"
}

# topics_list_ok BOOTSTRAP: metadata round trip through the admin client
# (slower: starts a JVM).
topics_list_ok() {
    run_tool 30 org.apache.kafka.tools.TopicCommand --bootstrap-server "$1" --list >/dev/null 2>&1
}

# poll_until DEADLINE INTERVAL PIDS CHECK...: runs CHECK every INTERVAL seconds
# until it succeeds (0) or SECONDS reaches DEADLINE (1); returns 2, with
# DEAD_PID set, as soon as one of the space-separated PIDS has exited.
poll_until() {
    local deadline=$1 interval=$2 pids=$3 pid
    shift 3
    while :; do
        for pid in $pids; do
            pid_alive "$pid" || { DEAD_PID=$pid; return 2; }
        done
        "$@" && return 0
        ((SECONDS < deadline)) || return 1
        sleep "$interval"
    done
}

# wait_until_answering SECONDS PORT BOOTSTRAP [PID]: 0 when the broker answers
# ApiVersions on PORT and a metadata round trip through BOOTSTRAP, 1 on
# timeout, 2 when PID (the broker being started) exited.
wait_until_answering() {
    local deadline=$((SECONDS + $1)) port=$2 bootstrap=$3 pid=${4:-}
    poll_until "$deadline" 0.2 "$pid" broker_answers "$port" || return
    poll_until "$deadline" 1 "$pid" topics_list_ok "$bootstrap"
}

# print_log_tail LOG_FILE
print_log_tail() {
    if [[ -f $1 ]]; then
        log "last 40 lines of $1:"
        tail -n 40 "$1" >&2
    fi
}

# --------------------------------------------------------------------------
# Broker launch (shared by the single node and the cluster nodes)
# --------------------------------------------------------------------------
# write_properties FILE NODE_ID PORT VOTERS DATA_DIR NODES: the configuration
# of a combined broker+controller with client port PORT (controller PORT+1) in
# a cluster of NODES nodes (1 for the single node). Replication follows the
# production shape: factor min(3, NODES), ISR minimum 2 from 3 nodes on.
write_properties() {
    local file=$1 id=$2 port=$3 voters=$4 data=$5 nodes=$6
    local replicas=$((nodes < 3 ? nodes : 3)) min_isr=$((nodes >= 3 ? 2 : 1)) note
    if ((nodes == 1)); then
        note="# Single node: every replication factor and ISR minimum is 1."
    else
        note="# $nodes nodes: replication factor $replicas, ISR minimum $min_isr (production shape)."
    fi
    cat >"$file" <<EOF
# Generated by deploy/local/kafka.sh; rewritten on every start.
process.roles=broker,controller
node.id=$id
controller.quorum.voters=$voters
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$((port + 1))
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$data

$note
offsets.topic.replication.factor=$replicas
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=$replicas
transaction.state.log.min.isr=$min_isr
transaction.state.log.num.partitions=4
share.coordinator.state.topic.replication.factor=$replicas
share.coordinator.state.topic.min.isr=$min_isr
default.replication.factor=$replicas
min.insync.replicas=$min_isr
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

# append_extra_config FILE: appends DECLIC_KAFKA_EXTRA_CONFIG, if set, to the
# properties FILE; Java properties keep the last value of a repeated key.
append_extra_config() {
    [[ -n $EXTRA_CONFIG ]] || return 0
    [[ -f $EXTRA_CONFIG && -r $EXTRA_CONFIG ]] ||
        die "DECLIC_KAFKA_EXTRA_CONFIG: cannot read '$EXTRA_CONFIG'"
    {
        printf '\n# Appended from DECLIC_KAFKA_EXTRA_CONFIG=%s (the last value of a key wins).\n' \
            "$EXTRA_CONFIG"
        cat -- "$EXTRA_CONFIG"
        echo
    } >>"$1"
}

# 16 random bytes, URL-safe base64 without padding, never starting with "-": the
# storage tool would read such an id as an option (Kafka's own random-uuid avoids it too).
new_cluster_id() {
    local id
    while :; do
        id=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')
        [[ $id == -* ]] || break
    done
    printf '%s\n' "$id"
}

# format_storage DATA_DIR PROPS LOG_FILE [CLUSTER_ID [ARGS...]]: formats DATA_DIR
# unless it already is (a new cluster id when none or an empty one is given),
# passing ARGS to the storage tool (e.g. --add-scram ...).
format_storage() {
    local data=$1 props=$2 log_file=$3 id=${4:-}
    shift $(($# < 4 ? $# : 4))
    [[ -f $data/meta.properties ]] && return 0
    [[ -n $id ]] || id=$(new_cluster_id)
    log "formatting storage in $data (cluster id $id)"
    mkdir -p "$data"
    if ! run_tool 120 kafka.tools.StorageTool format -t "$id" -c "$props" "$@" >>"$log_file" 2>&1; then
        print_log_tail "$log_file"
        die "formatting storage failed"
    fi
}

# begin_log LOG_FILE MESSAGE: keeps the previous log as LOG_FILE.1 and starts
# a new one with a header line.
begin_log() {
    if [[ -f $1 ]]; then mv -f "$1" "$1.1"; fi
    printf '=== %s: %s\n' "$(date -u +%FT%TZ)" "$2" >"$1"
}

# launch_broker PID_FILE PROPS LOG_FILE HEAP: starts a broker detached and
# sets LAUNCHED_PID.
launch_broker() {
    local pid_file=$1 props=$2 log_file=$3 heap_opts jvm_opts
    read -r -a heap_opts <<<"$4"
    read -r -a jvm_opts <<<"$JVM_OPTS"
    rm -f "$pid_file"
    # setsid detaches from the terminal's session; the inner shell records its
    # own pid and then becomes the JVM, so the pid file names the broker itself.
    # shellcheck disable=SC2016
    nohup setsid bash -c 'echo "$$" >"$1"; shift; exec "$@"' _ "$pid_file" \
        "$JAVA" -server "${heap_opts[@]}" "${jvm_opts[@]}" \
        -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true \
        -Dlog4j2.configurationFile="$LOG_CONFIG" -Dkafka.logs.dir="$(dirname -- "$props")" \
        -cp "$LIBS/*" kafka.Kafka "$props" \
        </dev/null >>"$log_file" 2>&1 8>&- 9>&- &
    local i
    for ((i = 0; i < 50; i++)); do
        [[ -s $pid_file ]] && break
        sleep 0.1
    done
    [[ -s $pid_file ]] || die "the broker did not start (no pid file written)"
    LAUNCHED_PID=$(<"$pid_file")
}

# stop_pid PID PID_FILE: SIGTERM (a controlled shutdown), SIGKILL after
# STOP_GRACE seconds; waits until the process is gone.
stop_pid() {
    local pid=$1 pid_file=$2 deadline=$((SECONDS + STOP_GRACE))
    kill -TERM "$pid" 2>/dev/null || true
    # A paused (SIGSTOPped) broker must run again to handle the SIGTERM.
    kill -CONT "$pid" 2>/dev/null || true
    while pid_alive "$pid"; do
        if ((SECONDS >= deadline)); then
            log "broker (pid $pid) still running after ${STOP_GRACE}s; sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
            while pid_alive "$pid"; do sleep 0.1; done
            break
        fi
        sleep 0.2
    done
    rm -f "$pid_file"
}

# lock_dir DIR: serialises the commands that manage the brokers under DIR.
lock_dir() {
    mkdir -p "$1"
    exec 9>"$1/.lock"
    lock_fd 9
}

# --------------------------------------------------------------------------
# Single node: start / stop / reset / status / wait / logs / topics
# --------------------------------------------------------------------------
cmd_start() {
    cmd_fetch
    ensure_java
    lock_dir "$RUN_DIR"
    local pid
    if pid=$(broker_pid "$PID_FILE" "$PROPS"); then
        if api_versions_ok "$PORT"; then
            log "already running (pid $pid) at $BOOTSTRAP"
            echo "$BOOTSTRAP"
            return 0
        fi
        log "broker (pid $pid) is running but not answering yet; waiting"
        if wait_until_answering "$TIMEOUT" "$PORT" "$BOOTSTRAP" "$pid"; then
            echo "$BOOTSTRAP"
            return 0
        fi
        print_log_tail "$LOG_FILE"
        die "broker (pid $pid) did not answer within ${TIMEOUT}s; try '$PROG stop' or '$PROG reset'"
    fi
    check_ports_free "choose another DECLIC_KAFKA_PORT (the controller uses PORT+1)" \
        "$PORT" "$CONTROLLER_PORT"

    begin_log "$LOG_FILE" "starting Kafka $KAFKA_VERSION on $BOOTSTRAP"
    write_properties "$PROPS" 1 "$PORT" "1@127.0.0.1:$CONTROLLER_PORT" "$DATA_DIR" 1
    append_extra_config "$PROPS"
    format_storage "$DATA_DIR" "$PROPS" "$LOG_FILE" "" "${FORMAT_ARGS[@]}"

    local start=$SECONDS rc=0
    launch_broker "$PID_FILE" "$PROPS" "$LOG_FILE" "$HEAP"
    pid=$LAUNCHED_PID
    log "started Kafka $KAFKA_VERSION (pid $pid), waiting for it to answer on $BOOTSTRAP"
    wait_until_answering "$TIMEOUT" "$PORT" "$BOOTSTRAP" "$pid" || rc=$?
    case $rc in
        0)
            log "ready in $((SECONDS - start)) s; log: $LOG_FILE"
            echo "$BOOTSTRAP"
            ;;
        2)
            rm -f "$PID_FILE"
            print_log_tail "$LOG_FILE"
            die "the broker exited during start"
            ;;
        *)
            print_log_tail "$LOG_FILE"
            log "the broker did not answer within ${TIMEOUT}s; stopping it"
            stop_pid "$pid" "$PID_FILE"
            die "start timed out"
            ;;
    esac
}

cmd_stop() {
    [[ -d $RUN_DIR ]] || return 0
    lock_dir "$RUN_DIR"
    local pid
    if ! pid=$(broker_pid "$PID_FILE" "$PROPS"); then
        rm -f "$PID_FILE"
        return 0
    fi
    log "stopping broker (pid $pid)"
    stop_pid "$pid" "$PID_FILE"
    log "stopped"
}

cmd_reset() {
    cmd_stop
    if [[ -d $DATA_DIR ]]; then
        log "deleting $DATA_DIR"
        rm -rf -- "${DATA_DIR:?}"
    fi
}

cmd_status() {
    local pid
    if ! pid=$(broker_pid "$PID_FILE" "$PROPS"); then
        log "not running (run dir $RUN_DIR)"
        return 1
    fi
    if api_versions_ok "$PORT"; then
        log "running (pid $pid) at $BOOTSTRAP"
        return 0
    fi
    log "running (pid $pid) but not answering on $BOOTSTRAP"
    return 1
}

cmd_wait() {
    local secs=${1:-$TIMEOUT}
    [[ $secs =~ ^[0-9]+$ ]] || die "wait: SECONDS must be a number, got '$secs'"
    require_fetched
    if wait_until_answering "$secs" "$PORT" "$BOOTSTRAP"; then
        echo "$BOOTSTRAP"
        return 0
    fi
    die "no Kafka broker answered on $BOOTSTRAP within ${secs}s"
}

# show_log LOG_FILE [LINES]
show_log() {
    local lines=${2:-50}
    [[ $lines =~ ^[0-9]+$ ]] || die "logs: LINES must be a number, got '$lines'"
    echo "$1"
    [[ -f $1 ]] || { log "no log file yet"; return 0; }
    tail -n "$lines" "$1"
}

cmd_logs() {
    show_log "$LOG_FILE" "$@"
}

require_fetched() {
    is_fetched || die "Kafka jars are not fetched yet; run '$PROG fetch' or '$PROG start'"
    ensure_java
}

cmd_topics() {
    require_fetched
    run_tool 0 org.apache.kafka.tools.TopicCommand --bootstrap-server "$BOOTSTRAP" "$@"
}

# The broker's own PLAINTEXT listener (DECLIC_KAFKA_PORT): with an authorizer,
# its principal (User:ANONYMOUS) must be allowed to manage ACLs, e.g. a super user.
cmd_acls() {
    require_fetched
    run_tool 0 org.apache.kafka.tools.AclCommand --bootstrap-server "$BOOTSTRAP" "$@"
}

# --------------------------------------------------------------------------
# Cluster of N nodes: node I (1-based) is node.id I, a combined
# broker+controller on ports CLUSTER_PORT+10*(I-1) (client) and +1
# (controller), in CLUSTER_RUN_DIR/node-I. All nodes share one cluster id
# (CLUSTER_RUN_DIR/cluster.id) and a static controller.quorum.voters list.
# --------------------------------------------------------------------------
CLUSTER_PORT_HINT="choose another DECLIC_KAFKA_CLUSTER_PORT (node I uses PORT+10*(I-1) and the port after it)"

# cluster_size [N]: N if given, else $DECLIC_KAFKA_CLUSTER_NODES if set, else
# the size recorded by the last cluster-start, else 3.
cluster_size() {
    local n=${1:-$CLUSTER_NODES}
    if [[ -z $n && -f $CLUSTER_RUN_DIR/nodes ]]; then n=$(<"$CLUSTER_RUN_DIR/nodes"); fi
    n=${n:-3}
    if ! [[ $n =~ ^[1-9][0-9]*$ ]] || ((n > CLUSTER_MAX_NODES)); then
        die "the number of cluster nodes must be between 1 and $CLUSTER_MAX_NODES, got '$n'"
    fi
    ((CLUSTER_PORT + 10 * (n - 1) + 1 <= 65535)) ||
        die "DECLIC_KAFKA_CLUSTER_PORT $CLUSTER_PORT leaves no room for $n nodes"
    echo "$n"
}

# node_paths I: sets the NODE_* variables of cluster node I.
node_paths() {
    NODE_DIR="$CLUSTER_RUN_DIR/node-$1"
    NODE_PORT=$((CLUSTER_PORT + 10 * ($1 - 1)))
    NODE_BOOTSTRAP="127.0.0.1:$NODE_PORT"
    NODE_DATA="$NODE_DIR/data"
    NODE_PROPS="$NODE_DIR/server.properties"
    NODE_PID_FILE="$NODE_DIR/kafka.pid"
    NODE_LOG="$NODE_DIR/kafka.log"
}

# node_arg N I: validates the node number I of an N-node cluster.
node_arg() {
    if ! [[ ${2:-} =~ ^[1-9][0-9]*$ ]] || (($2 > $1)); then
        die "expected a node number from 1 to $1, got '${2:-}'"
    fi
}

# cluster_bootstrap N: 127.0.0.1:P1,127.0.0.1:P2,... (client ports)
cluster_bootstrap() {
    local i out=""
    for ((i = 1; i <= $1; i++)); do
        node_paths "$i"
        out+=${out:+,}$NODE_BOOTSTRAP
    done
    echo "$out"
}

# cluster_voters N: 1@127.0.0.1:C1,2@127.0.0.1:C2,... (controller ports)
cluster_voters() {
    local i out=""
    for ((i = 1; i <= $1; i++)); do
        node_paths "$i"
        out+=${out:+,}$i@127.0.0.1:$((NODE_PORT + 1))
    done
    echo "$out"
}

# cluster_id: the cluster id shared by every node, created on first use.
cluster_id() {
    local file="$CLUSTER_RUN_DIR/cluster.id" meta id=""
    if [[ -s $file ]]; then
        cat "$file"
        return 0
    fi
    for meta in "$CLUSTER_RUN_DIR"/node-*/data/meta.properties; do
        [[ -f $meta ]] || continue
        id=$(sed -n 's/^cluster\.id=//p' "$meta" | head -n 1)
        break
    done
    [[ -n $id ]] || id=$(new_cluster_id)
    echo "$id" >"$file"
    echo "$id"
}

# write_node_properties I N: node I's configuration: the shared one plus
# failure detection tuned for a test machine (see README.md).
write_node_properties() {
    local i=$1 n=$2
    node_paths "$i"
    write_properties "$NODE_PROPS" "$i" "$NODE_PORT" "$(cluster_voters "$n")" "$NODE_DATA" "$n"
    cat >>"$NODE_PROPS" <<'EOF'

# Fast failover on a test machine: a killed or frozen node misses its
# heartbeats and is fenced (its partitions get new leaders from the ISR)
# within 3 s, a lost active controller is replaced within ~3 s, and a
# follower that stops fetching leaves the ISR after 5 s (defaults: 9 s, 2 s
# + election, 30 s).
broker.heartbeat.interval.ms=500
broker.session.timeout.ms=3000
controller.quorum.fetch.timeout.ms=2000
controller.quorum.election.timeout.ms=1000
controller.quorum.election.backoff.max.ms=1000
replica.lag.time.max.ms=5000
replica.fetch.backoff.ms=200
unclean.leader.election.enable=false
# A node that comes back gets its preferred leaderships back within ~30 s.
leader.imbalance.check.interval.seconds=30
EOF
}

# check_cluster_size N: dies when the cluster's data was made for another size
# (the static voter list cannot change under existing data).
check_cluster_size() {
    local n=$1 recorded meta
    [[ -f $CLUSTER_RUN_DIR/nodes ]] || return 0
    recorded=$(<"$CLUSTER_RUN_DIR/nodes")
    [[ $recorded == "$n" ]] && return 0
    for meta in "$CLUSTER_RUN_DIR"/node-*/data/meta.properties; do
        [[ -f $meta ]] || continue
        die "the cluster in $CLUSTER_RUN_DIR has $recorded nodes, not $n; run '$PROG cluster-reset' first"
    done
}

# admin_config: path of the admin client settings for the health checks (short
# timeouts, so that a paused node cannot hold a check for long).
admin_config() {
    local file="$CLUSTER_RUN_DIR/admin.properties"
    if [[ ! -f $file ]]; then
        printf '%s\n' "# Admin client settings for kafka.sh's health checks." \
            request.timeout.ms=5000 default.api.timeout.ms=10000 >"$file"
    fi
    echo "$file"
}

# brokers_up BOOTSTRAP: ids of the brokers that the cluster metadata (read
# through BOOTSTRAP) lists as unfenced and that answer ApiVersions.
brokers_up() {
    run_tool 30 org.apache.kafka.tools.BrokerApiVersionsCommand --bootstrap-server "$1" \
        --command-config "$(admin_config)" 2>/dev/null |
        sed -n 's/^[^ ]* (id: \([0-9]*\) .*isFenced: false) -> ($/\1/p' | sort -un
}

# brokers_listed BOOTSTRAP I...: every node I is up according to the metadata.
brokers_listed() {
    local bootstrap=$1 up i
    shift
    up=$(brokers_up "$bootstrap") || true
    for i in "$@"; do
        grep -qx "$i" <<<"$up" || return 1
    done
}

# node_of_pid PID I...: the node I whose pid file names PID.
node_of_pid() {
    local pid=$1 i
    shift
    for i in "$@"; do
        node_paths "$i"
        if [[ -f $NODE_PID_FILE && $(<"$NODE_PID_FILE") == "$pid" ]]; then
            echo "$i"
            return 0
        fi
    done
    return 1
}

# start_nodes N BOOTSTRAP "EXPECTED" I...: starts the stopped nodes I... of an
# N-node cluster (formatting new storage first, in parallel), waits until each
# answers ApiVersions and the metadata read through BOOTSTRAP lists every
# node of EXPECTED as up; on failure stops the nodes it started and exits.
start_nodes() {
    local n=$1 bootstrap=$2 expected=$3 deadline=$((SECONDS + TIMEOUT))
    shift 3
    local id i pid rc=0 formats=() pids=""
    id=$(cluster_id)
    for i in "$@"; do
        node_paths "$i"
        check_ports_free "$CLUSTER_PORT_HINT" "$NODE_PORT" "$((NODE_PORT + 1))"
    done
    for i in "$@"; do
        node_paths "$i"
        mkdir -p "$NODE_DIR"
        begin_log "$NODE_LOG" "starting Kafka $KAFKA_VERSION node $i of $n on $NODE_BOOTSTRAP"
        write_node_properties "$i" "$n"
        if [[ ! -f $NODE_DATA/meta.properties ]]; then
            format_storage "$NODE_DATA" "$NODE_PROPS" "$NODE_LOG" "$id" &
            formats+=("$!")
        fi
    done
    for pid in "${formats[@]}"; do wait "$pid" || rc=1; done
    ((rc == 0)) || die "formatting storage failed"

    for i in "$@"; do
        node_paths "$i"
        launch_broker "$NODE_PID_FILE" "$NODE_PROPS" "$NODE_LOG" "$CLUSTER_HEAP"
        pids+=" $LAUNCHED_PID"
        log "started node $i (pid $LAUNCHED_PID) on $NODE_BOOTSTRAP"
    done
    for i in "$@"; do
        node_paths "$i"
        poll_until "$deadline" 0.2 "$pids" broker_answers "$NODE_PORT" || { rc=$?; break; }
    done
    if ((rc == 0)); then
        # shellcheck disable=SC2086 # EXPECTED is a list of node numbers
        poll_until "$deadline" 1 "$pids" brokers_listed "$bootstrap" $expected || rc=$?
    fi
    ((rc == 0)) && return 0

    if ((rc == 2)) && i=$(node_of_pid "$DEAD_PID" "$@"); then
        node_paths "$i"
        print_log_tail "$NODE_LOG"
        log "node $i exited during start"
    else
        log "the cluster did not answer within ${TIMEOUT}s; logs: $CLUSTER_RUN_DIR/node-*/kafka.log"
    fi
    for i in "$@"; do
        node_paths "$i"
        if pid=$(broker_pid "$NODE_PID_FILE" "$NODE_PROPS"); then
            log "stopping node $i (pid $pid)"
            stop_pid "$pid" "$NODE_PID_FILE"
        fi
    done
    die "start failed"
}

cmd_cluster_start() {
    local n i pid start=$SECONDS stopped=()
    n=$(cluster_size "${1:-}")
    cmd_fetch
    ensure_java
    lock_dir "$CLUSTER_RUN_DIR"
    check_cluster_size "$n"
    for ((i = 1; i <= n; i++)); do
        node_paths "$i"
        if ! pid=$(broker_pid "$NODE_PID_FILE" "$NODE_PROPS"); then
            stopped+=("$i")
        elif [[ $(process_state "$pid") == T ]]; then
            die "node $i (pid $pid) is paused; run '$PROG node-resume $i'"
        fi
    done
    echo "$n" >"$CLUSTER_RUN_DIR/nodes"
    if ((${#stopped[@]} == 0)); then
        log "all $n nodes are running; checking that they answer"
    else
        log "starting Kafka $KAFKA_VERSION node(s) ${stopped[*]} of $n in $CLUSTER_RUN_DIR"
    fi
    start_nodes "$n" "$(cluster_bootstrap "$n")" "$(seq -s ' ' 1 "$n")" "${stopped[@]}"
    log "cluster of $n ready in $((SECONDS - start)) s"
    cluster_bootstrap "$n"
}

cmd_cluster_stop() {
    [[ -d $CLUSTER_RUN_DIR ]] || return 0
    lock_dir "$CLUSTER_RUN_DIR"
    local dir i pid jobs=()
    # Every node dir, whatever the configured size; the nodes stop in parallel.
    for dir in "$CLUSTER_RUN_DIR"/node-*; do
        i=${dir##*/node-}
        [[ -d $dir && $i =~ ^[0-9]+$ ]] || continue
        node_paths "$i"
        if pid=$(broker_pid "$NODE_PID_FILE" "$NODE_PROPS"); then
            log "stopping node $i (pid $pid)"
            stop_pid "$pid" "$NODE_PID_FILE" &
            jobs+=("$!")
        else
            rm -f "$NODE_PID_FILE"
        fi
    done
    ((${#jobs[@]} > 0)) || return 0
    for pid in "${jobs[@]}"; do wait "$pid" || true; done
    log "stopped"
}

cmd_cluster_reset() {
    cmd_cluster_stop
    [[ -d $CLUSTER_RUN_DIR ]] || return 0
    local dir
    for dir in "$CLUSTER_RUN_DIR"/node-*/data; do
        [[ -d $dir ]] || continue
        log "deleting $dir"
        rm -rf -- "${dir:?}"
    done
    rm -f "$CLUSTER_RUN_DIR/cluster.id" "$CLUSTER_RUN_DIR/nodes"
}

cmd_cluster_status() {
    local n i pid rc=0
    n=$(cluster_size)
    for ((i = 1; i <= n; i++)); do
        node_paths "$i"
        if ! pid=$(broker_pid "$NODE_PID_FILE" "$NODE_PROPS"); then
            log "node $i: not running"
            rc=1
        elif [[ $(process_state "$pid") == T ]]; then
            log "node $i: paused (pid $pid) at $NODE_BOOTSTRAP"
            rc=1
        elif api_versions_ok "$NODE_PORT"; then
            log "node $i: running (pid $pid) at $NODE_BOOTSTRAP"
        else
            log "node $i: running (pid $pid) but not answering on $NODE_BOOTSTRAP"
            rc=1
        fi
    done
    return "$rc"
}

# cluster_healthy N: every node is up and no partition is under-replicated.
cluster_healthy() {
    local bootstrap out
    bootstrap=$(cluster_bootstrap "$1")
    # shellcheck disable=SC2046 # node numbers
    brokers_listed "$bootstrap" $(seq 1 "$1") || return 1
    out=$(run_tool 30 org.apache.kafka.tools.TopicCommand --bootstrap-server "$bootstrap" \
        --describe --under-replicated-partitions 2>/dev/null) || return 1
    [[ -z $out ]]
}

cmd_cluster_wait() {
    local n secs=${1:-$TIMEOUT}
    [[ $secs =~ ^[0-9]+$ ]] || die "cluster-wait: SECONDS must be a number, got '$secs'"
    n=$(cluster_size)
    require_fetched
    [[ -d $CLUSTER_RUN_DIR ]] || die "no cluster in $CLUSTER_RUN_DIR; run '$PROG cluster-start' first"
    if poll_until $((SECONDS + secs)) 1 "" cluster_healthy "$n"; then
        cluster_bootstrap "$n"
        return 0
    fi
    die "the cluster did not become healthy (all $n nodes up, every partition fully replicated) within ${secs}s"
}

cmd_cluster_bootstrap() {
    cluster_bootstrap "$(cluster_size "${1:-}")"
}

cmd_cluster_logs() {
    local n
    n=$(cluster_size)
    node_arg "$n" "${1:-}"
    node_paths "$1"
    show_log "$NODE_LOG" "${2:-}"
}

cmd_cluster_topics() {
    local n
    n=$(cluster_size)
    require_fetched
    run_tool 0 org.apache.kafka.tools.TopicCommand --bootstrap-server "$(cluster_bootstrap "$n")" "$@"
}

cmd_cluster_consume() {
    local n
    n=$(cluster_size)
    require_fetched
    run_tool 0 org.apache.kafka.tools.consumer.ConsoleConsumer \
        --bootstrap-server "$(cluster_bootstrap "$n")" "$@"
}

# node_command I: validates node I, takes the cluster lock and sets NODE_*,
# CLUSTER_SIZE and NODE_PID (empty when the node is not running).
node_command() {
    CLUSTER_SIZE=$(cluster_size)
    node_arg "$CLUSTER_SIZE" "${1:-}"
    [[ -d $CLUSTER_RUN_DIR ]] || die "no cluster in $CLUSTER_RUN_DIR; run '$PROG cluster-start' first"
    lock_dir "$CLUSTER_RUN_DIR"
    node_paths "$1"
    NODE_PID=$(broker_pid "$NODE_PID_FILE" "$NODE_PROPS") || NODE_PID=""
}

cmd_node_start() {
    local start=$SECONDS
    node_command "${1:-}"
    [[ -s $CLUSTER_RUN_DIR/cluster.id ]] || die "no cluster in $CLUSTER_RUN_DIR; run '$PROG cluster-start' first"
    cmd_fetch
    ensure_java
    if [[ -n $NODE_PID ]]; then
        if [[ $(process_state "$NODE_PID") == T ]]; then
            die "node $1 (pid $NODE_PID) is paused; run '$PROG node-resume $1'"
        fi
        if api_versions_ok "$NODE_PORT"; then
            log "node $1 already running (pid $NODE_PID) at $NODE_BOOTSTRAP"
            return 0
        fi
        log "node $1 (pid $NODE_PID) is running but not answering yet; waiting"
        start_nodes "$CLUSTER_SIZE" "$NODE_BOOTSTRAP" "$1"
    else
        start_nodes "$CLUSTER_SIZE" "$NODE_BOOTSTRAP" "$1" "$1"
    fi
    log "node $1 ready in $((SECONDS - start)) s"
}

cmd_node_stop() {
    node_command "${1:-}"
    if [[ -z $NODE_PID ]]; then
        log "node $1 is not running"
        return 0
    fi
    log "stopping node $1 (pid $NODE_PID)"
    stop_pid "$NODE_PID" "$NODE_PID_FILE"
    log "stopped node $1"
}

cmd_node_kill() {
    node_command "${1:-}"
    if [[ -z $NODE_PID ]]; then
        log "node $1 is not running"
        return 0
    fi
    log "killing node $1 (pid $NODE_PID)"
    kill -KILL "$NODE_PID" 2>/dev/null || true
    while pid_alive "$NODE_PID"; do sleep 0.05; done
    rm -f "$NODE_PID_FILE"
}

# node_signal SIGNAL VERB I
node_signal() {
    node_command "${3:-}"
    [[ -n $NODE_PID ]] || die "node $3 is not running"
    log "$2 node $3 (pid $NODE_PID)"
    kill "-$1" "$NODE_PID"
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
        acls) cmd_acls "$@" ;;
        cluster-start) cmd_cluster_start "$@" ;;
        cluster-stop) cmd_cluster_stop ;;
        cluster-status) cmd_cluster_status ;;
        cluster-wait) cmd_cluster_wait "$@" ;;
        cluster-reset) cmd_cluster_reset ;;
        cluster-bootstrap) cmd_cluster_bootstrap "$@" ;;
        cluster-logs) cmd_cluster_logs "$@" ;;
        cluster-topics) cmd_cluster_topics "$@" ;;
        cluster-consume) cmd_cluster_consume "$@" ;;
        node-start) cmd_node_start "$@" ;;
        node-stop) cmd_node_stop "$@" ;;
        node-kill) cmd_node_kill "$@" ;;
        node-pause) node_signal STOP pausing "$@" ;;
        node-resume) node_signal CONT resuming "$@" ;;
        help | -h | --help) usage ;;
        *)
            usage >&2
            die "unknown command '$cmd'"
            ;;
    esac
}

main "$@"
