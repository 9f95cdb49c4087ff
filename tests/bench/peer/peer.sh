#!/usr/bin/env bash
# The peer controller for tests/bench/peer/compare.py: Argo Rollouts' controller
# (cmd/rollouts-controller), built from the Go modules pinned in versions.env and
# tools/go.{mod,sum}. Nothing fetched or built here is committed; only the pins are.
#
#   peer.sh pin     regenerate tools/go.{mod,sum} for $ARGO_ROLLOUTS_VERSION: its replace
#                   lines (the k8s.io staging modules and the rest) are copied from
#                   argo-rollouts' own go.mod, read from the module cache after
#                   `go mod download` (replace lines of a dependency are not inherited)
#   peer.sh build   build (or reuse) the controller; prints the bin dir
#   peer.sh bin     print the bin dir (after build)
#   peer.sh crds    print the directory of its CRDs (manifests/crds of the same module)
#
# Its metrics and health servers listen on all interfaces ("0.0.0.0:%d" is a constant,
# no flag). The build compiles a temporary copy of the module with that one constant's
# host replaced by $PEER_LISTEN_HOST (a replace line in a temporary copy of go.mod); the
# module cache is never changed, the copy is removed after the build.
#
# The binary is cached under ${CAPSTAN_CLUSTER_CACHE:-~/.cache/capstan}/peer-<key>/bin,
# keyed on versions.env and tools/go.{mod,sum}, like tests/cluster/cluster.sh.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=versions.env
source "$HERE/versions.env"
MODULE=github.com/argoproj/argo-rollouts
# Only this build uses a newer toolchain (the go command downloads it from the module
# proxy once); the control plane keeps GOTOOLCHAIN=local.
export GOTOOLCHAIN=$PEER_GOTOOLCHAIN
export GOFLAGS="-mod=mod"

log() { printf '[peer %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

cache_key() { cat "$HERE/versions.env" "$HERE/tools/go.mod" "$HERE/tools/go.sum" | sha256sum | cut -c1-12; }
CACHE=${CAPSTAN_CLUSTER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/capstan}
BIN_DIR="$CACHE/peer-${ARGO_ROLLOUTS_VERSION}-$(cache_key)/bin"

module_dir() {  # downloads the module (cheap when cached) and prints its directory
  (cd "$HERE/tools" && go mod download -json "$MODULE@$ARGO_ROLLOUTS_VERSION") |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])'
}

cmd_pin() {
  command -v go >/dev/null || die "go is not installed (run: make deps)"
  local tools=$HERE/tools
  rm -f "$tools/go.mod" "$tools/go.sum"
  (cd "$tools" && go mod init capstan.dev/tests/bench/peer/tools >/dev/null 2>&1)
  local dir
  dir=$(module_dir)
  # Every replace directive of argo-rollouts' go.mod, block or single line.
  awk '/^replace[ \t]*\(/ {p=1; print; next}
       p && /^\)/ {print; p=0; next}
       p {print}
       /^replace[ \t]+[^( \t]/ {print}' "$dir/go.mod" >>"$tools/go.mod"
  (cd "$tools" && go get "$MODULE@$ARGO_ROLLOUTS_VERSION" && nice -n 19 go mod tidy)
  log "pinned $MODULE $ARGO_ROLLOUTS_VERSION in $tools/go.mod ($(grep -c '=>' "$tools/go.mod") replace lines)"
}

cmd_build() {
  command -v go >/dev/null || die "go is not installed (run: make deps)"
  if [[ -x $BIN_DIR/rollouts-controller ]]; then echo "$BIN_DIR"; return 0; fi
  mkdir -p "$BIN_DIR"
  log "building rollouts-controller $ARGO_ROLLOUTS_VERSION with $GOTOOLCHAIN (first build takes minutes; cached afterwards)"
  local t0=$SECONDS tmp
  tmp=$(mktemp -d "$BIN_DIR/.build.XXXXXX")
  # A copy of the module in the temporary directory, its listen address rewritten, built
  # through a copy of tools/go.mod with a replace line to it (an overlay may not replace
  # files in the module cache).
  local dir
  dir=$(module_dir)
  grep -q '"0.0.0.0:%d"' "$dir/controller/controller.go" ||
    die "$dir/controller/controller.go no longer has the listen address this build rewrites"
  cp -r "$dir" "$tmp/src"
  chmod -R u+w "$tmp/src"
  sed -i "s/\"0.0.0.0:%d\"/\"$PEER_LISTEN_HOST:%d\"/" "$tmp/src/controller/controller.go"
  cp "$HERE/tools/go.sum" "$tmp/go.sum"
  { cat "$HERE/tools/go.mod"; echo "replace $MODULE => $tmp/src"; } >"$tmp/go.mod"
  # The machine is shared: the lowest priority.
  (cd "$HERE/tools" && nice -n 19 go build -modfile="$tmp/go.mod" -trimpath -ldflags='-s -w' \
    -o "$tmp/rollouts-controller" "$MODULE/cmd/rollouts-controller")
  mv "$tmp/rollouts-controller" "$BIN_DIR/rollouts-controller"
  rm -rf "$tmp"
  log "built rollouts-controller in $((SECONDS - t0))s"
  echo "$BIN_DIR"
}

case "${1:-}" in
  pin) cmd_pin ;;
  build) cmd_build ;;
  bin) echo "$BIN_DIR" ;;
  crds) echo "$(module_dir)/manifests/crds" ;;
  *) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
