#!/usr/bin/env bash
# A real Kubernetes control plane on loopback for Capstan's tests and demo:
# etcd, kube-apiserver, kube-controller-manager, kube-scheduler and KWOK (fake
# nodes and pod lifecycle), all built from the Go modules pinned in
# tests/cluster/versions.env and tests/cluster/tools/*/go.{mod,sum}.
#
#   cluster.sh build            build (or reuse) the binaries; prints the bin dir
#   cluster.sh up DIR           start everything in the background, state in DIR;
#                               waits for /readyz and Ready nodes; writes DIR/kubeconfig
#   cluster.sh down DIR         stop everything started by `up DIR` (no strays)
#   cluster.sh run DIR          `up`, then wait for Ctrl-C, then `down`
#   cluster.sh restart DIR NAME stop one server of `up DIR` (etcd, kube-apiserver, ...)
#                               and start it again with the same arguments; waits for
#                               the API server's /readyz (fault tests); after
#                               kube-apiserver, KCM, scheduler and KWOK restart too
#   cluster.sh bin              print the bin dir (after build)
#   cluster.sh fixture-up DIR   ctest fixture: `up`, or reuse $CAPSTAN_E2E_KUBECONFIG
#   cluster.sh fixture-down DIR ctest fixture: `down` (no-op when reusing)
#
# Options (environment; neither changes the binary cache key):
#   CAPSTAN_CLUSTER_NODES=N         fake nodes, 500 pods each (default 3)
#   CAPSTAN_CLUSTER_AUDIT_POLICY=F  the API server writes an audit log (policy file F)
#                                   to DIR/logs/audit.log (benchmarks count requests by
#                                   user agent there; apiserver_request_total has no
#                                   user-agent label)
#
# Every server binds 127.0.0.1 on a free port. Pod and Service IPs are fake
# (10.x ranges that exist only in the API) and nothing ever connects to them.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=versions.env
source "$HERE/versions.env"
export GOFLAGS="${GOFLAGS:-} -mod=mod"
export GOTOOLCHAIN="${GOTOOLCHAIN:-local}"

