# Capstan operator image.
#
# Build stage: the same Debian packages and the same `make build` that CI uses
# (Makefile APT_PACKAGES lists the packages; keep the two in step).
# Runtime stage: Debian slim with only the shared libraries the binary links
# (abseil and yaml-cpp are linked statically, CAPSTAN_STATIC_DEPS), CA certificates
# and tzdata, running as an unprivileged user on a read-only root file system.
#
#   docker build -t capstan:dev .     # anywhere with registry access (BuildKit)
#   make image                        # without a registry: local bases, buildah
#
# The bases are pinned to a Debian 12 point release. `make image` builds them from
# Debian's packages (tests/image/bases.sh) under exactly these names.
FROM debian:12.15 AS build
# Downloaded packages live in a cache mount, never in a layer; a changed package list
# downloads only what is new. (Docker's debian images delete downloaded packages after
# each install: docker-clean.) The apt lists are not a cache mount: `apt-get update`
# deletes files it does not know in /var/lib/apt/lists, buildah's lock file of the mount
# among them, and the next stage's RUN then waits on that lock forever.
RUN --mount=type=cache,id=capstan-apt-cache,target=/var/cache/apt,sharing=locked \
    rm -f /etc/apt/apt.conf.d/docker-clean \
    && apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      build-essential cmake ninja-build pkg-config git ca-certificates ccache \
      libcpprest-dev libssl-dev nlohmann-json3-dev libyaml-cpp-dev libabsl-dev libspdlog-dev \
      prometheus-cpp-dev libpq-dev python3
# One layer: .dockerignore lets in only CMakeLists.txt, Makefile, include/ and src/.
# (Few steps: with buildah's vfs storage each step costs a copy of the file system.)
COPY . /src
# ccache's directory is a cache mount too: a rebuild after a small change compiles
# only what changed (CMakeLists.txt uses ccache when it is installed).
RUN --mount=type=cache,id=capstan-ccache,target=/root/.cache/ccache \
    make -C /src build BUILD_DIR=/build CMAKE_FLAGS="-DCMAKE_BUILD_TYPE=Release -DCAPSTAN_BUILD_TESTS=OFF" \
    && strip /build/capstan && /build/capstan version

FROM debian:12.15-slim
# tzdata: Environment freeze windows name IANA time zones (Europe/Berlin); abseil reads
# them from /usr/share/zoneinfo, which the slim image does not carry.
RUN --mount=type=cache,id=capstan-apt-cache,target=/var/cache/apt,sharing=locked \
    rm -f /etc/apt/apt.conf.d/docker-clean \
    && apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      ca-certificates tzdata libcpprest2.10 libspdlog1.10 libfmt9 \
      libprometheus-cpp-core1.0 libssl3 libpq5 \
    && rm -rf /var/log/* /var/cache/debconf/*-old /var/lib/dpkg/*-old /var/lib/apt/lists/*
COPY --from=build /build/capstan /usr/local/bin/capstan
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
