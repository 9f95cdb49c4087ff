#!/usr/bin/env bash
# Base images for the Dockerfile's FROM lines, made locally from Debian's packages,
# for machines that reach Debian's mirror but no image registry.
#
#   tests/image/bases.sh NAME:TAG...     e.g. debian:12.15 debian:12.15-slim
#
# Each NAME:TAG must be debian:<bookworm point release>[-slim]. One debootstrap
# (bookworm, minbase, with bookworm-updates and bookworm-security applied) makes the
# full base, as Docker's debian images are made; -slim is the same tree without
# documentation, man pages and locales, and with dpkg told to keep it that way.
# The root file systems are cached as tarballs under ~/.cache/capstan/images/, keyed
# on this script and the mirror (what decides their content), and imported into the
# container storage (podman/buildah, vfs driver) under the names given; an image
# already there with the same key is left alone.
#
# The point release is checked: if Debian's mirror now serves another one than the
# tag names, this fails and says so (bump the tags in the Dockerfile), instead of
# importing 12.16 under the name 12.15.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=containers.sh
source "$HERE/containers.sh"

MIRROR=${CAPSTAN_DEBIAN_MIRROR:-http://deb.debian.org/debian}
SECURITY_MIRROR=${CAPSTAN_DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
SUITE=bookworm
ARCH=$(dpkg --print-architecture)
IMAGES_DIR="$CAPSTAN_CACHE/images"

log() { printf '[bases %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# 0755: the tree's root becomes the image's /, which every user must be able to enter.
workdir() {
  local d
  d=$(mktemp -d "$IMAGES_DIR/rootfs.XXXXXX")
  chmod 755 "$d"
  echo "$d"
}
cleanup() {
  local d
  for d in "$IMAGES_DIR"/rootfs.*; do
    [[ -d $d ]] || continue
    # debootstrap mounts /proc and /sys in the target while it installs; never leave them.
    umount -R "$d/proc" 2>/dev/null || true
    umount -R "$d/sys" 2>/dev/null || true
    rm -rf --one-file-system "$d"
  done
  rm -f "$IMAGES_DIR"/rootfs.*.log "$IMAGES_DIR"/*.tmp
}
trap cleanup EXIT
trap "exit 130" INT TERM


# Writes the full (minbase) root file system of Debian $SUITE to tarball $1 and its
# point release to $1.version.
bootstrap() {
  local out=$1 dir
  dir=$(workdir)
  log "debootstrap $SUITE (minbase, $ARCH) from $MIRROR (about 1.5 minutes)"
  debootstrap --variant=minbase --arch="$ARCH" "$SUITE" "$dir" "$MIRROR" >"$dir.log" 2>&1 \
    || { tail -20 "$dir.log" >&2; die "debootstrap failed (log: $dir.log)"; }
  rm -f "$dir.log"
  rm -f "$dir/etc/apt/sources.list"
  cat >"$dir/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $MIRROR
Suites: $SUITE $SUITE-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $SECURITY_MIRROR
Suites: $SUITE-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  # Services never start inside an image build.
  printf '#!/bin/sh\nexit 101\n' >"$dir/usr/sbin/policy-rc.d"
  chmod 755 "$dir/usr/sbin/policy-rc.d"
  cp /etc/resolv.conf "$dir/etc/resolv.conf"
  log "applying $SUITE-updates and $SUITE-security"
  chroot "$dir" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive \
    sh -c 'apt-get update -qq && apt-get -y -qq upgrade' >"$dir.log" 2>&1 \
    || { tail -20 "$dir.log" >&2; die "upgrade in the new root file system failed"; }
  rm -f "$dir.log"
  # What a container runtime provides, or what differs per build, stays out of the image.
  rm -rf "$dir"/var/lib/apt/lists/* "$dir"/var/cache/apt/*.bin "$dir"/var/cache/apt/archives/*.deb \
    "$dir"/var/log/apt/* "$dir"/var/log/dpkg.log "$dir"/var/log/bootstrap.log "$dir"/var/log/alternatives.log \
    "$dir"/tmp/* "$dir"/root/.bash_history
  : >"$dir/etc/resolv.conf"
  : >"$dir/etc/machine-id"
  echo "$SUITE" >"$dir/etc/hostname"
  cat "$dir/etc/debian_version" >"$out.version"
  tar --numeric-owner --xattrs -C "$dir" -cf "$out.tmp" .
  mv "$out.tmp" "$out"
}

# Tarball $1 (full) -> $2 (slim): documentation, man pages and locales removed, and a
# dpkg configuration that keeps packages installed later from bringing them back.
slimify() {
  local full=$1 out=$2 dir
  dir=$(workdir)
  tar --numeric-owner --xattrs -C "$dir" -xf "$full"
  cat >"$dir/etc/dpkg/dpkg.cfg.d/slim" <<'EOF'
# A slim image: no documentation, man pages or translations (copyright files stay).
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
EOF
  find "$dir/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
  find "$dir/usr/share/doc" -mindepth 1 -type d -empty -delete
  rm -rf "$dir"/usr/share/man/* "$dir"/usr/share/groff/* "$dir"/usr/share/info/* \
    "$dir"/usr/share/lintian/* "$dir"/usr/share/linda/*
  find "$dir/usr/share/locale" -mindepth 1 -maxdepth 1 -not -name locale.alias -exec rm -rf {} +
  tar --numeric-owner --xattrs -C "$dir" -cf "$out.tmp" .
  mv "$out.tmp" "$out"
}

import() {  # tarball name:tag
  local tarball=$1 ref=$2 have want
  # The name `FROM debian:12.15` means anywhere (Docker Hub's library/debian), so the
  # lookup finds this image first and never a registry.
  [[ $ref == */* ]] || ref="docker.io/library/$ref"
  # An imported tarball is the image's one layer, and its digest the layer's diffID:
  # the image present is this one when the digests agree (a new import would change
  # the image's ID and with it every cached layer built on it).
  [[ -f $tarball.sha256 ]] || sha256sum "$tarball" | cut -d' ' -f1 >"$tarball.sha256"
  want="sha256:$(cat "$tarball.sha256")"
  have=$(ctr_podman image inspect --format '{{index .RootFS.Layers 0}}' "$ref" 2>/dev/null || true)
  if [[ $have == "$want" ]]; then
    log "$ref: present (${want:0:19})"
    return
  fi
  log "importing $ref from $tarball"
  ctr_podman import --quiet --message "capstan-base $KEY" \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["bash"]' "$tarball" "$ref" >/dev/null
}

# What decides the content: the two recipes below (as bash reads them, so comments do
# not count) and where the packages come from.
key() {
  (declare -f bootstrap slimify; echo "$MIRROR $SECURITY_MIRROR $SUITE $ARCH") | sha256sum | cut -c1-12
}

main() {
  (($# > 0)) || die "usage: $0 debian:<point release>[-slim]..."
  mkdir -p "$IMAGES_DIR"
  KEY=$(key)
  # Bases of earlier recipes go (each is ~200 MB).
  find "$IMAGES_DIR" -maxdepth 1 -name 'debian-*.tar*' -not -name "*-$KEY.tar*" -delete
  local full="$IMAGES_DIR/debian-$SUITE-$ARCH-$KEY.tar" slim="$IMAGES_DIR/debian-$SUITE-slim-$ARCH-$KEY.tar"
  if [[ ! -f $full ]]; then
    bootstrap "$full"
  fi
  local version
  version=$(cat "$full.version")
  for ref in "$@"; do
    local tag=${ref#debian:}
    [[ $ref == debian:* ]] || die "$ref: not a debian:TAG base this script can make"
    local want=${tag%-slim}
    if [[ $want != "$version" ]]; then
      die "$ref: Debian's $SUITE is now $version (bootstrapped from $MIRROR), not $want;" \
        "pin debian:$version in the Dockerfile's FROM lines"
    fi
    if [[ $tag == *-slim ]]; then
      [[ -f $slim ]] || slimify "$full" "$slim"
      import "$slim" "$ref"
    else
      import "$full" "$ref"
    fi
  done
}

main "$@"
exit
