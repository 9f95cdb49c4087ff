# Capstan's front door. Two commands set everything up on a fresh machine:
#   make demo   build, start a local cluster (unless KUBECONFIG is set), run the operator,
#               drive it with kubectl capstan
#   make test   dependencies, build, unit tests (ASan+UBSan), end-to-end tests
SHELL := /bin/bash
# ccache (used by CMakeLists.txt when installed) keys on paths relative to the clone, so every
# clone of the repo, wherever it lives, shares compiled objects.
export CCACHE_BASEDIR ?= $(CURDIR)
# Debug builds put the build folder into the debug info; without this every clone would miss.
export CCACHE_NOHASHDIR ?= 1
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := build

BUILD_DIR ?= build
ASAN_DIR ?= build-asan
FUZZ_DIR ?= build-fuzz
TSAN_DIR ?= build-tsan
# Seconds per fuzzer: `make fuzz` (long) and the bounded run in `make test`.
FUZZ_SECONDS ?= 600
FUZZ_SMOKE_SECONDS ?= 20
# make test fuzzes from a fixed seed (same inputs every run); make fuzz from a random one.
FUZZ_SMOKE_SEED ?= 1
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?=
DEMO_DIR ?= $(CURDIR)/$(BUILD_DIR)/demo-cluster
PREFIX ?= /usr/local

APT_PACKAGES := build-essential cmake ninja-build pkg-config git curl openssl ca-certificates \
  libcpprest-dev libssl-dev nlohmann-json3-dev libyaml-cpp-dev libabsl-dev libspdlog-dev \
  libgtest-dev libgmock-dev prometheus-cpp-dev python3 python3-yaml python3-pytest \
  lua5.4 tzdata libpq-dev postgresql postgresql-client python3-psycopg2 clang-format ccache prometheus buildah podman runc debootstrap clang libclang-rt-14-dev
PY_MODULES := yaml pytest

.PHONY: deps build install asan unit tsan e2e test cluster-bin cluster-up cluster-down demo bench bench-peer clean \
  format format-check fuzz-build fuzz fuzz-smoke image image-test dist

## deps: install build and test dependencies (idempotent; quick when present)
deps:
	@missing=$$(dpkg-query -W -f='$${Status} $${Package}\n' $(APT_PACKAGES) 2>/dev/null \
	  | awk '$$3 != "installed" {print $$4}'; \
	  for p in $(APT_PACKAGES); do dpkg-query -W $$p >/dev/null 2>&1 || echo $$p; done | sort -u); \
	if [ -n "$$missing" ]; then \
	  echo "installing: $$missing"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  $$( [ $$(id -u) = 0 ] || echo sudo ) apt-get update -qq; \
	  $$( [ $$(id -u) = 0 ] || echo sudo ) apt-get install -y -qq --no-install-recommends $$missing; \
	fi
	@for m in $(PY_MODULES); do python3 -c "import $$m" 2>/dev/null || python3 -m pip install -q $$m \
	  || python3 -m pip install -q --break-system-packages $$m; done
	@[ -n "$${CAPSTAN_NO_GO:-}" ] || command -v go >/dev/null \
	  || { echo "Go >= 1.26 is needed to build the test cluster" >&2; exit 1; }

## build: the capstan binary and unit tests
build:
	cmake -S . -B $(BUILD_DIR) -G Ninja $(CMAKE_FLAGS)
	cmake --build $(BUILD_DIR) -j $(JOBS)

## install: capstan and the kubectl plugin kubectl-capstan (a link to it) into $(PREFIX)/bin
install:
	cmake -S . -B $(BUILD_DIR) -G Ninja $(CMAKE_FLAGS)
	cmake --build $(BUILD_DIR) -j $(JOBS) --target capstan
	install -d $(DESTDIR)$(PREFIX)/bin
	install -m 0755 $(BUILD_DIR)/capstan $(DESTDIR)$(PREFIX)/bin/capstan
	ln -sf capstan $(DESTDIR)$(PREFIX)/bin/kubectl-capstan
	@echo "installed $(DESTDIR)$(PREFIX)/bin/capstan and kubectl-capstan (try: kubectl capstan --help)"

## asan: unit tests with AddressSanitizer + UndefinedBehaviorSanitizer
asan:
	cmake -S . -B $(ASAN_DIR) -G Ninja -DCAPSTAN_SANITIZE=ON \
	  -DCMAKE_BUILD_TYPE=Debug $(CMAKE_FLAGS)
	cmake --build $(ASAN_DIR) -j $(JOBS)

## unit: unit tests (sanitized build)
unit: asan
	cd $(ASAN_DIR) && ctest -L unit --output-on-failure -j $(JOBS)

## tsan: unit tests under ThreadSanitizer (clang) in $(TSAN_DIR); abseil is rebuilt with
## -fsanitize=thread from Debian's source package once (tests/tsan/abseil.sh, cached in
## ~/.cache/capstan/tsan); reports fail the test (TSAN_OPTIONS in CMakeLists.txt)
tsan:
	prefix=$$(tests/tsan/abseil.sh); \
	cmake -S . -B $(TSAN_DIR) -G Ninja -DCMAKE_CXX_COMPILER=clang++ -DCAPSTAN_TSAN=ON \
	  -DCAPSTAN_TSAN_ABSEIL=$$prefix -DCMAKE_BUILD_TYPE=Debug $(CMAKE_FLAGS)
	cmake --build $(TSAN_DIR) -j $(JOBS)
	cd $(TSAN_DIR) && ctest -L unit --output-on-failure -j $(JOBS)

