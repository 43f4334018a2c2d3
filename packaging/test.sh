#!/usr/bin/env bash
# Installs what is missing, builds, and runs the whole hsi test suite:
#   1. release build, every test (unit, multi-process, stress, hostile peer)
#   2. ASan+UBSan build, the tests labelled "sanitize"
#   3. TSan build, the tests labelled "sanitize"
#   4. clang libFuzzer build, each fuzz target for 10 s (packaging/fuzz.sh)
#   5. Debian packages installed, examples built against them and run,
#      packages purged (packaging/examples-test.sh; the packages are made
#      from the release build, configured with prefix /usr)
# Usage: packaging/test.sh [--no-sanitizers] [--help]
set -euo pipefail
cd "$(dirname "$0")/.."

sanitizers=1
for arg in "$@"; do
  case "$arg" in
    --no-sanitizers) sanitizers=0 ;;
    -h|--help) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "test.sh: unknown option '$arg' (try --help)" >&2; exit 2 ;;
  esac
done

packaging/setup.sh
jobs=$(nproc)

# Each step prints the seconds since the start, so a slow phase shows in CI logs.
step() { printf '\n==== %s (at %ds)\n' "$*" "$SECONDS"; }

step "release build"
cmake --preset release >/dev/null
cmake --build --preset release -j "$jobs"
step "release tests"
ctest --preset release

if [ "$sanitizers" -eq 1 ]; then
  for preset in asan tsan; do
    step "$preset build"
    cmake --preset "$preset" >/dev/null
    # Only the tests labelled "sanitize" (and what they run, like hsid);
    # ASan+UBSan also those labelled "asan" (hsi-ifd's pump in namespaces).
    target=hsi_sanitize_tests
    [ "$preset" = asan ] && target=hsi_asan_tests
    cmake --build --preset "$preset" -j "$jobs" --target "$target"
    step "$preset tests"
    # halt_on_error: the first report fails the run.
    ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 \
    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 \
      ctest --preset "$preset"
  done
  step "fuzz targets, 10 s each"
  packaging/fuzz.sh --seconds 10
fi
step "packages and examples"
packaging/examples-test.sh --build-dir build
step "all test runs passed"
