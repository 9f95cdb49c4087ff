#!/usr/bin/env bash
# The operator image from the repository's Dockerfile, without a registry.
#
#   tests/image/image.sh build     bases (tests/image/bases.sh), then buildah bud
#                                  --pull=never; tags capstan:<version>; prints sizes
#   tests/image/image.sh name      prints the image name make image tags
#
# The build stage reaches Debian's mirror as it would anywhere (host network: no
# container network set-up on our machines). Layers are cached in the container storage
# under ~/.cache/capstan/containers (--layers), and the apt and ccache directories in
# buildah cache mounts there too, so an unchanged tree rebuilds in seconds and a small
# change recompiles only what changed.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SRC=$(cd "$HERE/../.." && pwd)
# shellcheck source=containers.sh
source "$HERE/containers.sh"
# buildah keeps cache mounts (RUN --mount=type=cache) under $TMPDIR/buildah-cache-<uid>.
export TMPDIR="$CAPSTAN_CACHE/containers/tmp"

log() { printf '[image %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

version() {
  sed -n 's/^project(capstan VERSION \([0-9][0-9.]*\) .*/\1/p' "$SRC/CMakeLists.txt"
}

image_name() { echo "localhost/capstan:$(version)"; }

revision() {
  local rev
  rev=$(git -C "$SRC" rev-parse HEAD 2>/dev/null) || { echo unknown; return; }
  if [[ -n $(git -C "$SRC" status --porcelain --untracked-files=no 2>/dev/null) ]]; then
    rev="$rev-dirty"
  fi
  echo "$rev"
}

# The FROM images of the Dockerfile (not earlier stages' names, not `scratch`: the empty
# image, which buildah needs from nowhere).
bases() {
  awk 'toupper($1) == "FROM" { ref = $2; if (ref ~ /^--/) ref = $3; print ref }' "$SRC/Dockerfile" \
    | grep -v -x -F -f <(awk 'toupper($1) == "FROM" && toupper($(NF-1)) == "AS" { print $NF }' \
      "$SRC/Dockerfile"; echo scratch) | sort -u
}

build() {
  local name ver
  ver=$(version)
  [[ -n $ver ]] || die "no project(capstan VERSION ...) in CMakeLists.txt"
  name=$(image_name)
  mkdir -p "$TMPDIR"
  mapfile -t from < <(bases)
  "$HERE/bases.sh" "${from[@]}"
  log "buildah bud $name (revision $(revision))"
  local start=$SECONDS
  local bud=(ctr_buildah bud --pull=never --layers --network host --runtime runc
    "${CTR_ULIMITS[@]}" --build-arg VERSION="$ver" --build-arg REVISION="$(revision)"
    -f "$SRC/Dockerfile")
  local out="$TMPDIR/bud.log"
  "${bud[@]}" -t "$name" "$SRC" 2>&1 | tee "$out"
  # The build stage's last image gets a tag of its own, so its layers (the cache the
  # next build starts from) are never dangling and survive the prune below. buildah
  # prints each step's image as `--> ID`; the last one before stage 2 is the build
  # stage's. (A separate `bud --target build -t` would commit a copy: minutes on vfs.)
  local build_id
  build_id=$(awk '/^\[2\/2\]/ { exit } /^--> [0-9a-f]+$/ { id = $2 } END { print id }' "$out")
  [[ -n $build_id ]] || die "no build stage image in buildah's output ($out)"
  ctr_podman tag "$build_id" "localhost/capstan-build:$ver"
  relabel "$name" org.opencontainers.image.revision "$(revision)"
  log "built $name in $((SECONDS - start)) s"
  # With vfs every layer is a full copy of its file system: drop what no tag reaches
  # any more (the previous build's layers), so the storage does not grow per commit.
  # (A pass removes leaves only: repeat until a pass removes nothing.)
  while [[ -n $(ctr_podman image prune -f) ]]; do :; done
  size "$name"
}

# buildah 1.28 reuses a cached LABEL step when only the ARG it expands changed (a new
# commit keeps the previous commit's revision label); set the label again if so.
relabel() {
  local name=$1 key=$2 want=$3 have ctr
  have=$(ctr_podman image inspect --format "{{index .Labels \"$key\"}}" "$name")
  [[ $have != "$want" ]] || return 0
  log "$key: $have -> $want (a layer cache hit kept the old value)"
  ctr=$(ctr_buildah from --pull-never "$name")
  ctr_buildah config --label "$key=$want" "$ctr"
  ctr_buildah commit --quiet --rm "$ctr" "$name" >/dev/null
}

# Uncompressed: the image's layers as stored. Compressed: its layers gzipped, as a
# registry stores and serves them (podman save --compress to a directory; the sum of
# the manifest's layer and config sizes).
size() {
  local name=$1 dir bytes compressed
  bytes=$(ctr_podman image inspect --format '{{.Size}}' "$name")
  mkdir -p "$TMPDIR"
  dir=$(mktemp -d "$TMPDIR/save.XXXXXX")
  ctr_podman save --quiet --compress --format docker-dir -o "$dir/image" "$name"
  compressed=$(python3 -c '
import json, sys
m = json.load(open(sys.argv[1]))
print(sum(l["size"] for l in m["layers"]) + m["config"]["size"])' "$dir/image/manifest.json")
  rm -rf "$dir"
  printf '%s: %s MB uncompressed, %s MB compressed (gzip layers)\n' "$name" \
    "$(awk -v b="$bytes" 'BEGIN { printf "%.1f", b / 1e6 }')" \
    "$(awk -v b="$compressed" 'BEGIN { printf "%.1f", b / 1e6 }')"
}

case "${1:-}" in
  build) build ;;
  name) image_name ;;
  size) size "$(image_name)" ;;
  *) die "usage: $0 build|name|size" ;;
esac
exit
