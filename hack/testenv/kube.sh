#!/usr/bin/env bash
# Runs a real etcd + kube-apiserver on 127.0.0.1 for kubesift's integration
# tests: real authentication (static tokens), RBAC, and real auditing to both
# a JSON log file and an mTLS webhook that the Go tests serve themselves.
#
#   hack/testenv/kube.sh start    start etcd and kube-apiserver (idempotent)
#   hack/testenv/kube.sh wait     block until ready, then write env.kube
#   hack/testenv/kube.sh status   show what runs; exit 0 only if ready
#   hack/testenv/kube.sh stop     SIGTERM (then SIGKILL) both; idempotent
#   hack/testenv/kube.sh clean    stop and delete all state
#
# Only kube-apiserver and etcd run: there is no kube-controller-manager,
# scheduler or kubelet. Pods can be created and read back but never run;
# ServiceAccount tokens/"default" ServiceAccounts are never created by a
# controller (the ServiceAccount admission plugin is therefore disabled so
# that pods can be created in fresh namespaces); garbage collection and
# namespace deletion finalization do not happen (a deleted namespace stays
# Terminating).
#
# Environment (defaults in brackets):
#   KUBESIFT_TESTENV              state root [<repo>/.testenv]; ours is ./kube
#   KUBESIFT_ETCD_PORT            etcd client port [12379]; peer port is +1
#   KUBESIFT_KUBE_PORT            kube-apiserver secure port [16443]
#   KUBESIFT_AUDIT_WEBHOOK_PORT   port the test audit receiver listens on [19443]
#   KUBESIFT_AUDIT_WEBHOOK_MODE   batch | blocking | blocking-strict [batch]
#   KUBESIFT_KUBE_WAIT_TIMEOUT    seconds `wait` waits for readiness [120]
#   KUBESIFT_KUBE_BIN_DIR         dir with prebuilt etcd + kube-apiserver
#                                 [output of hack/testenv/build-kube.sh]
#
# Needs only bash, openssl, curl and the two binaries.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)

testenv=${KUBESIFT_TESTENV:-$root/.testenv}
mkdir -p "$testenv"
testenv=$(cd "$testenv" && pwd) # absolute: paths end up in configs and env.kube
state="$testenv/kube"
pki="$state/pki"
envfile="$testenv/env.kube"

etcd_port=${KUBESIFT_ETCD_PORT:-12379}
etcd_peer_port=$((etcd_port + 1))
kube_port=${KUBESIFT_KUBE_PORT:-16443}
webhook_port=${KUBESIFT_AUDIT_WEBHOOK_PORT:-19443}
webhook_mode=${KUBESIFT_AUDIT_WEBHOOK_MODE:-batch}
wait_timeout=${KUBESIFT_KUBE_WAIT_TIMEOUT:-120}

kube_url="https://127.0.0.1:$kube_port"
etcd_url="http://127.0.0.1:$etcd_port"
policy="$here/kube/audit-policy.yaml"
audit_log="$state/audit.log"
admin_token_file="$state/admin.token"
user_token_file="$state/user.token"
admin_kubeconfig="$state/admin.kubeconfig"

log() { echo "kube.sh: $*" >&2; }
die() { log "error: $*"; exit 1; }

# ---------------------------------------------------------------- processes

# pid of a running daemon we started, or nothing. Checks the command name as
# well as the pid so that a recycled pid (after a reboot or a long time) is not
# mistaken for our process.
running_pid() { # name
  local pidfile="$state/$1.pid" pid comm
  [[ -f $pidfile ]] || return 0
  pid=$(<"$pidfile")
  [[ $pid =~ ^[0-9]+$ ]] || { rm -f "$pidfile"; return 0; }
  if kill -0 "$pid" 2>/dev/null; then
    if [[ -r /proc/$pid/comm ]]; then
      comm=$(cat "/proc/$pid/comm" 2>/dev/null) || comm="" # may exit meanwhile
      # zombies (reaped later by init) count as dead
      if [[ $comm == "$1" ]] && ! grep -q '^State:[[:space:]]*Z' "/proc/$pid/status" 2>/dev/null; then
        echo "$pid"
        return 0
      fi
    else
      echo "$pid" # no /proc (not Linux): trust kill -0
      return 0
    fi
  fi
  rm -f "$pidfile"
}

