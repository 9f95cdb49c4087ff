#!/usr/bin/env bash
# `make demo`: Capstan's main job, shown on a cluster.
#
#   tests/demo.sh BUILD_DIR CLUSTER_DIR
#
# Uses $KUBECONFIG and the kubectl on PATH when KUBECONFIG is set (nothing else is
# built or started); otherwise builds (once, cached) and starts the local simulated
# cluster (tests/cluster/cluster.sh) in CLUSTER_DIR and stops it at the end.
# Then: installs the CRDs, runs `capstan run`, and tells the story with the kubectl
# plugin (`kubectl capstan`, BUILD_DIR/kubectl-capstan on PATH): a Release becomes
# Ready, a new image rolls out, a broken image is rolled back by Capstan and undone in
# spec, a BlueGreen preview waits for `kubectl capstan promote`.
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

export PATH="$BUILD:$PATH"  # kubectl-capstan, the plugin (a link to capstan)
if [[ -n ${KUBECONFIG:-} ]]; then
  command -v kubectl >/dev/null || { echo "KUBECONFIG is set but kubectl is not on PATH" >&2; exit 1; }
else
  BIN=$("$HERE/cluster/cluster.sh" build | tail -n 1)
  export PATH="$BIN:$PATH"
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
run() { printf '\033[2m$ %s\033[0m\n' "$*"; "$@"; }

say "1. A Release becomes Ready (kubectl capstan status: what CI runs after kubectl apply)"
release registry.example.com/shop/web:1.0 | kubectl apply -f -
run kubectl capstan -n "$NS" status shop --timeout 2m
run kubectl capstan -n "$NS" get shop

say "2. A new image rolls out (maxSurge 1, maxUnavailable 0)"
release registry.example.com/shop/web:1.1 | kubectl apply -f -
run kubectl capstan -n "$NS" status shop --timeout 2m
show

say "3. A broken image (its pods crash-loop) is rolled back by Capstan, by itself"
release registry.example.com/shop/web:crashloop | kubectl apply -f -
rc=0; run kubectl capstan -n "$NS" status shop --timeout 3m || rc=$?
echo "kubectl capstan status exited $rc (1: the revision failed and was rolled back)"
[[ $rc == 1 ]] || { tail -20 "$CLUSTER_DIR/capstan.log" >&2; exit 1; }
kubectl -n "$NS" get deployment shop -o jsonpath='Deployment image is back to: {.spec.template.spec.containers[0].image}{"\n"}'
run kubectl capstan -n "$NS" history shop
kubectl -n "$NS" get events.events.k8s.io --field-selector reportingController=capstan.dev/capstan \
  -o custom-columns=TYPE:.type,REASON:.reason,NOTE:.note

say "3b. The spec still names the broken image: undo puts the last good template back"
run kubectl capstan -n "$NS" undo shop
run kubectl capstan -n "$NS" status shop --timeout 2m

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

say "4. A BlueGreen Release: blue serves"
bluegreen registry.example.com/pay/api:3.0 | kubectl apply -f -
run kubectl capstan -n "$NS" status pay --timeout 2m
echo "Service pay selects: $(color)"

say "5. A new image comes up on green behind pay-preview and waits for a person"
bluegreen registry.example.com/pay/api:3.1 | kubectl apply -f -
run kubectl capstan -n "$NS" status pay --until Previewing --timeout 2m
run kubectl capstan -n "$NS" get pay
echo "Service pay still selects: $(color)"
run kubectl capstan -n "$NS" promote pay
run kubectl capstan -n "$NS" status pay --timeout 2m
echo "Promoted in one write: Service pay selects $(color); blue stays up for 10 s"
kubectl -n "$NS" get rel pay -o wide

say "6. A broken preview never touches traffic"
bluegreen registry.example.com/pay/api:crashloop | kubectl apply -f -
run kubectl capstan -n "$NS" status pay --timeout 3m || echo "(exit $?: the preview failed)"
run kubectl capstan -n "$NS" get pay
echo "Service pay still selects: $(color)"
kubectl -n "$NS" get events.events.k8s.io --field-selector reportingController=capstan.dev/capstan \
  -o custom-columns=TYPE:.type,REASON:.reason,NOTE:.note | grep -E "REASON|Promoted|PreviewFailed"

say "Done."
