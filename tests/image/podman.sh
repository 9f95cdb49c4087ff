#!/usr/bin/env bash
# podman with the storage and runtime make image uses (containers.sh), e.g.
#   tests/image/podman.sh images
set -euo pipefail
# shellcheck source=containers.sh
source "$(dirname "${BASH_SOURCE[0]}")/containers.sh"
ctr_podman "$@"
