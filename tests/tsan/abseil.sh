#!/usr/bin/env bash
# abseil built with ThreadSanitizer, for the TSan build of Capstan (make tsan).
#
# Capstan synchronises with absl::Mutex and absl::Notification. Debian's libabsl is not built
# with -fsanitize=thread, so TSan would not see the happens-before those give and would report
# races on everything they guard. This script builds the same abseil from Debian's source
# package (the version of the installed libabsl-dev, with Debian's patches and options.h, so
# the headers are Debian's) with clang and -fsanitize=thread, plus tests/tsan/abseil-*.patch
# (fixes of TSan false positives inside abseil's .cc files, never its headers), and installs
# the static libraries under a cache prefix keyed on the version, the flags, the compiler,
# this script and the patches. A second run finds the prefix and returns at once.
#
# Prints the prefix (for CMAKE_PREFIX_PATH) on stdout; progress goes to stderr.
# Environment: CAPSTAN_CACHE (default ~/.cache/capstan), JOBS (default 2).
set -euo pipefail

log() { echo "tsan/abseil: $*" >&2; }

version=$(dpkg-query -W -f='${Version}' libabsl-dev 2>/dev/null) \
  || { log "libabsl-dev is not installed (make deps)"; exit 1; }
upstream=${version#*:}
upstream=${upstream%-*}
cxx=${CAPSTAN_TSAN_CXX:-clang++}
# Patches applied on top of Debian's (tests/tsan/abseil-*.patch; each says why).
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# -O1 -g as the Capstan TSan build; C++17 and static archives as Debian's own build
# (debian/rules: -DCMAKE_CXX_STANDARD=17 -DBUILD_SHARED_LIBS=OFF for the .a files).
flags="-fsanitize=thread -O1 -g"
key=$({
  echo "$version"
  echo "$flags"
  "$cxx" --version | head -1
  sha256sum <"${BASH_SOURCE[0]}"
  cat "$here"/abseil-*.patch
} | sha256sum | cut -c1-12)

cache=${CAPSTAN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/capstan}/tsan
prefix=$cache/abseil-$version-$key
if [ -f "$prefix/.complete" ]; then
  echo "$prefix"
  exit 0
fi

mkdir -p "$cache"
# Two clones building at once wait for each other instead of building twice.
exec 9>"$cache/abseil.lock"
flock 9
if [ -f "$prefix/.complete" ]; then
  echo "$prefix"
  exit 0
fi

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

src=$cache/src-$version
if [ ! -f "$src/.complete" ]; then
  command -v dpkg-source >/dev/null || { log "dpkg-source missing (apt-get install dpkg-dev)"; exit 1; }
  if ! apt-cache showsrc "abseil=$version" 2>/dev/null | grep -q "^Version: $version\$"; then
    # No deb-src entry yet: the same mirror as the binary packages, as /etc/apt/sources.list.d
    # has them (deb822), then one apt-get update.
    codename=$(. /etc/os-release && echo "$VERSION_CODENAME")
    log "adding deb-src for $codename and running apt-get update"
    as_root tee /etc/apt/sources.list.d/capstan-src.sources >/dev/null <<EOF
# Source packages (deb-src) for Capstan's tests/tsan/abseil.sh: the ThreadSanitizer build of
# abseil is compiled from the same Debian source as the installed libabsl-dev.
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: $codename $codename-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb-src
URIs: http://deb.debian.org/debian-security
Suites: $codename-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
    as_root apt-get update -qq
  fi
  rm -rf "$src"
  mkdir -p "$src"
  log "apt-get source abseil=$version"
  # apt-get source unpacks with dpkg-source, which applies Debian's patches (debian/patches).
  (cd "$src" && apt-get source -qq "abseil=$version" >&2)
  touch "$src/.complete"
fi
tree=$src/abseil-$upstream
[ -f "$tree/CMakeLists.txt" ] || { log "no $tree/CMakeLists.txt"; exit 1; }

build=$cache/build-$key
rm -rf "$build" "$prefix"
# The unpacked source stays as Debian ships it; the patches go on a copy.
mkdir -p "$build"
cp -a "$tree" "$build/src"
for p in "$here"/abseil-*.patch; do
  log "applying $(basename "$p")"
  patch -s -p1 -d "$build/src" <"$p" >&2
done
log "building abseil $version with $cxx $flags (a few minutes, once per version)"
nice -n 5 cmake -S "$build/src" -B "$build/obj" -G Ninja -Wno-dev \
  -DCMAKE_CXX_COMPILER="$cxx" -DCMAKE_BUILD_TYPE=None -DCMAKE_CXX_FLAGS="$flags" \
  -DCMAKE_CXX_STANDARD=17 -DBUILD_SHARED_LIBS=OFF -DCMAKE_POSITION_INDEPENDENT_CODE=ON \
  -DBUILD_TESTING=OFF -DABSL_BUILD_TESTING=OFF -DCMAKE_INSTALL_PREFIX="$prefix" >&2
nice -n 5 cmake --build "$build/obj" -j "${JOBS:-2}" >&2
cmake --install "$build/obj" >&2
rm -rf "$build"

# The headers Capstan compiles against here must be the ones the rest of the system has
# (Debian's options.h: no std:: aliases, inline namespace), or the two builds differ in ABI.
if [ -d /usr/include/absl ] && ! diff -rq "$prefix/include/absl" /usr/include/absl >&2; then
  log "the rebuilt headers differ from /usr/include/absl"
  exit 1
fi
touch "$prefix/.complete"
log "installed in $prefix"
echo "$prefix"
