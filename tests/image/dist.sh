#!/usr/bin/env bash
# The release archive a user downloads beside the image:
#
#   tests/image/dist.sh OUT_DIR
#
# writes OUT_DIR/capstan_<version>_linux_amd64.tar.gz with `capstan` and
# `kubectl-capstan` (the same binary, a hard link: kubectl finds plugins by that name)
# and OUT_DIR/SHA256SUMS. The binary is the one the image ships (built in the
# Dockerfile's clean Debian 12 build stage, stripped), copied out of capstan:<version>:
# what the archive holds and what the image runs are one build. It is fully static
# (CAPSTAN_STATIC: glibc and every library inside), so it runs on any linux/amd64; the
# check below fails the archive if it is not.
# The archive is reproducible: sorted names, the commit's time, owner 0, gzip -n.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SRC=$(cd "$HERE/../.." && pwd)
# shellcheck source=containers.sh
source "$HERE/containers.sh"

out=${1:?usage: $0 OUT_DIR}
image=$("$HERE/image.sh" name)
version=${image##*:}
arch=$(dpkg --print-architecture)
[[ $arch == amd64 ]] || { echo "dist: linux/amd64 archives are built on amd64 (this is $arch)" >&2; exit 1; }
name="capstan_${version}_linux_amd64"
mkdir -p "$out"
out=$(cd "$out" && pwd)
stage=$(mktemp -d)
cid=
trap 'rm -rf "$stage"; [[ -z $cid ]] || ctr_podman rm --force "$cid" >/dev/null' EXIT

cid=$(ctr_podman create "$image")
mkdir "$stage/$name"
ctr_podman cp "$cid:/usr/local/bin/capstan" "$stage/$name/capstan"
ctr_podman rm --force "$cid" >/dev/null
cid=
chmod 0755 "$stage/$name/capstan"
if readelf -l "$stage/$name/capstan" | grep -q INTERP; then
  echo "dist: the image's binary is dynamically linked (it asks for a program interpreter)" >&2
  exit 1
fi
ln "$stage/$name/capstan" "$stage/$name/kubectl-capstan"
got=$(ctr_podman run --rm --network none "$image" version)
[[ $got == "capstan $version" ]] || { echo "dist: the image's binary says '$got', not capstan $version" >&2; exit 1; }
revision=$(ctr_podman image inspect --format '{{index .Labels "org.opencontainers.image.revision"}}' "$image")
cat >"$stage/$name/README.txt" <<TXT
Capstan $version for linux/amd64 (revision $revision)

  capstan           the operator and its commands (capstan --help)
  kubectl-capstan   the same binary; on PATH, kubectl runs it as \`kubectl capstan\`

One static executable (built on Debian 12, glibc 2.36 and OpenSSL 3 inside): it needs
no shared library. TLS to an analysis provider without a CA of its own trusts the
system's bundle (SSL_CERT_FILE, or OpenSSL's /usr/lib/ssl/cert.pem); Environment freeze
windows read time zones from /usr/share/zoneinfo (tzdata).

The image: ghcr.io/capstan-dev/capstan:$version (the Helm chart's default).
TXT
mtime=$(git -C "$SRC" log -1 --format=%ct 2>/dev/null || date +%s)
tar --sort=name --mtime="@$mtime" --owner=0 --group=0 --numeric-owner -C "$stage" -cf - "$name" \
  | gzip -n -9 >"$out/$name.tar.gz"
(cd "$out" && sha256sum "$name.tar.gz" >SHA256SUMS)
echo "$out/$name.tar.gz ($(du -k "$out/$name.tar.gz" | cut -f1) KB)"
cat "$out/SHA256SUMS"
