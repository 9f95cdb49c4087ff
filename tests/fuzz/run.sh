#!/usr/bin/env bash
# Runs every fuzzer in BUILD_DIR for SECONDS each, starting from tests/fuzz/corpus/<name>
# (seeds and every crash input found so far, replayed first). New inputs go to a
# scratch corpus under BUILD_DIR, never into the repository; a crash writes its input
# to BUILD_DIR/artifacts/ and fails the run: copy it into tests/fuzz/corpus/<name>/
# with the fix so it stays a regression input.
set -euo pipefail
build_dir=${1:?usage: run.sh BUILD_DIR SECONDS [SEED]}
seconds=${2:?usage: run.sh BUILD_DIR SECONDS [SEED]}
# A fixed seed (make test's bounded run) makes a run try the same inputs every time, so a
# finding is reproducible and CI is not at the mercy of chance; `make fuzz` leaves it random.
seed_flag=()
[ -n "${3:-}" ] && seed_flag=(-seed="$3")
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$build_dir/artifacts"
status=0
for bin in "$build_dir"/*_fuzzer; do
  name=$(basename "$bin" _fuzzer)
  seeds="$here/corpus/$name"
  scratch="$build_dir/corpus/$name"
  mkdir -p "$scratch"
  echo "== $name: ${seconds}s from $seeds"
  # -rss_limit_mb: a parser that balloons on a small input is a bug too; -timeout is
  # generous because CI machines are shared and sanitized code is slow.
  if ! "$bin" "${seed_flag[@]}" -max_total_time="$seconds" -timeout=60 -rss_limit_mb=2048 -max_len=65536 \
      -print_final_stats=1 -artifact_prefix="$build_dir/artifacts/$name-" \
      "$scratch" "$seeds" 2>"$build_dir/$name.log"; then
    echo "FAILED: $name (log: $build_dir/$name.log)" >&2
    tail -40 "$build_dir/$name.log" >&2
    status=1
  else
    grep -E '^stat::number_of_executed_units|^stat::peak_rss_mb' "$build_dir/$name.log" | tr '\n' ' '
    echo
  fi
done
exit $status
