#!/usr/bin/env bash
# Runs one REAL Elasticsearch 8.x node on 127.0.0.1 for kubesift's integration
# tests, built only from Maven Central artifacts (no Docker, no elastic.co).
#
#   hack/testenv/es.sh install   resolve jars + build the launcher into the cache (once)
#   hack/testenv/es.sh start     install if needed, start in the background (idempotent)
#   hack/testenv/es.sh wait      block until cluster health is yellow; prints the start-up
#                                time and writes $KUBESIFT_TESTENV/env.es
#   hack/testenv/es.sh stop      SIGTERM, then SIGKILL; keeps the data (a later start resumes it)
#   hack/testenv/es.sh clean     stop and delete the node's state (data, config, pid)
#   hack/testenv/es.sh status    exit 0 if running, 3 if not
#
# How: hack/testenv/es/ is a tiny Maven project. `mvn package
# dependency:copy-dependencies` resolves org.elasticsearch:elasticsearch (the
# server), org.elasticsearch.plugin:transport-netty4 (the real HTTP/transport
# layer) and org.elasticsearch.plugin:x-pack-core, and compiles a launcher
# (EsRunner) that constructs a stock org.elasticsearch.node.Node with those
# plugins loaded from the classpath -- the technique of Elasticsearch's own
# test framework (MockNode) and of codelibs' cluster-runner. It is then run
# with plain `java -cp`.
#
# What a distribution has and this node has NOT (those modules are not
# published to Maven Central): ingest-common processors, reindex
# (_reindex/_update_by_query/_delete_by_query), lang-painless (scripts),
# analysis-common (extra analyzers/filters), mapper-extras (scaled_float,
# match_only_text, ...), x-pack plugins (ILM and its _ilm API, security,
# stack templates such as the built-in logs-*-* template, ...). To compensate,
# es/src/.../TestenvShimPlugin.java adds thin adapters over server code for
# GET / and PUT/GET/DELETE _data_stream, and registers the index.lifecycle.*
# settings (accepted, but nothing executes ILM). Data streams themselves
# (composable templates, auto-creation on _bulk create, rollover), flattened,
# search, _count, _bulk etc. are the real server code.
#
# Environment:
#   KUBESIFT_CACHE          cache root (default ~/.cache/kubesift); jars under es/<version>/
#   KUBESIFT_TESTENV        runtime root (default <repo>/.testenv); state under es/, log in logs/es.log
#   KUBESIFT_ES_VERSION     Elasticsearch version (default 8.19.21; the launcher uses 8.19 APIs)
#   KUBESIFT_ES_PORT        HTTP port (default 19200)
#   KUBESIFT_ES_TRANSPORT_PORT  transport port (default 19300)
#   KUBESIFT_ES_HEAP        -Xms/-Xmx (default 1g)
#   KUBESIFT_ES_JAVA        java binary (default: java on PATH; needs >= 17)
#   KUBESIFT_ES_JAVA_OPTS   extra JVM options
#   KUBESIFT_ES_WAIT_TIMEOUT  seconds for `wait` (default 180)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
src="$here/es"
version="${KUBESIFT_ES_VERSION:-8.19.21}"
cache="${KUBESIFT_CACHE:-$HOME/.cache/kubesift}/es/$version"
testenv="${KUBESIFT_TESTENV:-$root/.testenv}"
state="$testenv/es"
logfile="$testenv/logs/es.log"
pidfile="$state/es.pid"
port="${KUBESIFT_ES_PORT:-19200}"
tport="${KUBESIFT_ES_TRANSPORT_PORT:-19300}"
heap="${KUBESIFT_ES_HEAP:-1g}"
java="${KUBESIFT_ES_JAVA:-java}"
wait_timeout="${KUBESIFT_ES_WAIT_TIMEOUT:-180}"
url="http://127.0.0.1:$port"
main_class=dev.kubesift.testenv.es.EsRunner

log() { echo "es: $*" >&2; }

# Key of the cached build: the launcher's sources and pom, plus the version.
build_key() {
  (cd "$src" && find pom.xml src config -type f | LC_ALL=C sort | xargs cat; echo "$version") | sha256sum | cut -c1-16
}

installed() {
  [[ -f "$cache/es-runner.jar" && -d "$cache/lib" && "$(cat "$cache/build.key" 2>/dev/null)" == "$(build_key)" ]]
}