log() { printf '[cluster %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

cache_key() {
  cat "$HERE/versions.env" "$HERE"/tools/*/go.mod "$HERE"/tools/*/go.sum | sha256sum | cut -c1-12
}
BIN_DIR="${CAPSTAN_CLUSTER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/capstan}/cluster-${K8S_VERSION}-$(cache_key)/bin"

build_one() {  # module-dir output-names... -- packages...
  local mod=$1; shift
  local outs=() pkgs=() seen=0
  for a in "$@"; do
    if [[ $a == -- ]]; then seen=1; continue; fi
    if ((seen)); then pkgs+=("$a"); else outs+=("$a"); fi
  done
  local missing=0
  for o in "${outs[@]}"; do [[ -x $BIN_DIR/$o ]] || missing=1; done
  ((missing)) || return 0
  log "building ${outs[*]} from $mod (first build takes minutes; cached afterwards)"
  local t0=$SECONDS tmp
  tmp=$(mktemp -d "$BIN_DIR/.build.XXXXXX")
  (cd "$HERE/tools/$mod" && go build -trimpath -ldflags='-s -w' -o "$tmp/" "${pkgs[@]}")
  # `go build -o dir/` names a binary after its package path (etcd's server/v3
  # becomes "server"); a single output takes whatever single file was built.
  local built=("$tmp"/*)
  if ((${#outs[@]} == 1 && ${#built[@]} == 1)); then
    mv "${built[0]}" "$BIN_DIR/${outs[0]}"
  fi
  for o in "${outs[@]}"; do
    if [[ -x $tmp/$o ]]; then mv "$tmp/$o" "$BIN_DIR/$o"; fi
  done
  rm -rf "$tmp"
  for o in "${outs[@]}"; do [[ -x $BIN_DIR/$o ]] || die "build of $o produced no binary"; done
  log "built ${outs[*]} in $((SECONDS - t0))s"
}

cmd_build() {
  command -v go >/dev/null || die "go is not installed (run: make deps)"
  mkdir -p "$BIN_DIR"
  build_one k8s kube-apiserver kube-controller-manager kube-scheduler kubectl -- \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl
  build_one etcd etcd -- go.etcd.io/etcd/server/v3
  build_one kwok kwok -- sigs.k8s.io/kwok/cmd/kwok
  build_one helm helm -- helm.sh/helm/v3/cmd/helm
  echo "$BIN_DIR"
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

gen_certs() {  # DIR
  local d=$1/pki
  mkdir -p "$d"
  (
    cd "$d"
    openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 30 \
      -subj "/CN=capstan-test-ca" 2>/dev/null
    cat >apiserver.ext <<EOF
subjectAltName=IP:127.0.0.1,IP:10.96.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local
extendedKeyUsage=serverAuth
EOF
    openssl req -newkey rsa:2048 -nodes -keyout apiserver.key -out apiserver.csr \
      -subj "/CN=kube-apiserver" 2>/dev/null
    openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial \
      -out apiserver.crt -days 30 -extfile apiserver.ext 2>/dev/null
    printf 'extendedKeyUsage=clientAuth\n' >client.ext
    for who in "admin:system:masters" "kube-controller-manager:" "kube-scheduler:" "kwok:system:masters"; do
      local name=${who%%:*} org=${who#*:} subj
      case $name in
        kube-*) subj="/CN=system:$name" ;;
        *) subj="/O=$org/CN=$name" ;;
      esac
      openssl req -newkey rsa:2048 -nodes -keyout "$name.key" -out "$name.csr" -subj "$subj" 2>/dev/null
      openssl x509 -req -in "$name.csr" -CA ca.crt -CAkey ca.key -CAcreateserial \
        -out "$name.crt" -days 30 -extfile client.ext 2>/dev/null
    done
    openssl genrsa -out sa.key 2048 2>/dev/null
    openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
  )
}

write_kubeconfig() {  # DIR user port file
  local dir=$1 user=$2 port=$3 out=$4
  cat >"$out" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: capstan-test
  cluster:
    server: https://127.0.0.1:$port
    certificate-authority: $dir/pki/ca.crt
users:
- name: $user
  user:
    client-certificate: $dir/pki/$user.crt
    client-key: $dir/pki/$user.key
contexts:
- name: capstan-test
  context: {cluster: capstan-test, user: $user, namespace: default}
current-context: capstan-test
EOF
}

start_bg() {  # DIR name binary args...  (own process group; output to DIR/logs/name.log)
  local dir=$1 name=$2; shift 2
  mkdir -p "$dir/cmds"
  printf '%q ' "$@" >"$dir/cmds/$name"
  setsid "$@" >>"$dir/logs/$name.log" 2>&1 </dev/null &
  echo $! >"$dir/pids/$name"
}

stop_one() {  # DIR name: TERM its process group, KILL after 10 s
  local pid
  pid=$(cat "$1/pids/$2")
  kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
  local deadline=$((SECONDS + 10))
  while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.1; done
  kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
  while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
}

cmd_restart() {
  local dir=${1:?usage: cluster.sh restart DIR NAME} name=${2:?usage: cluster.sh restart DIR NAME}
  dir=$(cd "$dir" && pwd)
  [[ -f $dir/cmds/$name && -f $dir/pids/$name ]] || die "$name was not started by up $dir"
  local t0=$SECONDS cmd
  cmd=$(cat "$dir/cmds/$name")
  stop_one "$dir" "$name"
  eval "start_bg \"\$dir\" \"\$name\" $cmd"
  wait_for "$name" 60 "$BIN_DIR/kubectl" --kubeconfig "$dir/kubeconfig" get --raw /readyz ||
    { check_alive "$dir" "$name"; die "the API server is not ready after restarting $name"; }
  if [[ $name == kube-apiserver ]]; then
    # For a moment after it starts, a new API server answers watches with 403 (its RBAC
    # cache is not filled yet); KCM's, the scheduler's and KWOK's reflectors then back
    # off for up to ~100 s (seen in CI), and pods stop becoming ready: that measures the
    # test cluster, not the operator under test. On a control-plane node they restart
    # beside it; here they are restarted once the API server is ready (no leader election).
    local c
    for c in kube-controller-manager kube-scheduler kwok; do
      [[ -f $dir/cmds/$c && -f $dir/pids/$c ]] || continue
      cmd=$(cat "$dir/cmds/$c")
      stop_one "$dir" "$c"
      eval "start_bg \"\$dir\" \"\$c\" $cmd"
    done
    for c in kube-controller-manager kube-scheduler kwok; do
      [[ -f $dir/pids/$c ]] || continue
      check_alive "$dir" "$c" || die "$c did not come back after restarting $name"
    done
  fi
  log "restarted $name in $((SECONDS - t0))s"
}

wait_for() {  # description timeout-seconds command...
  local what=$1 timeout=$2; shift 2
  local deadline=$((SECONDS + timeout))
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS > deadline)); then return 1; fi
    sleep 0.2
  done
}

check_alive() {  # DIR name
  local pid
  pid=$(cat "$1/pids/$2")
  if ! kill -0 "$pid" 2>/dev/null; then
    log "$2 exited; last lines of $1/logs/$2.log:"
    tail -n 30 "$1/logs/$2.log" >&2
    return 1
  fi
}

cmd_up() {
  local dir=${1:?usage: cluster.sh up DIR}
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  if [[ -d $dir/pids ]] && ls "$dir"/pids/* >/dev/null 2>&1; then
    cmd_down "$dir"
  fi
  local bin
  bin=$(cmd_build | tail -n 1)
  local t0=$SECONDS
  rm -rf "$dir/pki" "$dir/etcd" "$dir/logs" "$dir/pids" "$dir/cmds"
  mkdir -p "$dir/logs" "$dir/pids"
  gen_certs "$dir"

  local etcd_port etcd_peer api_port kcm_port sched_port
  etcd_port=$(free_port); etcd_peer=$(free_port); api_port=$(free_port)
  kcm_port=$(free_port); sched_port=$(free_port)

  start_bg "$dir" etcd "$bin/etcd" --name capstan-test --data-dir "$dir/etcd" \
    --listen-client-urls "http://127.0.0.1:$etcd_port" \
    --advertise-client-urls "http://127.0.0.1:$etcd_port" \
    --listen-peer-urls "http://127.0.0.1:$etcd_peer" \
    --initial-advertise-peer-urls "http://127.0.0.1:$etcd_peer" \
    --initial-cluster "capstan-test=http://127.0.0.1:$etcd_peer" \
    --log-level warn \
    --quota-backend-bytes 4294967296 --unsafe-no-fsync
  wait_for etcd 30 curl -sf "http://127.0.0.1:$etcd_port/health" ||
    { check_alive "$dir" etcd; die "etcd did not become healthy"; }

  local audit=()
  if [[ -n ${CAPSTAN_CLUSTER_AUDIT_POLICY:-} ]]; then
    audit=(--audit-policy-file "$(realpath "$CAPSTAN_CLUSTER_AUDIT_POLICY")"
      --audit-log-path "$dir/logs/audit.log" --audit-log-format json --audit-log-maxbackup 0)
  fi
  start_bg "$dir" kube-apiserver "$bin/kube-apiserver" "${audit[@]}" \
    --etcd-servers "http://127.0.0.1:$etcd_port" \
    --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$api_port" \
    --endpoint-reconciler-type none \
    --tls-cert-file "$dir/pki/apiserver.crt" --tls-private-key-file "$dir/pki/apiserver.key" \
    --client-ca-file "$dir/pki/ca.crt" \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --service-account-key-file "$dir/pki/sa.pub" \
    --service-account-signing-key-file "$dir/pki/sa.key" \
    --service-cluster-ip-range 10.96.0.0/16 \
    --authorization-mode Node,RBAC --allow-privileged=true --profiling=false \
    --watch-cache=true --v=1
  write_kubeconfig "$dir" admin "$api_port" "$dir/kubeconfig"
  write_kubeconfig "$dir" kube-controller-manager "$api_port" "$dir/kcm.kubeconfig"
  write_kubeconfig "$dir" kube-scheduler "$api_port" "$dir/scheduler.kubeconfig"
  write_kubeconfig "$dir" kwok "$api_port" "$dir/kwok.kubeconfig"
  local k=("$bin/kubectl" --kubeconfig "$dir/kubeconfig")
  wait_for kube-apiserver 90 "${k[@]}" get --raw /readyz ||
    { check_alive "$dir" kube-apiserver; die "kube-apiserver did not become ready"; }

  start_bg "$dir" kube-controller-manager "$bin/kube-controller-manager" \
    --kubeconfig "$dir/kcm.kubeconfig" \
    --authentication-kubeconfig "$dir/kcm.kubeconfig" \
    --authorization-kubeconfig "$dir/kcm.kubeconfig" \
    --bind-address 127.0.0.1 --secure-port "$kcm_port" --leader-elect=false \
    --controllers deployment,replicaset,statefulset,daemonset,job,horizontalpodautoscaling,disruption,garbagecollector,namespace,endpointslice,serviceaccount,serviceaccount-token,root-ca-cert-publisher,ttl-after-finished,podgc \
    --root-ca-file "$dir/pki/ca.crt" \
    --service-account-private-key-file "$dir/pki/sa.key" \
    --use-service-account-credentials=true \
    --concurrent-deployment-syncs 10 --concurrent-replicaset-syncs 10 \
    --kube-api-qps 200 --kube-api-burst 400 \
    --horizontal-pod-autoscaler-sync-period 5s --v=1
  start_bg "$dir" kube-scheduler "$bin/kube-scheduler" \
    --kubeconfig "$dir/scheduler.kubeconfig" \
    --authentication-kubeconfig "$dir/scheduler.kubeconfig" \
    --authorization-kubeconfig "$dir/scheduler.kubeconfig" \
    --bind-address 127.0.0.1 --secure-port "$sched_port" --leader-elect=false --v=1
  start_bg "$dir" kwok "$bin/kwok" --kubeconfig "$dir/kwok.kubeconfig" \
    --config "$HERE/kwok-stages.yaml" \
    --manage-all-nodes=false \
    --manage-nodes-with-annotation-selector kwok.x-k8s.io/node=fake \
    --cidr 10.244.0.0/16 --node-ip 10.0.0.10 --server-address 127.0.0.1:0

  # Fake nodes (three unless CAPSTAN_CLUSTER_NODES); KWOK makes them Ready and plays
  # their pods' lifecycle.
  for ((i = 0; i < ${CAPSTAN_CLUSTER_NODES:-3}; i++)); do
    cat <<EOF
apiVersion: v1
kind: Node
metadata:
  name: kwok-node-$i
  annotations: {kwok.x-k8s.io/node: fake, node.alpha.kubernetes.io/ttl: "0"}
  labels: {type: kwok, kubernetes.io/hostname: kwok-node-$i, kubernetes.io/os: linux, kubernetes.io/arch: amd64}
status:
  allocatable: {cpu: "64", memory: 256Gi, pods: "500"}
  capacity: {cpu: "64", memory: 256Gi, pods: "500"}
---
EOF
  done | "${k[@]}" apply -f - >/dev/null
  for c in kube-controller-manager kube-scheduler kwok; do check_alive "$dir" "$c" || die "$c failed to start"; done
  # The TaintNodesByCondition admission plugin taints new nodes not-ready; the
  # node-lifecycle controller would lift it, but a simulated cluster runs none.
  "${k[@]}" taint nodes --all node.kubernetes.io/not-ready:NoSchedule- >/dev/null 2>&1 || true
  wait_for nodes 60 "${k[@]}" wait --for=condition=Ready node --all --timeout=1s ||
    { for c in kube-controller-manager kube-scheduler kwok; do check_alive "$dir" "$c" || true; done
      die "fake nodes did not become Ready"; }
  # The default ServiceAccount must exist before pods can be created.
  wait_for serviceaccount 60 "${k[@]}" -n default get serviceaccount default ||
    die "the serviceaccount controller did not create default/default"
  cat >"$dir/env" <<EOF
export KUBECONFIG=$dir/kubeconfig
export PATH=$bin:\$PATH
EOF
  log "control plane ready in $((SECONDS - t0))s: KUBECONFIG=$dir/kubeconfig (apiserver https://127.0.0.1:$api_port)"
}

cmd_down() {
  local dir=${1:?usage: cluster.sh down DIR}
  [[ -d $dir/pids ]] || return 0
  local pids=() f
  # Stop clients first, the API server next, etcd last.
  for name in kwok kube-scheduler kube-controller-manager kube-apiserver etcd; do
    f=$dir/pids/$name
    [[ -f $f ]] || continue
    local pid
    pid=$(cat "$f")
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    pids+=("$pid")
    rm -f "$f"
  done
  local deadline=$((SECONDS + 15))
  for pid in "${pids[@]}"; do
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.1; done
    kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
  done
  log "control plane in $dir stopped"
}

cmd_run() {
  local dir=${1:?usage: cluster.sh run DIR}
  trap 'cmd_down "$dir"; exit 130' INT TERM
  cmd_up "$dir"
  log "press Ctrl-C to stop"
  while true; do sleep 3600 & wait $!; done
}

case "${1:-}" in
  build) cmd_build ;;
  bin) echo "$BIN_DIR" ;;
  up) cmd_up "${2:-}" ;;
  down) cmd_down "${2:-}" ;;
  run) cmd_run "${2:-}" ;;
  restart) cmd_restart "${2:-}" "${3:-}" ;;
  fixture-up)
    if [[ -n ${CAPSTAN_E2E_KUBECONFIG:-} ]]; then
      mkdir -p "$2"
      printf 'export KUBECONFIG=%s\nexport PATH=%s:$PATH\n' "$CAPSTAN_E2E_KUBECONFIG" "$(cmd_build | tail -n1)" >"$2/env"
      log "reusing the cluster of $CAPSTAN_E2E_KUBECONFIG"
    else
      cmd_up "$2"
    fi ;;
  fixture-down)
    if [[ -z ${CAPSTAN_E2E_KUBECONFIG:-} ]]; then cmd_down "$2"; fi ;;
  *) sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
