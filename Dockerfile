# Capstan operator image.
#
# Build stage: the same Debian packages and the same `make build` that CI uses
# (Makefile target `deps` lists the packages; keep the two in step).
# Runtime stage: Debian slim with only the shared libraries the binary links
# (abseil and yaml-cpp are linked statically, CAPSTAN_STATIC_DEPS),
# running as an unprivileged user on a read-only root file system.
#
#   docker build -t capstan:dev .
FROM debian:bookworm AS build
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      build-essential cmake ninja-build pkg-config git ca-certificates \
      libcpprest-dev libssl-dev nlohmann-json3-dev libyaml-cpp-dev libabsl-dev libspdlog-dev \
      prometheus-cpp-dev libgtest-dev libgmock-dev libbenchmark-dev python3 \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY CMakeLists.txt Makefile ./
COPY include include
COPY src src
COPY tests tests
COPY crds crds
RUN make build BUILD_DIR=/build CMAKE_FLAGS="-DCMAKE_BUILD_TYPE=Release -DCAPSTAN_BUILD_TESTS=OFF -DCAPSTAN_BUILD_BENCHMARKS=OFF" \
    && strip /build/capstan && /build/capstan version

FROM debian:bookworm-slim
# tzdata: Environment freeze windows name IANA time zones (Europe/Berlin); abseil reads
# them from /usr/share/zoneinfo, which the slim image does not carry.
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      ca-certificates tzdata libcpprest2.10 libspdlog1.10 libfmt9 \
      libprometheus-cpp-core1.0 libssl3 \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/* /var/log/*
COPY --from=build /build/capstan /usr/local/bin/capstan
# A numeric user, so Kubernetes can verify runAsNonRoot without a passwd entry.
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/capstan"]
CMD ["run"]
