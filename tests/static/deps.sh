#!/usr/bin/env bash
# Static archives of the libraries Debian ships only as shared objects (or whose archives
# Capstan cannot use), for the fully static binary (cmake -DCAPSTAN_STATIC=ON, the image).
#
# cpprestsdk, fmt, spdlog, prometheus-cpp and libpq are built from Debian's own source
# packages (apt-get source: Debian's version and patches) as static archives, -O2,
# -ffunction-sections -fdata-sections (so the link's --gc-sections drops what Capstan does
# not call), no PIC, and only the parts Capstan uses: no tests, samples, websockets or
# compression in cpprestsdk; prometheus-cpp's core only (Capstan serves /metrics itself);
# libpq without readline, zlib, ICU, GSSAPI or LDAP (OpenSSL only). They are installed,
# headers included, under a cache prefix keyed on this script, the source versions and the
# compiler; Capstan compiles against that prefix's headers (ahead of /usr/include). A
# second run finds the prefix and returns at once.
#
# Versions: the installed -dev package's source version for cpprest, fmtlib, spdlog and
# prometheus-cpp. libpq: the newest postgresql-15 source the mirror serves. (The -dev
# package may come from bookworm-security while the mirror serves only the main suite's
# source, 404 for the newer one; libpq is then built from the older source with its own
# headers, never mixed with /usr/include/postgresql.)
#
# Abseil, yaml-cpp and OpenSSL are not built here: Debian ships their .a files
# (CAPSTAN_STATIC_DEPS; libssl-dev's libssl.a and libcrypto.a).
#
# Prints the prefix (for -DCAPSTAN_STATIC_PREFIX) on stdout; progress goes to stderr.
# Environment: CAPSTAN_CACHE (default ~/.cache/capstan), JOBS (default 2).
set -euo pipefail

log() { printf '[static %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

cache=${CAPSTAN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/capstan}
jobs=${JOBS:-2}
cc=${CC:-gcc}
cxx=${CXX:-g++}
# -fno-pie: the static binary is not position independent (-static, not -static-pie).
# Executables that configure steps link need -no-pie then (gcc defaults to PIE on Debian;
# without it CMake's compiler check fails quietly and no package config is found).
flags="-O2 -ffunction-sections -fdata-sections -fno-pie"

# Source package and version for each library, from the installed -dev packages.
srcver() {
  dpkg-query -W -f='${source:Version}' "$1" 2>/dev/null || die "$1 is not installed (make deps)"
}
declare -A version=(
  [cpprest]=$(srcver libcpprest-dev)
  [fmtlib]=$(srcver libfmt-dev)
  [spdlog]=$(srcver libspdlog-dev)
  [prometheus-cpp]=$(srcver prometheus-cpp-dev)
)

# A deb-src entry for the suites the binary packages come from (deb822 or one-line
# sources), then one apt-get update; nothing when apt already knows the sources.
ensure_deb_src() {
  if apt-cache showsrc fmtlib 2>/dev/null | grep -q '^Version:'; then
    return
  fi
  command -v dpkg-source >/dev/null || die "dpkg-source missing (apt-get install dpkg-dev)"
  local entries
  entries=$({
    # deb822: every "Types: deb" stanza, as deb-src.
    for f in /etc/apt/sources.list.d/*.sources; do
      [ -f "$f" ] || continue
      awk 'BEGIN { RS = ""; ORS = "\n\n" } /(^|\n)Types:([^\n]* )?deb( |\n|$)/ {
             sub(/Types:[^\n]*/, "Types: deb-src"); print }' "$f"
    done
    # One-line: "deb URI suite components" -> "deb-src ..." (as a deb822 stanza).
    # (Either may be missing: a deb822-only system has neither.)
    { cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null || true; } \
      | awk '$1 == "deb" && $2 !~ /^\[/ { printf "Types: deb-src\nURIs: %s\nSuites: %s\nComponents:", $2, $3
               for (i = 4; i <= NF; i++) printf " %s", $i; printf "\n\n" }'
  })
  [ -n "$entries" ] || die "no deb entries in /etc/apt/sources.list* to derive deb-src from"
  log "adding deb-src entries (/etc/apt/sources.list.d/capstan-static-src.sources), apt-get update"
  {
    echo "# Source packages for Capstan's tests/static/deps.sh (the same suites as the deb entries)."
    echo "$entries"
  } | as_root tee /etc/apt/sources.list.d/capstan-static-src.sources >/dev/null
  as_root apt-get update -qq
}

