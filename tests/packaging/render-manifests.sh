#!/usr/bin/env bash
# Regenerates manifests/ (the kustomize base) from the Helm chart's default render:
#   helm template capstan charts/capstan --namespace capstan-system --include-crds
# plus a Namespace object, so `kubectl apply -k manifests/` works on an empty cluster.
# tests/e2e/test_packaging.py fails when manifests/ and the chart drift apart.
# Needs helm on PATH (the test cluster's env provides it: source DIR/env).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
out="$root/manifests"
mkdir -p "$out"
rm -f "$out"/*.yaml
helm template capstan "$root/charts/capstan" --namespace capstan-system --include-crds |
  python3 "$here/split_render.py" "$out" capstan-system
echo "wrote $(ls "$out" | wc -l) files to $out"