## fuzz-build: the libFuzzer targets (clang, ASan+UBSan) in $(FUZZ_DIR)
fuzz-build:
	cmake -S . -B $(FUZZ_DIR) -G Ninja -DCMAKE_CXX_COMPILER=clang++ -DCAPSTAN_FUZZ=ON \
	  -DCAPSTAN_BUILD_TESTS=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	  $(CMAKE_FLAGS)
	cmake --build $(FUZZ_DIR) -j $(JOBS) --target fuzzers

## fuzz: every fuzzer for $(FUZZ_SECONDS) s from tests/fuzz/corpus (crashes: $(FUZZ_DIR)/artifacts)
fuzz: fuzz-build
	tests/fuzz/run.sh $(FUZZ_DIR) $(FUZZ_SECONDS)

## fuzz-smoke: the bounded run make test does ($(FUZZ_SMOKE_SECONDS) s per fuzzer)
fuzz-smoke: fuzz-build
	tests/fuzz/run.sh $(FUZZ_DIR) $(FUZZ_SMOKE_SECONDS) $(FUZZ_SMOKE_SEED)

## cluster-bin: build (or reuse) the pinned control-plane binaries
cluster-bin:
	tests/cluster/cluster.sh build

## e2e: end-to-end tests against the real control plane (started and stopped by ctest)
e2e: asan cluster-bin
	cd $(ASAN_DIR) && ctest -L e2e --output-on-failure

## image: the operator image from Dockerfile with buildah (local Debian bases, no
## registry needed), tagged capstan:<version>; prints its size
image:
	tests/image/image.sh build

## image-test: run the image with podman against the test cluster as a kubelet would
image-test: asan cluster-bin image
	cd $(ASAN_DIR) && ctest -L image --output-on-failure

## test: everything CI runs. One sanitized build serves the unit tests and the
## end-to-end tests (the operator runs under ASan+UBSan against the real cluster);
## the unit tests run a second time under ThreadSanitizer (make tsan); the image test
## runs the release build inside the image.
test: deps
	$(MAKE) format-check
	$(MAKE) cluster-bin
	$(MAKE) asan
	cd $(ASAN_DIR) && ctest -L unit --output-on-failure -j $(JOBS)
	$(MAKE) tsan
	$(MAKE) fuzz-smoke
	$(MAKE) image
	cd $(ASAN_DIR) && ctest -L 'e2e|image' --output-on-failure

## dist: release archive (capstan and kubectl-capstan, linux/amd64, the binary the
## image ships) and SHA256SUMS in dist/
dist: image
	tests/image/dist.sh dist

cluster-up: cluster-bin
	tests/cluster/cluster.sh up $(DEMO_DIR)

cluster-down:
	tests/cluster/cluster.sh down $(DEMO_DIR)

## demo: run Capstan's main job against $$KUBECONFIG (with the kubectl on PATH; nothing
## else is built), or against a local simulated cluster built and started for it
demo:
	$(MAKE) deps CAPSTAN_NO_GO=$${KUBECONFIG:+1}
	cmake -S . -B $(BUILD_DIR) -G Ninja $(CMAKE_FLAGS)
	cmake --build $(BUILD_DIR) -j $(JOBS) --target capstan
	tests/demo.sh $(BUILD_DIR) $(DEMO_DIR)

## bench: measurements that print numbers and assert nothing (ctest label bench: heap per
## cached object, informer start-up and memory against the test cluster); optimised build
bench: build cluster-bin
	cd $(BUILD_DIR) && ctest -L bench --output-on-failure

## bench-peer: Capstan beside Argo Rollouts on one test cluster (tests/bench/peer/compare.py:
## N = 1, 100, 1000; prints the table, writes docs/benchmarks.md); options in BENCH_PEER_ARGS,
## e.g. BENCH_PEER_ARGS='--sizes 1,100 --window 60'
BENCH_PEER_ARGS ?=
bench-peer: cluster-bin
	cmake -S . -B $(BUILD_DIR) -G Ninja $(CMAKE_FLAGS)
	nice -n 10 cmake --build $(BUILD_DIR) -j $(JOBS) --target capstan
	tests/bench/peer/peer.sh build
	tests/bench/peer/compare.py --capstan $(BUILD_DIR)/capstan $(BENCH_PEER_ARGS)

CXX_SOURCES = $(shell git ls-files '*.cc' '*.h' 2>/dev/null)

## format: apply .clang-format (Google base, 100 columns) to every C++ file
format:
	clang-format -i $(CXX_SOURCES)

## format-check: fail when a C++ file is not formatted (part of make test)
format-check:
	@out=$$(clang-format --dry-run $(CXX_SOURCES) 2>&1 | grep 'warning:' || true); \
	if [ -n "$$out" ]; then echo "$$out" | head -20; echo "run 'make format'" >&2; exit 1; fi; \
	echo "format-check: $(words $(CXX_SOURCES)) files formatted"

clean:
	rm -rf $(BUILD_DIR) $(ASAN_DIR) $(FUZZ_DIR) $(TSAN_DIR)