ensure_deb_src
# Every postgresql-15 source version apt knows, newest first; the first that downloads wins.
mapfile -t pg_versions < <(apt-cache showsrc postgresql-15 | sed -n 's/^Version: //p' | sort -u -r -V)
[ ${#pg_versions[@]} -gt 0 ] || die "apt offers no postgresql-15 source"

key=$({
  for p in cpprest fmtlib spdlog prometheus-cpp; do echo "$p ${version[$p]}"; done
  echo "postgresql-15 ${pg_versions[*]}"
  echo "$flags"
  "$cxx" --version | head -1
  "$cc" --version | head -1
  dpkg-query -W -f='${Version}\n' libssl-dev libboost-dev
  sha256sum <"${BASH_SOURCE[0]}"
} | sha256sum | cut -c1-12)
prefix=$cache/static-$key
if [ -f "$prefix/.complete" ]; then
  echo "$prefix"
  exit 0
fi
mkdir -p "$cache"
# Two clones building at once wait for each other instead of building twice.
exec 9>"$cache/static.lock"
flock 9
if [ -f "$prefix/.complete" ]; then
  echo "$prefix"
  exit 0
fi

start=$SECONDS
work=$cache/static-build-$key
rm -rf "$work" "$prefix"
mkdir -p "$work"
trap 'rm -rf "$work"' EXIT

# Unpacks (with Debian's patches applied) source package $1 at version $2 into $work/$1;
# prints the source tree.
fetch() {
  local pkg=$1 ver=$2
  mkdir -p "$work/$pkg"
  (cd "$work/$pkg" && apt-get source -qq "$pkg=$ver" >&2) || return 1
  find "$work/$pkg" -mindepth 1 -maxdepth 1 -type d | head -1
}

b() { nice -n 10 "$@" >&2; }

cmake_lib() {
  local name=$1 src=$2
  shift 2
  log "building $name"
  b cmake -S "$src" -B "$work/$name-obj" -G Ninja -Wno-dev \
    -DCMAKE_BUILD_TYPE=None -DCMAKE_C_COMPILER="$cc" -DCMAKE_CXX_COMPILER="$cxx" \
    -DCMAKE_C_FLAGS="$flags" -DCMAKE_CXX_FLAGS="$flags" -DCMAKE_EXE_LINKER_FLAGS=-no-pie \
    -DBUILD_SHARED_LIBS=OFF -DCMAKE_POSITION_INDEPENDENT_CODE=OFF \
    -DCMAKE_INSTALL_PREFIX="$prefix" -DCMAKE_INSTALL_LIBDIR=lib \
    -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_FIND_PACKAGE_PREFER_CONFIG=ON "$@"
  b cmake --build "$work/$name-obj" -j "$jobs"
  b cmake --install "$work/$name-obj"
}

# fmt first: spdlog is built against it (external fmt, as Debian builds it).
src=$(fetch fmtlib "${version[fmtlib]}") || die "apt-get source fmtlib=${version[fmtlib]}"
cmake_lib fmt "$src" -DFMT_TEST=OFF -DFMT_DOC=OFF -DFMT_INSTALL=ON
src=$(fetch spdlog "${version[spdlog]}") || die "apt-get source spdlog=${version[spdlog]}"
cmake_lib spdlog "$src" -DSPDLOG_BUILD_SHARED=OFF -DSPDLOG_FMT_EXTERNAL=ON \
  -DSPDLOG_BUILD_EXAMPLE=OFF -DSPDLOG_BUILD_TESTS=OFF -DSPDLOG_BUILD_BENCH=OFF -DSPDLOG_INSTALL=ON
src=$(fetch prometheus-cpp "${version[prometheus-cpp]}") \
  || die "apt-get source prometheus-cpp=${version[prometheus-cpp]}"
cmake_lib prometheus-cpp "$src" -DENABLE_PULL=OFF -DENABLE_PUSH=OFF -DENABLE_COMPRESSION=OFF \
  -DENABLE_TESTING=OFF -DUSE_THIRDPARTY_LIBRARIES=OFF -DGENERATE_PKGCONFIG=OFF
src=$(fetch cpprest "${version[cpprest]}") || die "apt-get source cpprest=${version[cpprest]}"
cmake_lib cpprest "$src" -DBUILD_TESTS=OFF -DBUILD_SAMPLES=OFF -DCPPREST_EXCLUDE_WEBSOCKETS=ON \
  -DCPPREST_EXCLUDE_COMPRESSION=ON -DCPPREST_EXCLUDE_BROTLI=ON -DWERROR=OFF \
  -DBoost_USE_STATIC_LIBS=ON

# libpq: configure, then only the client library and the two helper libraries it needs
# (libpgcommon, libpgport); headers: the client's and the generated postgres_ext.h.
pg=
for v in "${pg_versions[@]}"; do
  if src=$(fetch postgresql-15 "$v"); then
    pg=$v
    break
  fi
  log "postgresql-15 $v: the mirror does not serve its source, trying the next"
  rm -rf "$work/postgresql-15"
done
[ -n "$pg" ] || die "no postgresql-15 source could be fetched (${pg_versions[*]})"
log "building libpq from postgresql-15 $pg"
(
  cd "$src"
  b env CC="$cc" CFLAGS="$flags" LDFLAGS=-no-pie ./configure --prefix="$prefix" --without-readline \
    --without-zlib --without-icu --without-gssapi --without-ldap --without-llvm --with-openssl
  b make -C src/include -j "$jobs"
  b make -C src/common -j "$jobs"
  b make -C src/port -j "$jobs"
  # The archive only: libpq.so would be linked with the -no-pie the configure step needs.
  b make -C src/interfaces/libpq -j "$jobs" all-static-lib
)
mkdir -p "$prefix/lib" "$prefix/include"
# libpq.a holds libpq's own objects; libpgcommon_shlib.a and libpgport_shlib.a are what
# it was built to link with (the _shlib variants: frontend code, as in libpq.so).
cp "$src/src/interfaces/libpq/libpq.a" "$prefix/lib/"
cp "$src/src/common/libpgcommon_shlib.a" "$prefix/lib/libpgcommon.a"
cp "$src/src/port/libpgport_shlib.a" "$prefix/lib/libpgport.a"
cp "$src/src/interfaces/libpq/libpq-fe.h" "$src/src/interfaces/libpq/libpq-events.h" \
  "$src/src/include/postgres_ext.h" "$src/src/include/pg_config_ext.h" "$prefix/include/"
# What CMakeLists.txt's CAPSTAN_STATIC finds in the prefix (a package config installed
# elsewhere would leave CMake finding Debian's shared one, which the build refuses).
for d in cpprestsdk fmt spdlog prometheus-cpp; do
  [ -d "$prefix/lib/cmake/$d" ] || die "$d installed no CMake package config in $prefix/lib/cmake"
done
echo "$pg" >"$prefix/libpq.version"
for p in cpprest fmtlib spdlog prometheus-cpp; do echo "$p ${version[$p]}"; done >"$prefix/versions"
echo "postgresql-15 $pg" >>"$prefix/versions"
echo "$((SECONDS - start))" >"$prefix/build-seconds"
touch "$prefix/.complete"
log "installed in $prefix ($((SECONDS - start)) s)"
echo "$prefix"
