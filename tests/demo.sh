#!/usr/bin/env bash
# `make demo`: Capstan's main job, shown on a cluster.
#
#   tests/demo.sh BUILD_DIR CLUSTER_DIR
#
# Uses $KUBECONFIG when it is set; otherwise starts the local simulated
# cluster (tests/cluster/cluster.sh) in CLUSTER_DIR and stops it at the end.
# Then: installs the CRDs, runs `capstan run`, applies a Release, waits for it
# to become Ready, rolls out a new image, rolls out a broken image and watches
# Capstan roll it back by itself.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
BUILD=$(cd "${1:-build}" && pwd)
CLUSTER_DIR=${2:-$BUILD/demo-cluster}
CAPSTAN=$BUILD/capstan
NS=capstan-demo

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

started_cluster=0
op_pid=
cleanup() {
  [[ -n $op_pid ]] && kill "$op_pid" 2>/dev/null && wait "$op_pid" 2>/dev/null || true
  if ((started_cluster)); then "$HERE/cluster/cluster.sh" down "$CLUSTER_DIR"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

BIN=$("$HERE/cluster/cluster.sh" build | tail -n 1)
export PATH="$BIN:$PATH"
if [[ -z ${KUBECONFIG:-} ]]; then
  say "No KUBECONFIG given: starting a local simulated cluster (etcd, kube-apiserver, KCM, scheduler, KWOK)"
  "$HERE/cluster/cluster.sh" up "$CLUSTER_DIR"
  started_cluster=1
  export KUBECONFIG=$CLUSTER_DIR/kubeconfig
fi
kubectl get nodes

say "Installing the CRDs"
kubectl apply --server-side --force-conflicts -f "$ROOT/crds/"
kubectl wait --for=condition=Established crd/releases.capstan.dev --timeout=60s

say "Starting capstan run (logs: $CLUSTER_DIR/capstan.log)"
mkdir -p "$CLUSTER_DIR"
"$CAPSTAN" run --namespace "$NS" --health_address 127.0.0.1:0 --log_format text \
  --leader_election_namespace "$NS" >"$CLUSTER_DIR/capstan.log" 2>&1 &
op_pid=$!

kubectl create namespace "$NS" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
release() {
  cat <<EOF
apiVersion: capstan.dev/v1alpha1
kind: Release
metadata:
  name: shop
  namespace: $NS
spec:
  replicas: 3
  template:
    metadata:
      labels: {app: shop}
    spec:
      containers:
      - name: web
        image: $1
        ports: [{name: http, containerPort: 8080}]
  service:
    ports: [{name: http, port: 80, targetPort: http}]
  disruptionBudget: {minAvailable: 2}
  strategy:
    type: RollingUpdate
    rollingUpdate: {maxSurge: 1, maxUnavailable: 0}
EOF
}
show() {
  kubectl -n "$NS" get release,deployment,service,pdb,controllerrevision
}
wait_phase() {
  local phase=$1 deadline=$((SECONDS + 120))
  until [[ $(kubectl -n "$NS" get rel shop -o jsonpath='{.status.phase}') == "$phase" ]]; do
    if ((SECONDS > deadline)); then echo "timed out waiting for phase $phase" >&2; tail -20 "$CLUSTER_DIR/capstan.log" >&2; exit 1; fi
    sleep 0.5
  done
}

say "1. A Release becomes Ready"
release registry.example.com/shop/web:1.0 | kubectl apply -f -
kubectl -n "$NS" wait --for=condition=Ready release/shop --timeout=120s
show

say "2. A new image rolls out (maxSurge 1, maxUnavailable 0)"
release registry.example.com/shop/web:1.1 | kubectl apply -f -
wait_phase Progressing || true
kubectl -n "$NS" wait --for=condition=Ready release/shop --timeout=120s
show

say "3. A broken image (its pods crash-loop) is rolled back by Capstan, by itself"
release registry.example.com/shop/web:crashloop | kubectl apply -f -
wait_phase RolledBack
kubectl -n "$NS" get release shop -o wide
echo
kubectl -n "$NS" get deployment shop -o jsonpath='Deployment image is back to: {.spec.template.spec.containers[0].image}{"\n"}'
kubectl -n "$NS" get events.events.k8s.io --field-selector reportingController=capstan.dev/capstan \
  -o custom-columns=TYPE:.type,REASON:.reason,NOTE:.note

echo "The failed revision is remembered and not retried until the spec changes"
echo "or someone runs: kubectl -n $NS annotate release shop capstan.dev/retry=\$(date +%s)"

bluegreen() {
  cat <<EOF
apiVersion: capstan.dev/v1alpha1
kind: Release
metadata:
  name: pay
  namespace: $NS
spec:
  replicas: 2
  template:
    metadata:
      labels: {app: pay}
    spec:
      containers:
      - name: api
        image: $1
        ports: [{name: http, containerPort: 8080}]
  service:
    ports: [{name: http, port: 80, targetPort: http}]
  strategy:
    type: BlueGreen
    blueGreen: {autoPromote: false, scaleDownDelaySeconds: 10}
EOF
}
color() { kubectl -n "$NS" get service pay -o jsonpath='{.spec.selector.capstan\.dev/color}'; }
wait_rel() {  # name phase
  local deadline=$((SECONDS + 120))
  until [[ $(kubectl -n "$NS" get rel "$1" -o jsonpath='{.status.phase}') == "$2" ]]; do
    if ((SECONDS > deadline)); then echo "timed out waiting for $1 phase $2" >&2; tail -20 "$CLUSTER_DIR/capstan.log" >&2; exit 1; fi
    sleep 0.5
  done
}

say "4. A BlueGreen Release: blue serves"
bluegreen registry.example.com/pay/api:3.0 | kubectl apply -f -
kubectl -n "$NS" wait --for=condition=Ready release/pay --timeout=120s
echo "Service pay selects: $(color)"

say "5. A new image comes up on green behind pay-preview and waits for a person"
bluegreen registry.example.com/pay/api:3.1 | kubectl apply -f -
wait_rel pay Previewing
kubectl -n "$NS" get rel pay -o jsonpath='{.status.message}{"\n"}'
echo "Service pay still selects: $(color)"
rev=$(kubectl -n "$NS" get rel pay -o jsonpath='{.status.currentRevision}')
kubectl -n "$NS" annotate release pay "capstan.dev/promote=$rev"
until [[ $(color) == green ]]; do sleep 0.2; done
echo "Promoted in one write: Service pay selects $(color); blue stays up for 10 s"
kubectl -n "$NS" get rel pay -o wide

say "6. A broken preview never touches traffic"
bluegreen registry.example.com/pay/api:crashloop | kubectl apply -f -
wait_rel pay Degraded
kubectl -n "$NS" get rel pay -o jsonpath='{.status.message}{"\n"}'
echo "Service pay still selects: $(color)"
kubectl -n "$NS" get events.events.k8s.io --field-selector reportingController=capstan.dev/capstan \
  -o custom-columns=TYPE:.type,REASON:.reason,NOTE:.note | grep -E "REASON|Promoted|PreviewFailed"

say "Done."
