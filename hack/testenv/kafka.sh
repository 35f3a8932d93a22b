#!/usr/bin/env bash
# Runs a real Apache Kafka broker for integration tests: one JVM in KRaft
# combined mode (broker + controller), listening on 127.0.0.1 only, built from
# the jars Kafka publishes to Maven Central (there is no Docker here and the
# release tarball is not on a registry we can reach).
#
#   kafka.sh install   resolve the jars into the cache (only if missing)
#   kafka.sh start     install if needed, format storage once, start in the background
#   kafka.sh wait      block until a real Kafka client can list topics (<= 90 s,
#                      longer while the broker is still writing its log: recovery)
#   kafka.sh stop      SIGTERM, then SIGKILL after a grace period; idempotent
#   kafka.sh kill      SIGKILL at once (crash injection); idempotent
#   kafka.sh clean     stop and delete all broker state
#   kafka.sh status    exit 0 if running, 3 if not
#   kafka.sh run CLASS|ALIAS [ARGS...]
#                      run a Kafka CLI main class against the cached jars;
#                      aliases: topics, console-producer, console-consumer,
#                      consumer-groups (pass --bootstrap-server yourself)
#
# Environment (all optional):
#   KUBESIFT_CACHE                  cache root       (default ~/.cache/kubesift)
#   KUBESIFT_TESTENV                runtime root     (default <repo>/.testenv)
#   KUBESIFT_KAFKA_VERSION          Kafka version    (default below)
#   KUBESIFT_KAFKA_PORT             broker port      (default 19092)
#   KUBESIFT_KAFKA_CONTROLLER_PORT  controller port  (default 19093)
#   KUBESIFT_KAFKA_HEAP             max heap         (default 512m)
#   KUBESIFT_KAFKA_WAIT_TIMEOUT     seconds for wait (default 90)
#   KUBESIFT_KAFKA_WAIT_MAX         seconds for wait while the log grows (default 600)
#   KUBESIFT_KAFKA_STOP_TIMEOUT     SIGTERM grace    (default 30)
#   KUBESIFT_KAFKA_JAVA             java binary      (default: java on PATH; needs 17+)
#   KUBESIFT_KAFKA_JAVA_OPTS        extra JVM options for the broker
#
# Layout: jars in $KUBESIFT_CACHE/kafka/<version>/libs; data, config and pid
# in $KUBESIFT_TESTENV/kafka; the broker log (appended across restarts, one
# "==== ... start" marker per start) in $KUBESIFT_TESTENV/logs/kafka.log;
# `wait` writes $KUBESIFT_TESTENV/env.kafka (KUBESIFT_KAFKA_BROKERS).
#
# Data, cluster id, topics and env.kafka survive stop/start and kill/start
# (fault-injection tests rely on that); only `clean` throws them away (the
# log is kept, like es.sh does).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
res="$here/kafka"

# 4.1.x, not 4.0.0: 4.0.0 dropped JoinGroup v0/v1 (KIP-896), which breaks
# kafka-go consumer groups; 4.0.1 and 4.1.0 put them back (KAFKA-19444).
# Keep in sync with the default in kafka/pom.xml.
version=${KUBESIFT_KAFKA_VERSION:-4.1.2}
# Both roots are made absolute: their paths end up in server.properties, in
# mvn's -DoutputDirectory (which mvn resolves against the pom's directory)
# and in the command line we later recognise the broker by.
cacheroot=${KUBESIFT_CACHE:-$HOME/.cache/kubesift}
mkdir -p "$cacheroot"
cacheroot=$(cd "$cacheroot" && pwd)
cache="$cacheroot/kafka/$version"
libs="$cache/libs"
testenv=${KUBESIFT_TESTENV:-$root/.testenv}
mkdir -p "$testenv"
testenv=$(cd "$testenv" && pwd)
state="$testenv/kafka"
logfile="$testenv/logs/kafka.log"
port=${KUBESIFT_KAFKA_PORT:-19092}
cport=${KUBESIFT_KAFKA_CONTROLLER_PORT:-19093}
bootstrap="127.0.0.1:$port"
pidfile="$state/kafka.pid"
props="$state/server.properties"
envfile="$testenv/env.kafka"
java=${KUBESIFT_KAFKA_JAVA:-java}

log() { echo "kafka.sh: $*" >&2; }
die() { log "$*"; exit 1; }

# ---------------------------------------------------------------- install ---

# The cache is keyed by version; the stamp also covers the pom so that adding
# a jar to the pom invalidates a cache filled by an older pom.
stamp() { { echo "$version"; cat "$res/pom.xml"; } | sha256sum | cut -c1-16; }