check_java() {
  local v
  v=$("$java" -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java.specification.version = //p')
  if [[ -z "$v" || "${v%%.*}" -lt 17 ]]; then
    log "need Java >= 17 (got '${v:-none}' from $java); set KUBESIFT_ES_JAVA"
    exit 1
  fi
}

cmd_install() {
  if ! installed; then
    command -v mvn >/dev/null || { log "mvn not found (apt-get install maven)"; exit 1; }
    mkdir -p "$(dirname "$cache")"
    # Serialise concurrent installs of the same version. The lock fd is only
    # open in this subshell, so the node started later does not inherit it.
    (
      command -v flock >/dev/null && flock 9
      if ! installed; then
        build
      fi
    ) 9>"$cache.lock"
  fi
  echo "$cache"
}

build() {
  local t0 tmp
  t0=$(date +%s)
  tmp="$cache.tmp.$$"
  # We hold the lock: leftovers of failed builds can go. Runs in the locking
  # subshell, so this trap only cleans up after a failed build.
  rm -rf "$cache".tmp.*
  # The path is expanded now: tmp is local, and an EXIT trap that named it
  # fails under set -u once build has returned (that aborted a cold up.sh).
  # shellcheck disable=SC2064
  trap "rm -rf '$tmp'" EXIT
  mkdir -p "$tmp"
  log "resolving Elasticsearch $version from Maven Central and building the launcher into $cache"
  (cd "$src" && mvn -B -q -Dstyle.color=never -DskipTests \
    -Des.version="$version" \
    -Drunner.build.dir="$tmp/target" \
    -DoutputDirectory="$tmp/lib" \
    package dependency:copy-dependencies) 2>&1 | sed 's/\x1b\[[0-9;]*m//g' >&2
  mv "$tmp/target/es-runner.jar" "$tmp/es-runner.jar"
  rm -rf "$tmp/target"
  cp "$src/config/log4j2.properties" "$tmp/log4j2.properties"
  build_key >"$tmp/build.key"
  rm -rf "$cache"
  mv "$tmp" "$cache"
  log "installed in $(( $(date +%s) - t0 ))s"
}

# Prints the pid if our node is running.
running_pid() {
  local pid
  [[ -f "$pidfile" ]] || return 1
  pid=$(cat "$pidfile" 2>/dev/null) || return 1
  [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || return 1
  # Guard against a recycled pid.
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "$main_class" || return 1
  echo "$pid"
}

write_config() {
  mkdir -p "$state/config" "$state/data" "$state/logs" "$state/tmp" "$(dirname "$logfile")"
  cp "$cache/log4j2.properties" "$state/config/log4j2.properties"
  cat >"$state/config/elasticsearch.yml" <<EOF
# Written by hack/testenv/es.sh on every start; edit that script instead.
cluster.name: kubesift-test
node.name: kubesift-es
path.data: $state/data
path.logs: $state/logs
network.host: 127.0.0.1
http.port: $port
transport.port: $tport
discovery.type: single-node
xpack.security.enabled: false
# Tests fill small disks: never flip indices read-only on disk watermarks.
cluster.routing.allocation.disk.threshold_enabled: false
action.destructive_requires_name: false
EOF
}

cmd_start() {
  local pid
  if pid=$(running_pid); then
    log "already running (pid $pid) on $url"
    return 0
  fi
  check_java
  cmd_install >/dev/null
  write_config
  date +%s >"$state/start.time"
  echo "==== $(date -u +%FT%TZ) es.sh start ====" >>"$logfile"
  # The JVM flags are the relevant subset of what Elasticsearch's launcher adds
  # (SystemJvmOptions); log4j's own shutdown hook is off so that the node can
  # still log while it closes on SIGTERM.
  # shellcheck disable=SC2086
  nohup "$java" \
    -Xms"$heap" -Xmx"$heap" -Xss1m \
    -XX:+UseG1GC -XX:-OmitStackTraceInFastThrow \
    -Djava.awt.headless=true -Dfile.encoding=UTF-8 -Djna.nosys=true \
    -Djava.locale.providers=CLDR -Des.distribution.type=tar \
    -Des.networkaddress.cache.ttl=60 -Des.networkaddress.cache.negative.ttl=10 \
    -Dio.netty.noUnsafe=true -Dio.netty.noKeySetOptimization=true -Dio.netty.recycler.maxCapacityPerThread=0 \
    -Dlog4j.shutdownHookEnabled=false -Dlog4j2.disable.jmx=true -Dlog4j2.formatMsgNoLookups=true \
    -Djava.io.tmpdir="$state/tmp" \
    ${KUBESIFT_ES_JAVA_OPTS:-} \
    -cp "$cache/lib/*:$cache/es-runner.jar" \
    "$main_class" "$state" "$state/config" \
    >>"$logfile" 2>&1 </dev/null &
  echo $! >"$pidfile"
  log "started pid $! ($url, log $logfile)"
}

cmd_wait() {
  local t0 deadline pid now
  t0=$(cat "$state/start.time" 2>/dev/null || date +%s)
  deadline=$(( $(date +%s) + wait_timeout ))
  while :; do
    if curl -sf -o /dev/null --max-time 5 "$url/_cluster/health?wait_for_status=yellow&timeout=2s"; then
      break
    fi
    if ! pid=$(running_pid); then
      log "not running (see $logfile); last log lines:"
      tail -n 60 "$logfile" >&2 2>/dev/null || true
      exit 1
    fi
    now=$(date +%s)
    if (( now >= deadline )); then
      log "not healthy after ${wait_timeout}s (pid $pid); last log lines:"
      tail -n 60 "$logfile" >&2 2>/dev/null || true
      exit 1
    fi
    sleep 1
  done
  echo "export KUBESIFT_ES_URL=$url" >"$testenv/env.es"
  log "ready at $url, start-up took $(( $(date +%s) - t0 ))s"
}

cmd_stop() {
  local pid i
  if ! pid=$(running_pid); then
    rm -f "$pidfile"
    log "not running"
    return 0
  fi
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 60; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.5
  done
  if kill -0 "$pid" 2>/dev/null; then
    log "pid $pid ignored SIGTERM for 30s, sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null; do sleep 0.2; done
  fi
  rm -f "$pidfile"
  log "stopped (data kept in $state/data)"
}

cmd_clean() {
  cmd_stop
  rm -rf "$state"
  rm -f "$testenv/env.es"
  log "removed $state"
}

cmd_status() {
  local pid
  if pid=$(running_pid); then
    echo "running pid=$pid url=$url"
    curl -s --max-time 5 "$url/_cluster/health" || true
    echo
    return 0
  fi
  echo "stopped"
  return 3
}

case "${1:-}" in
  install) cmd_install ;;
  start) cmd_start ;;
  wait) cmd_wait ;;
  stop) cmd_stop ;;
  clean) cmd_clean ;;
  status) cmd_status ;;
  *)
    echo "usage: $0 {install|start|wait|stop|clean|status}" >&2
    exit 2
    ;;
esac
