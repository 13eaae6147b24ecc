#!/usr/bin/env bash
# Gatehouse benchmarks (issue #7). Builds release, then runs target/release/gatehouse-bench,
# which starts its own servers on loopback with throwaway databases, seeds them, drives load
# and prints a table. Results go to bench/results/latest.json (smoke: smoke.json).
#
#   bench/run.sh            full run (a few minutes; < 10 min on 2 cores)
#   bench/run.sh --smoke    every scenario for about a second, tiny seeds; exits non-zero
#                           only if a row is missing (targets are reported, never enforced)
#   --no-build              use the binaries already built
#   --profile NAME          build and run with this cargo profile (default release; CI's smoke
#                           run uses dev, whose binaries the test run has already built)
#   --only GROUP            sqlite, scale or postgres (for a partial run; the baselines
#                           always run; writes bench/results/partial.json)
#
# PostgreSQL + Redis rows are added when GATEHOUSE_TEST_DATABASE_URL and
# GATEHOUSE_TEST_REDIS_URL are set (a throwaway database and key prefix are used).
set -euo pipefail
cd "$(dirname "$0")/.."

smoke=0
build=1
profile=release
only=()
while [ $# -gt 0 ]; do
  case "$1" in
    --smoke) smoke=1 ;;
    --no-build) build=0 ;;
    --profile) profile="${2:?--profile NAME}"; shift ;;
    --only) only=(--only "${2:?--only sqlite|scale|postgres}"); shift ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "bench/run.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done

target="${CARGO_TARGET_DIR:-target}"
dir="$profile"
[ "$profile" = dev ] && dir=debug
if [ "$build" = 1 ]; then
  cargo build --profile "$profile" -p gatehouse -p gatehouse-bench
fi

args=(--gatehouse "$target/$dir/gatehouse" "${only[@]}")
if [ "$smoke" = 1 ]; then
  args+=(--smoke --out bench/results/smoke.json)
elif [ ${#only[@]} -gt 0 ]; then
  args+=(--out bench/results/partial.json)
else
  args+=(--out bench/results/latest.json)
fi
exec "$target/$dir/gatehouse-bench" "${args[@]}"
