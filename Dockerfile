# Capstan operator image.
#
# Build stage: the same Debian packages and the same `make build` that CI uses
# (Makefile APT_PACKAGES lists the packages; keep the two in step), with
# -DCAPSTAN_STATIC=ON: one fully static binary (glibc included, --gc-sections).
# cpprestsdk, fmt, spdlog, prometheus-cpp and libpq are built from Debian's source
# packages by tests/static/deps.sh, in a layer of their own; abseil, yaml-cpp and
# OpenSSL come from Debian's archives.
# Runtime stage: FROM scratch with the binary, the CA bundle and tzdata, nothing else
# (no shell, no package manager, no libraries), running as an unprivileged user on a
# read-only root file system.
#
#   docker build -t capstan:dev .     # anywhere with registry access (BuildKit)
#   make image                        # without a registry: local bases, buildah
#
# The base is pinned to a Debian 12 point release. `make image` builds it from
# Debian's packages (tests/image/bases.sh) under exactly this name.
FROM debian:12.15 AS build
# Downloaded packages live in a cache mount, never in a layer; a changed package list
# downloads only what is new. (Docker's debian images delete downloaded packages after
# each install: docker-clean.) The apt lists are not a cache mount: `apt-get update`
# deletes files it does not know in /var/lib/apt/lists, buildah's lock file of the mount
# among them, and the next stage's RUN then waits on that lock forever.
# libpq-dev is not installed: deps.sh builds libpq from the postgresql-15 source the
# mirror serves, and Capstan compiles against that build's headers.
RUN --mount=type=cache,id=capstan-apt-cache,target=/var/cache/apt,sharing=locked \
    rm -f /etc/apt/apt.conf.d/docker-clean \
    && apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      build-essential cmake ninja-build pkg-config git ca-certificates ccache dpkg-dev \
      libcpprest-dev libssl-dev nlohmann-json3-dev libyaml-cpp-dev libabsl-dev libspdlog-dev \
      prometheus-cpp-dev python3 tzdata
# The static dependencies, in their own layer before the sources: only a change of
# deps.sh (or of the packages above) builds them again (~N min on 2 cores); a source
# change starts from this layer (buildah --layers, docker's build cache).
COPY tests/static/deps.sh /src/tests/static/deps.sh
RUN CAPSTAN_CACHE=/opt/capstan-static /src/tests/static/deps.sh >/opt/static-prefix
# One layer: .dockerignore lets in only CMakeLists.txt, Makefile, include/, src/ and
# tests/static/deps.sh. (Few steps: with buildah's vfs storage each step costs a copy of
# the file system.)
COPY . /src
# ccache's directory is a cache mount too: a rebuild after a small change compiles
# only what changed (CMakeLists.txt uses ccache when it is installed).
RUN --mount=type=cache,id=capstan-ccache,target=/root/.cache/ccache \
    make -C /src build BUILD_DIR=/build CMAKE_FLAGS="-DCMAKE_BUILD_TYPE=Release \
      -DCAPSTAN_BUILD_TESTS=OFF -DCAPSTAN_STATIC=ON -DCAPSTAN_STATIC_PREFIX=$(cat /opt/static-prefix)" \
    && strip /build/capstan && /build/capstan version \
    && ! readelf -l /build/capstan | grep -q INTERP \
    && printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/nonexistent:/sbin/nologin\n' >/build/passwd \
    && printf 'root:x:0:\nnonroot:x:65532:\n' >/build/group

FROM scratch
# The CA bundle: analysis providers over HTTPS without a CA of their own trust it
# (SSL_CERT_FILE: OpenSSL's compiled-in /usr/lib/ssl is not in this image). The API
# server's CA is the ServiceAccount's ca.crt. tzdata: Environment freeze windows name
# IANA time zones (Europe/Berlin); abseil reads them from /usr/share/zoneinfo.
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /usr/share/zoneinfo /usr/share/zoneinfo
COPY --from=build /build/capstan /usr/local/bin/capstan
# The user the image runs as, by name too (as distroless images do): a runtime then has
# no passwd entry of its own to add to the root file system for it.
COPY --from=build /build/passwd /etc/passwd
COPY --from=build /build/group /etc/group
ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
# A numeric user, so Kubernetes can verify runAsNonRoot without a passwd entry.
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/capstan"]
CMD ["run"]
# Last, so a new revision changes only this layer's metadata. VERSION must be what
# `capstan version` says (make image passes CMakeLists.txt's; the image test checks).
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG SOURCE=https://github.com/capstan-dev/capstan
ARG LICENSES=NOASSERTION
LABEL org.opencontainers.image.title="capstan" \
      org.opencontainers.image.description="Capstan, a Kubernetes operator that ships services safely" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="${LICENSES}"
