#!/usr/bin/env bash
# Gatehouse benchmarks (issue #7). Builds release, then runs target/release/gatehouse-bench,
# which starts its own servers on loopback with throwaway databases, seeds them, drives load
# and prints a table. Results go to bench/results/latest.json (smoke: smoke.json).
#
#   bench/run.sh            full run (a few minutes; < 10 min on 2 cores)
#   bench/run.sh --smoke    every scenario for about a second, tiny seeds; exits non-zero
#                           only if a row is missing (targets are reported, never enforced)
#   --no-build              use the binaries already in target/release
#
# PostgreSQL + Redis rows are added when GATEHOUSE_TEST_DATABASE_URL and
# GATEHOUSE_TEST_REDIS_URL are set (a throwaway database and key prefix are used).
set -euo pipefail
cd "$(dirname "$0")/.."

smoke=0
build=1
for arg in "$@"; do
  case "$arg" in
    --smoke) smoke=1 ;;
    --no-build) build=0 ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "bench/run.sh: unknown argument $arg" >&2; exit 2 ;;
  esac
done

target="${CARGO_TARGET_DIR:-target}"
if [ "$build" = 1 ]; then
  cargo build --release -p gatehouse -p gatehouse-bench
fi

args=(--gatehouse "$target/release/gatehouse")
if [ "$smoke" = 1 ]; then
  args+=(--smoke --out bench/results/smoke.json)
else
  args+=(--out bench/results/latest.json)
fi
exec "$target/release/gatehouse-bench" "${args[@]}"
