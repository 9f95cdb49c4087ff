# Sourced by tests/image/*.sh: how podman and buildah run on our machines (root, no
# registry). Checked in /work/shared/notes: crun refuses this machine's hybrid cgroups,
# so runc with cgroupfs; the vfs storage driver (no overlay mounts to leave behind);
# raising the default rlimits is refused, so containers get explicit ones.
#
# Images live in a storage of their own under ~/.cache/capstan/containers, so the
# layer cache survives between runs and never mixes with another storage driver's.
CAPSTAN_CACHE=${CAPSTAN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/capstan}
CTR_ROOT=${CAPSTAN_CONTAINERS_ROOT:-$CAPSTAN_CACHE/containers/storage}
CTR_RUNROOT=${CAPSTAN_CONTAINERS_RUNROOT:-/run/capstan-containers}
CTR_STORAGE=(--root "$CTR_ROOT" --runroot "$CTR_RUNROOT" --storage-driver vfs)
CTR_ULIMITS=(--ulimit nofile=1024:1024 --ulimit nproc=1024:1024)

ctr_podman() { podman "${CTR_STORAGE[@]}" --runtime runc --cgroup-manager cgroupfs "$@"; }
ctr_buildah() { buildah "${CTR_STORAGE[@]}" "$@"; }
# runc, cgroupfs, default ulimits (tests/image/containers.conf).
export CONTAINERS_CONF=${CONTAINERS_CONF:-$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/containers.conf}