port_in_use() { # port
  # bash's /dev/tcp needs no extra tools; a refused loopback connect is instant.
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# Starts a daemon detached from the caller: own session (a Ctrl-C or the end
# of the calling job/test harness does not kill it), stdin from /dev/null and
# output into its log (so callers waiting for our stdout/stderr to close, such
# as `go test` or CI steps, are not held open), and the lock fd 9 closed (else
# the daemon would hold the start/stop lock forever). The pid is written by
# the process itself right before exec, so it is right even if setsid forks.
launch() { # name logfile cmd...
  local name=$1 logfile=$2
  shift 2
  local sess=()
  command -v setsid >/dev/null && sess=(setsid)
  rm -f "$state/$name.pid"
  # shellcheck disable=SC2016 # $$ and $@ are for the inner bash
  ${sess[@]+"${sess[@]}"} bash -c 'echo $$ >"$0"; exec "$@"' "$state/$name.pid" "$@" \
    </dev/null >>"$logfile" 2>&1 9>&- &
  # Wait until the pid file exists and the exec has happened (the process
  # carries the daemon's name), so running_pid() is reliable from now on.
  local i pid
  for ((i = 0; i < 100; i++)); do
    if [[ -s $state/$name.pid ]]; then
      pid=$(<"$state/$name.pid")
      [[ ! -r /proc/$pid/comm || $(<"/proc/$pid/comm") == "$name" ]] && return 0
      kill -0 "$pid" 2>/dev/null || break
    fi
    sleep 0.05
  done
  tail -n 30 "$logfile" >&2 || true
  die "$name did not start (see $logfile)"
}

stop_one() { # name grace-seconds
  local name=$1 grace=$2 pid i
  pid=$(running_pid "$name")
  [[ -n $pid ]] || return 0
  log "stopping $name (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < grace * 10; i++)); do
    [[ -n $(running_pid "$name") ]] || { rm -f "$state/$name.pid"; return 0; }
    sleep 0.1
  done
  log "$name did not exit within ${grace}s, sending SIGKILL"
  kill -KILL "$pid" 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do
    [[ -n $(running_pid "$name") ]] || break
    sleep 0.1
  done
  rm -f "$state/$name.pid"
}

# Serialises start/stop/clean of concurrent callers (e.g. several test
# packages bootstrapping the environment at once). flock is util-linux and
# almost always there; without it we just run unserialised.
lock() {
  mkdir -p "$state"
  command -v flock >/dev/null || return 0
  exec 9>"$state/.lock"
  flock -w 300 9 || die "could not lock $state/.lock"
}

bin_dir() {
  if [[ -n ${KUBESIFT_KUBE_BIN_DIR:-} ]]; then
    echo "$KUBESIFT_KUBE_BIN_DIR"
  else
    # Instant when cached; a cold build takes ~20 min and says so on stderr.
    "$here/build-kube.sh"
  fi
}

# --------------------------------------------------------------------- PKI

# All material is generated once and kept, so restarts (and clients holding
# the CA or tokens) keep working; `clean` throws it away.

new_ca() { # name CN
  [[ -f $pki/$1.crt ]] && return 0
  openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days 3650 \
    -keyout "$pki/$1.key" -out "$pki/$1.crt" -subj "/CN=$2" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -addext "subjectKeyIdentifier=hash" 2>/dev/null
}

new_cert() { # name CN ca usage(serverAuth|clientAuth) [SAN]
  local name=$1 cn=$2 ca=$3 usage=$4 san=${5:-}
  [[ -f $pki/$name.crt ]] && return 0
  local ext="$pki/$name.ext"
  {
    echo "basicConstraints=critical,CA:FALSE"
    echo "keyUsage=critical,digitalSignature,keyEncipherment"
    echo "extendedKeyUsage=$usage"
    echo "subjectKeyIdentifier=hash"
    echo "authorityKeyIdentifier=keyid"
    [[ -z $san ]] || echo "subjectAltName=$san"
  } >"$ext"
  openssl req -new -newkey rsa:2048 -nodes -sha256 \
    -keyout "$pki/$name.key" -out "$pki/$name.csr" -subj "/CN=$cn" 2>/dev/null
  # Random positive serial (<20 bytes) instead of a .srl file per CA.
  openssl x509 -req -sha256 -days 3650 -in "$pki/$name.csr" \
    -CA "$pki/$ca.crt" -CAkey "$pki/$ca.key" -set_serial "0x$(openssl rand -hex 15)" \
    -extfile "$ext" -out "$pki/$name.crt" 2>/dev/null
  rm -f "$pki/$name.csr" "$ext"
}

gen_pki() {
  mkdir -p "$pki"
  chmod 700 "$pki"
  # Cluster CA: signs the apiserver serving cert; also accepted for x509
  # client certificates (--client-ca-file) should a test want one.
  new_ca ca kubesift-testenv-ca
  # The Kubernetes service names and its ClusterIP are included so that the
  # cert is also valid for in-cluster style addresses, as in a real cluster.
  new_cert apiserver kube-apiserver ca serverAuth \
    "IP:127.0.0.1,DNS:localhost,IP:10.96.0.1,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"

  # ServiceAccount token signing key pair (issuer signs, authenticator verifies).
  if [[ ! -f $pki/sa.key ]]; then
    openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$pki/sa.key" 2>/dev/null
    openssl pkey -in "$pki/sa.key" -pubout -out "$pki/sa.pub" 2>/dev/null
  fi

  # Audit webhook, mTLS in both directions, with two separate CAs so that a
  # test cannot accidentally pass by trusting the wrong one:
  #  - audit-webhook-ca signs the TEST RECEIVER's serving cert; kube-apiserver
  #    trusts it via the webhook kubeconfig.
  #  - audit-client-ca signs kube-apiserver's client cert
  #    (CN=kube-apiserver-audit); the receiver verifies clients against it.
  new_ca audit-webhook-ca kubesift-audit-webhook-ca
  new_cert audit-webhook-server kubesift-audit-receiver audit-webhook-ca serverAuth \
    "IP:127.0.0.1,DNS:localhost"
  new_ca audit-client-ca kubesift-audit-client-ca
  new_cert audit-client kube-apiserver-audit audit-client-ca clientAuth

  chmod 600 "$pki"/*.key
}

gen_tokens() {
  local f
  for f in "$admin_token_file" "$user_token_file"; do
    if [[ ! -s $f ]]; then
      (umask 077 && openssl rand -hex 32 >"$f")
    fi
  done
  # Static token file: token,user,uid,"group1,group2". system:authenticated is
  # added by the apiserver to every authenticated user, so the unprivileged
  # user lists no groups; the admin is a member of system:masters, which is
  # bound to cluster-admin by RBAC bootstrap policy (and bypasses authz).
  (
    umask 077
    printf '%s,kubesift-admin,kubesift-admin,"system:masters"\n' "$(<"$admin_token_file")"
    printf '%s,kubesift-user,kubesift-user\n' "$(<"$user_token_file")"
  ) >"$state/tokens.csv"
}

# Configs are rewritten on every start: cheap, and they pick up port changes.
gen_configs() {
  (
    umask 077
    cat >"$admin_kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: kubesift-testenv
  cluster:
    server: $kube_url
    certificate-authority: $pki/ca.crt
users:
- name: kubesift-admin
  user:
    token: $(<"$admin_token_file")
contexts:
- name: kubesift-admin@kubesift-testenv
  context:
    cluster: kubesift-testenv
    user: kubesift-admin
current-context: kubesift-admin@kubesift-testenv
EOF
  )
  # kubeconfig-format file telling kube-apiserver where to POST audit
  # EventLists, which CA to trust for the receiver and which client cert to
  # present.
  cat >"$state/audit-webhook.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: audit-receiver
  cluster:
    server: https://127.0.0.1:$webhook_port/audit
    certificate-authority: $pki/audit-webhook-ca.crt
users:
- name: kube-apiserver-audit
  user:
    client-certificate: $pki/audit-client.crt
    client-key: $pki/audit-client.key
contexts:
- name: audit
  context:
    cluster: audit-receiver
    user: kube-apiserver-audit
current-context: audit
EOF
}

# -------------------------------------------------------------------- etcd

start_etcd() {
  local bin=$1
  [[ -z $(running_pid etcd) ]] || { log "etcd already running"; return 0; }
  port_in_use "$etcd_port" && die "127.0.0.1:$etcd_port is in use by something else (another etcd? set KUBESIFT_ETCD_PORT)"
  port_in_use "$etcd_peer_port" && die "127.0.0.1:$etcd_peer_port (etcd peer) is in use (set KUBESIFT_ETCD_PORT)"
  log "starting etcd on $etcd_url"
  # Single member, plain HTTP on loopback only. --unsafe-no-fsync: test data
  # is disposable and fsync dominates latency on CI disks. The quota is raised
  # from the 2 GiB default so long test runs never hit "mvcc: database space
  # exceeded" (kube-apiserver compacts every 5 min, but nobody defragments).
  # --initial-cluster-state new only matters on first start; with existing
  # data etcd resumes from its data dir.
  launch etcd "$state/etcd.log" "$bin/etcd" \
    --name=kubesift \
    --data-dir="$state/etcd" \
    --listen-client-urls="$etcd_url" \
    --advertise-client-urls="$etcd_url" \
    --listen-peer-urls="http://127.0.0.1:$etcd_peer_port" \
    --initial-advertise-peer-urls="http://127.0.0.1:$etcd_peer_port" \
    --initial-cluster="kubesift=http://127.0.0.1:$etcd_peer_port" \
    --initial-cluster-state=new \
    --initial-cluster-token=kubesift-testenv \
    --unsafe-no-fsync \
    --quota-backend-bytes=$((8 * 1024 * 1024 * 1024)) \
    --log-level=warn
  # kube-apiserver would retry etcd on its own, but failing here gives a
  # much clearer error than an apiserver that never becomes ready.
  local i
  for ((i = 0; i < 300; i++)); do
    curl -fsS --max-time 2 "$etcd_url/health" 2>/dev/null | grep -q '"health":"true"' && return 0
    [[ -n $(running_pid etcd) ]] || { tail -n 30 "$state/etcd.log" >&2; die "etcd exited"; }
    sleep 0.1
  done
  tail -n 30 "$state/etcd.log" >&2
  die "etcd not healthy after 30s"
}

# ---------------------------------------------------------- kube-apiserver

start_apiserver() {
  local bin=$1
  [[ -z $(running_pid kube-apiserver) ]] || { log "kube-apiserver already running"; return 0; }
  port_in_use "$kube_port" && die "127.0.0.1:$kube_port is in use by something else (set KUBESIFT_KUBE_PORT)"
  log "starting kube-apiserver on $kube_url (audit webhook -> https://127.0.0.1:$webhook_port/audit, $webhook_mode mode)"
  date +%s%N >"$state/started-at" # `wait` reports start-up time from here
  # shellcheck disable=SC2054 # commas are inside flag values
  local args=(
    # --- serving: loopback only
    --bind-address=127.0.0.1
    --advertise-address=127.0.0.1
    --secure-port="$kube_port"
    --tls-cert-file="$pki/apiserver.crt"
    --tls-private-key-file="$pki/apiserver.key"
    # Required: with the default "lease" reconciler kube-apiserver refuses
    # to start on a loopback advertise address ("may not be in the loopback
    # range"). The "kubernetes" Service then simply has no endpoints, which
    # nothing here needs. (It logs a harmless "Found stale data, removed
    # previous endpoints" error at every start because of this.)
    --endpoint-reconciler-type=none
    # --- storage
    --storage-backend=etcd3
    --etcd-servers="$etcd_url"
    # --- authentication: static bearer tokens; anonymous stays enabled (the
    # default) so tests can send anonymous requests, which RBAC then denies
    # except for the public-info endpoints (/version, /healthz, ...).
    --token-auth-file="$state/tokens.csv"
    --client-ca-file="$pki/ca.crt"
    --anonymous-auth=true
    # --- authorization
    --authorization-mode=Node,RBAC
    # --- service accounts: issuer and keys are mandatory flags; no
    # controller creates tokens or default ServiceAccounts (see top).
    --service-account-issuer=https://kubernetes.default.svc.cluster.local
    --service-account-key-file="$pki/sa.pub"
    --service-account-signing-key-file="$pki/sa.key"
    --service-cluster-ip-range=10.96.0.0/16
    # Without kube-controller-manager no "default" ServiceAccount exists in
    # new namespaces, and this admission plugin would reject every pod.
    --disable-admission-plugins=ServiceAccount
    --allow-privileged=true
    # APF only adds queuing/latency noise in a single-client test setup.
    --enable-priority-and-fairness=false
    --profiling=false
    # --- auditing: JSON log file ...
    --audit-policy-file="$policy"
    --audit-log-path="$audit_log"
    --audit-log-format=json
    --audit-log-mode=blocking # written before the response is sent: tests can read it right away
    --audit-log-maxsize=1024  # MB; rotation is tested elsewhere
    --audit-log-maxbackup=5
    # ... and the webhook (mTLS) that the Go tests serve. Without a receiver
    # kube-apiserver only logs send errors and drops the batch.
    --audit-webhook-config-file="$state/audit-webhook.kubeconfig"
    --audit-webhook-mode="$webhook_mode"
    --audit-webhook-batch-max-wait=1s
    --audit-webhook-initial-backoff=1s
    --v=1
  )
  launch kube-apiserver "$state/kube-apiserver.log" "$bin/kube-apiserver" "${args[@]}"
}

# ------------------------------------------------------------- subcommands

cmd_start() {
  lock
  local bin
  bin=$(bin_dir)
  [[ -x $bin/etcd && -x $bin/kube-apiserver ]] || die "no etcd/kube-apiserver in $bin"
  command -v openssl >/dev/null || die "openssl not found"
  command -v curl >/dev/null || die "curl not found"
  case $webhook_mode in batch | blocking | blocking-strict) ;; *) die "KUBESIFT_AUDIT_WEBHOOK_MODE must be batch, blocking or blocking-strict" ;; esac
  [[ -f $policy ]] || die "missing $policy"

  if [[ -n $(running_pid kube-apiserver) && -z $(running_pid etcd) ]]; then
    # An apiserver without its etcd is useless; restart it cleanly after etcd.
    stop_one kube-apiserver 30
  fi
  if [[ -n $(running_pid kube-apiserver) ]]; then
    log "already running (state: $state)"
    return 0
  fi
  rm -f "$envfile" # only `wait` (re)writes it, once the server is ready
  gen_pki
  gen_tokens
  gen_configs
  start_etcd "$bin"
  start_apiserver "$bin"
  log "started; logs: $state/etcd.log $state/kube-apiserver.log; run '$0 wait'"
}

curl_admin() { # path -> prints "<http code>" and body to $2
  curl -sS -o "$2" -w '%{http_code}' --max-time 5 --cacert "$pki/ca.crt" \
    -H "Authorization: Bearer $(<"$admin_token_file")" "$kube_url$1" 2>/dev/null || true
}

fail_with_logs() {
  log "error: $*"
  rm -f "$envfile" # not usable: don't let a test runner pick it up
  local f
  for f in etcd kube-apiserver; do
    echo "----- tail of $state/$f.log -----" >&2
    # Skip the per-event dumps kube-apiserver logs while no audit receiver
    # listens; they would bury the actual error.
    grep -v -e ' AUDIT: ' -e '^Impacted events:' "$state/$f.log" 2>/dev/null | tail -n 40 >&2 || true
  done
  exit 1
}

write_envfile() {
  local tmp="$envfile.tmp.$$"
  {
    echo "# Written by hack/testenv/kube.sh wait; removed by stop/clean."
    printf 'export KUBESIFT_KUBE_URL=%q\n' "$kube_url"
    printf 'export KUBESIFT_KUBE_CA=%q\n' "$pki/ca.crt"
    printf 'export KUBESIFT_KUBE_ADMIN_TOKEN_FILE=%q\n' "$admin_token_file"
    printf 'export KUBESIFT_KUBE_USER_TOKEN_FILE=%q\n' "$user_token_file"
    printf 'export KUBESIFT_KUBECONFIG_ADMIN=%q\n' "$admin_kubeconfig"
    printf 'export KUBESIFT_AUDIT_LOG=%q\n' "$audit_log"
    printf 'export KUBESIFT_AUDIT_WEBHOOK_ADDR=%q\n' "127.0.0.1:$webhook_port"
    printf 'export KUBESIFT_AUDIT_WEBHOOK_CERT=%q\n' "$pki/audit-webhook-server.crt"
    printf 'export KUBESIFT_AUDIT_WEBHOOK_KEY=%q\n' "$pki/audit-webhook-server.key"
    printf 'export KUBESIFT_AUDIT_WEBHOOK_CLIENT_CA=%q\n' "$pki/audit-client-ca.crt"
    printf 'export KUBESIFT_AUDIT_POLICY=%q\n' "$policy"
  } >"$tmp"
  mv "$tmp" "$envfile"
}

cmd_wait() {
  [[ -f $admin_token_file && -f $pki/ca.crt ]] || die "not started (no state in $state); run '$0 start'"
  local body="$state/.wait.body" code="" stage=readyz path
  local deadline=$((SECONDS + wait_timeout))
  # 1. /readyz (as admin) covers etcd, informers and every post-start hook,
  #    including poststarthook/rbac/bootstrap-roles.
  # 2. The system namespaces are created by a controller loop inside the
  #    apiserver that /readyz does not wait for; tests expect them.
  # 3. A bootstrap ClusterRole and ClusterRoleBinding, as a direct check that
  #    RBAC policy is in place (the unprivileged-user tests depend on it).
  for path in /readyz /api/v1/namespaces/default /api/v1/namespaces/kube-system \
    /apis/rbac.authorization.k8s.io/v1/clusterroles/cluster-admin \
    /apis/rbac.authorization.k8s.io/v1/clusterrolebindings/system:basic-user; do
    stage=$path
    while :; do
      [[ -n $(running_pid etcd) ]] || fail_with_logs "etcd is not running"
      [[ -n $(running_pid kube-apiserver) ]] || fail_with_logs "kube-apiserver is not running"
      code=$(curl_admin "$path" "$body")
      if [[ $code == 200 ]]; then
        [[ $path != /readyz || $(<"$body") == ok ]] && break
      fi
      ((SECONDS < deadline)) || {
        [[ $path != /readyz ]] || curl_admin "/readyz?verbose" "$body" >/dev/null
        cat "$body" >&2 2>/dev/null || true
        fail_with_logs "timed out after ${wait_timeout}s waiting for $stage (last HTTP status: ${code:-none})"
      }
      sleep 0.25
    done
  done
  rm -f "$body"
  write_envfile
  local took=""
  if [[ -f $state/started-at ]]; then
    local t0 t1
    t0=$(<"$state/started-at")
    t1=$(date +%s%N)
    local ds=$(((t1 - t0) / 100000000)) # tenths of a second
    took=" $((ds / 10)).$((ds % 10))s after start"
  fi
  log "ready:$took; $kube_url; source $envfile"
}

cmd_status() {
  local e a rc=0 code
  e=$(running_pid etcd)
  a=$(running_pid kube-apiserver)
  echo "state:          $state"
  if [[ -n $e ]]; then echo "etcd:           running (pid $e) on $etcd_url"; else echo "etcd:           stopped"; fi
  if [[ -n $a ]]; then echo "kube-apiserver: running (pid $a) on $kube_url"; else echo "kube-apiserver: stopped"; fi
  if [[ -n $a && -f $admin_token_file ]]; then
    code=$(curl_admin /readyz /dev/null)
    echo "readyz:         HTTP ${code:-none}"
    [[ $code == 200 ]] || rc=1
  else
    rc=1
  fi
  [[ -f $envfile ]] && echo "env file:       $envfile"
  return "$rc"
}

cmd_stop() {
  [[ -d $state ]] || return 0
  lock
  rm -f "$envfile"
  # apiserver first: it would otherwise spin on a vanished etcd. Its graceful
  # shutdown drains requests and flushes audit buffers (the webhook backend
  # may retry an unreachable receiver for a while), hence the longer grace.
  stop_one kube-apiserver 60
  stop_one etcd 30
}

cmd_clean() {
  cmd_stop
  rm -rf "$state"
  rm -f "$envfile"
  log "removed $state"
}

case ${1:-} in
  start) cmd_start ;;
  wait) cmd_wait ;;
  status) cmd_status ;;
  stop) cmd_stop ;;
  clean) cmd_clean ;;
  *)
    echo "usage: $0 start|wait|status|stop|clean" >&2
    exit 2
    ;;
esac