installed() { [[ -f "$cache/.complete" && "$(cat "$cache/.complete")" == "$(stamp)" ]]; }

install() {
  installed && return 0
  command -v mvn >/dev/null || die "mvn not found (needed once to resolve the Kafka jars)"
  mkdir -p "$(dirname "$cache")"
  # Two test scripts may install at once; serialise on a lock and re-check.
  exec 9>"$cache.lock"
  flock 9
  if installed; then exec 9>&-; return 0; fi
  local tmp t0=$SECONDS
  tmp=$(mktemp -d "$cache.tmp.XXXXXX")
  log "resolving Kafka $version jars from Maven Central into $cache"
  # runtime scope: the Kafka poms declare most of the broker as runtime deps.
  # The sed strips the colour resets Debian's mvn prints even in batch mode.
  if ! mvn -q -B -Dstyle.color=never -f "$res/pom.xml" -Dkafka.version="$version" \
      dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$tmp/libs" 2>&1 |
      sed -e 's/\x1b\[[0-9;]*m//g' -e '/^$/d' >&2; then
    rm -rf "$tmp"
    die "mvn could not resolve org.apache.kafka:kafka_2.13:$version"
  fi
  [[ -f "$tmp/libs/kafka_2.13-$version.jar" ]] || { rm -rf "$tmp"; die "resolved jars lack kafka_2.13-$version.jar"; }
  stamp >"$tmp/.complete"
  # Swap in whole, so a killed install never leaves a half-filled cache behind.
  rm -rf "$cache"
  mv "$tmp" "$cache"
  exec 9>&-
  local jars=("$libs"/*.jar)
  log "installed Kafka $version in $((SECONDS - t0))s (${#jars[@]} jars)"
}

# ------------------------------------------------------------- processes ---

# A pid only counts if it is still our broker: pid files outlive reboots and
# pids get reused, and we must never signal someone else's process.
is_ours() {
  local pid=$1 cmd
  [[ -r "/proc/$pid/cmdline" ]] || return 1
  cmd=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
  [[ "$cmd" == *" kafka.Kafka $props"* ]]
}

# Prints the broker's pid if it runs. Falls back to scanning /proc for a JVM
# started on exactly this state dir's config, in case the pid file was lost.
live_pid() {
  local pid
  if [[ -f "$pidfile" ]]; then
    pid=$(<"$pidfile")
    if [[ "$pid" =~ ^[0-9]+$ ]] && is_ours "$pid"; then echo "$pid"; return 0; fi
  fi
  local d
  for d in /proc/[0-9]*; do
    pid=${d#/proc/}
    if is_ours "$pid"; then echo "$pid" >"$pidfile"; echo "$pid"; return 0; fi
  done
  return 1
}

# Serialises start/stop/kill/clean of one state dir, so that two test
# processes racing to `start` cannot launch two brokers on one data dir.
lock_state() {
  exec 8>"$testenv/.kafka.lock"
  flock 8
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

classpath() { echo "$libs/*"; }

# --------------------------------------------------------------- config ---

write_config() {
  mkdir -p "$state/data" "$(dirname "$logfile")"
  # Rewritten on every start so that port changes apply to existing data;
  # nothing in here is baked into the formatted storage except node.id.
  cat >"$props.tmp" <<EOF
# Generated by hack/testenv/kafka.sh on every start; edits are lost.
process.roles=broker,controller
node.id=1
# Static single-voter quorum rather than a dynamic one (--standalone): the
# voter set then comes from this file, not from the formatted log, so the
# data survives a change of KUBESIFT_KAFKA_CONTROLLER_PORT between runs.
controller.quorum.voters=1@127.0.0.1:$cport
controller.listener.names=CONTROLLER
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$port
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$state/data

# Test-friendly topic defaults: tests may write before creating topics.
auto.create.topics.enable=true
num.partitions=4
default.replication.factor=1
min.insync.replicas=1
# Single node: internal topics must not ask for replicas that cannot exist.
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
# Fewer internal partitions (defaults 50) make the first group/transaction
# coordinator lookup fast on a 2-core machine.
offsets.topic.num.partitions=8
transaction.state.log.num.partitions=8
# Join classic groups at once instead of waiting 3 s for more members.
group.initial.rebalance.delay.ms=0
# kafka-go speaks the classic group protocol; keep it enabled (the KIP-848
# protocol stays on too, it costs nothing).
group.coordinator.rebalance.protocols=classic,consumer

# Some tests send large records (~20 MB audit batches).
message.max.bytes=26214400
replica.fetch.max.bytes=26214400
socket.request.max.bytes=104857600

# The session is what the controller waits for a heartbeat before it fences
# the broker, and every partition loses its leader until the broker is back:
# producers then fail at once ("topic partition has no leader"). Heartbeats
# never leave the JVM, but on a heavily loaded 2-core machine the
# controller's event queue stalls for several seconds, longer than a short
# session. 15 s rides such stalls out; the price is paid after a crash
# (kill -9), when the restarted broker is refused as a duplicate
# registration until the dead incarnation's session expires: up to 15 s
# more per crash-restart test (9 s is Kafka's default).
broker.session.timeout.ms=15000
broker.heartbeat.interval.ms=1000

# Small footprint: the cleaner's dedupe buffer is on-heap (default 128 MB).
log.cleaner.dedupe.buffer.size=33554432
num.network.threads=2
num.io.threads=4
num.recovery.threads.per.data.dir=1
EOF
  mv "$props.tmp" "$props"
  # Short client timeouts for the readiness probe, so a broker that is still
  # starting fails a probe quickly and we retry instead of hanging 60 s.
  cat >"$state/probe.properties" <<EOF
request.timeout.ms=5000
default.api.timeout.ms=10000
EOF
}

formatted() { [[ -f "$state/data/meta.properties" ]]; }

format_storage() {
  # A Kafka Uuid is 16 random bytes in unpadded URL-safe base64 (22 chars);
  # making it here saves a JVM start for `StorageTool random-uuid`. Like
  # Kafka's Uuid.randomUuid, draw again when it starts with '-': the storage
  # tool's argument parser takes such an id for an option (1 draw in 64).
  local cid=-
  while [[ $cid == -* ]]; do
    cid=$(head -c16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')
  done
  log "formatting $state/data with cluster id $cid"
  "$java" -Xmx256m -cp "$(classpath)" \
    -Dlog4j2.configurationFile="$res/log4j2-tools.xml" \
    kafka.tools.StorageTool format -t "$cid" -c "$props" >"$state/format.out" 2>&1 ||
    { cat "$state/format.out" >&2; die "formatting storage failed"; }
  cat "$state/format.out" >>"$logfile"
  rm -f "$state/format.out"
  echo "$cid" >"$state/cluster.id"
}

# ------------------------------------------------------------- commands ---

start() {
  local t0=${EPOCHREALTIME}
  install
  lock_state
  local pid
  if pid=$(live_pid); then
    log "already running (pid $pid, $bootstrap)"
    return 0
  fi
  rm -f "$pidfile"
  # A leftover broker from another checkout, or any other server, on our
  # ports would make every test talk to the wrong thing: refuse.
  for p in "$port" "$cport"; do
    port_open "$p" && die "127.0.0.1:$p is already in use by another process"
  done
  write_config
  echo "==== $(date -u +%FT%TZ) kafka.sh start (Kafka $version) ====" >>"$logfile"
  formatted || format_storage
  echo "$t0" >"$state/started_at"
  # setsid + nohup: the broker must outlive this script and the caller's
  # terminal or process group (a test binary may be killed mid-run).
  # -Xms = -Xmx avoids heap resizing pauses; G1 with a short pause target is
  # what kafka-server-start.sh uses.
  local heap=${KUBESIFT_KAFKA_HEAP:-512m}
  local -a opts
  read -r -a opts <<<"${KUBESIFT_KAFKA_JAVA_OPTS:-}"
  # stdout/stderr go to the same log: they only carry JVM-level failures
  # (bad flags, OOM, crash reports) that log4j never sees.
  setsid nohup "$java" \
    -Xms"$heap" -Xmx"$heap" \
    -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 \
    -XX:+ExplicitGCInvokesConcurrent -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$res/log4j2.xml" -Dkubesift.kafka.log="$logfile" \
    ${opts[@]+"${opts[@]}"} \
    -cp "$(classpath)" kafka.Kafka "$props" \
    >>"$logfile" 2>&1 </dev/null 8>&- &
  pid=$!
  echo "$pid" >"$pidfile"
  log "started Kafka $version (pid $pid) on $bootstrap; log: $logfile"
}

probe() {
  "$java" -Xmx128m -XX:TieredStopAtLevel=1 -XX:+UseSerialGC -cp "$(classpath)" \
    -Dlog4j2.configurationFile="$res/log4j2-tools.xml" \
    org.apache.kafka.tools.TopicCommand --bootstrap-server "$bootstrap" \
    --command-config "$state/probe.properties" --list
}

wait_ready() {
  local timeout=${KUBESIFT_KAFKA_WAIT_TIMEOUT:-90}
  local max=${KUBESIFT_KAFKA_WAIT_MAX:-600}
  local t0=$SECONDS deadline=$((SECONDS + timeout)) cap=$((SECONDS + max)) out="$state/probe.out"
  local size last_size=-1
  installed || die "not installed; run: $0 start"
  while :; do
    if ! live_pid >/dev/null; then
      log "broker is not running"
      tail_logs
      return 1
    fi
    # Port first: cheap, and avoids paying a JVM start per poll while the
    # broker is still recovering logs. Then a real client request.
    if port_open "$port" && probe >"$out" 2>&1; then
      break
    fi
    # A broker restarted after SIGKILL first recovers every partition's log,
    # which takes time in proportion to the partitions it holds and the CPU it
    # gets; it logs each one. While the log grows, that is progress, not a
    # hang: keep waiting, up to a hard cap.
    size=$(stat -c %s "$logfile" 2>/dev/null || echo 0)
    if ((size != last_size)); then
      last_size=$size
      if ((SECONDS + 15 > deadline && SECONDS + 15 <= cap)); then
        deadline=$((SECONDS + 15))
      fi
    fi
    if ((SECONDS >= deadline)); then
      log "broker not ready after $((SECONDS - t0))s (no log progress for 15s or ${max}s in all); last probe:"
      tail -n 20 "$out" >&2 2>/dev/null || true
      tail_logs
      return 1
    fi
    sleep 0.5
  done
  local took=""
  if [[ -f "$state/started_at" ]]; then
    took=$(awk -v a="$(<"$state/started_at")" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')
  fi
  # Overwritten, not appended: the file is Kafka's alone and is sourced.
  {
    echo "# Written by hack/testenv/kafka.sh wait; kept across stop/start, removed by clean."
    echo "export KUBESIFT_KAFKA_BROKERS=$bootstrap"
  } >"$envfile.tmp"
  mv "$envfile.tmp" "$envfile"
  echo "kafka ready on $bootstrap${took:+ (start-up ${took}s)}"
}

tail_logs() {
  [[ -s "$logfile" ]] || return 0
  echo "----- last lines of $logfile" >&2
  tail -n 60 "$logfile" >&2
}

# stop_with SIGNAL GRACE: signal the broker and wait; escalate to SIGKILL.
stop_with() {
  local sig=$1 grace=$2 pid
  if ! pid=$(live_pid); then
    rm -f "$pidfile"
    log "not running"
    return 0
  fi
  local t0=$SECONDS
  kill "-$sig" "$pid" 2>/dev/null || true
  while is_ours "$pid" && ((SECONDS - t0 < grace)); do sleep 0.2; done
  if is_ours "$pid"; then
    log "pid $pid still alive after ${grace}s; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    while is_ours "$pid"; do sleep 0.1; done
  fi
  rm -f "$pidfile"
  log "stopped (pid $pid, ${sig}, $((SECONDS - t0))s)"
}

status() {
  local pid
  if pid=$(live_pid); then
    echo "kafka $version running: pid $pid, broker $bootstrap, controller 127.0.0.1:$cport, cluster $(cat "$state/cluster.id" 2>/dev/null || echo '?'), state $state"
    return 0
  fi
  if formatted; then
    echo "kafka stopped (data kept in $state)"
  else
    echo "kafka stopped (no state)"
  fi
  return 3
}

run_tool() {
  [[ $# -ge 1 ]] || die "usage: $0 run CLASS|ALIAS [ARGS...]"
  local cls=$1
  shift
  case $cls in
    topics) cls=org.apache.kafka.tools.TopicCommand ;;
    console-producer) cls=org.apache.kafka.tools.ConsoleProducer ;;
    console-consumer) cls=org.apache.kafka.tools.consumer.ConsoleConsumer ;;
    consumer-groups) cls=org.apache.kafka.tools.consumer.group.ConsumerGroupCommand ;;
  esac
  install
  exec "$java" -Xmx256m -cp "$(classpath)" \
    -Dlog4j2.configurationFile="$res/log4j2-tools.xml" "$cls" "$@"
}

cmd=${1:-}
[[ $# -gt 0 ]] && shift
case $cmd in
  install) install; echo "$libs" ;;
  start) start ;;
  wait) wait_ready ;;
  stop) lock_state; stop_with TERM "${KUBESIFT_KAFKA_STOP_TIMEOUT:-30}" ;;
  kill) lock_state; stop_with KILL 5 ;;
  clean)
    lock_state
    stop_with TERM "${KUBESIFT_KAFKA_STOP_TIMEOUT:-30}"
    rm -rf "$state" "$envfile"
    log "removed $state"
    ;;
  status) status ;;
  run) run_tool "$@" ;;
  *)
    sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//' >&2
    exit 2
    ;;
esac
