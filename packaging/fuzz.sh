#!/usr/bin/env bash
# Builds the libFuzzer targets (clang, ASan+UBSan; preset "fuzz") and runs
# each one, starting from its seed corpus in tests/fuzz/corpus/NAME/.
# New inputs go to build-fuzz/corpus/NAME/ (the seeds stay untouched);
# crashes to build-fuzz/crashes/.
# Usage: packaging/fuzz.sh [--seconds N] [TARGET...]   (default 20 s each, all)
#   long run:  packaging/fuzz.sh --seconds 3600 ring_reader
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=20
targets=()
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) seconds="${2:?--seconds needs a number}"; shift 2 ;;
    -h|--help) sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "fuzz.sh: unknown option '$1' (try --help)" >&2; exit 2 ;;
    *) targets+=("$1"); shift ;;
  esac
done
case "$seconds" in ''|*[!0-9]*) echo "fuzz.sh: --seconds wants a whole number, got '$seconds'" >&2; exit 2 ;; esac
if [ ${#targets[@]} -eq 0 ]; then
  for d in tests/fuzz/corpus/*/; do targets+=("$(basename "$d")"); done
fi

cmake --preset fuzz >/dev/null
cmake --build --preset fuzz --target hsi_fuzz -j "$(nproc)"
mkdir -p build-fuzz/crashes
for t in "${targets[@]}"; do
  bin="build-fuzz/bin/${t}_fuzz"
  [ -x "$bin" ] || { echo "fuzz.sh: no fuzz target '$t' ($bin)" >&2; exit 2; }
  work="build-fuzz/corpus/$t"
  mkdir -p "$work"
  echo "fuzz.sh: $t for ${seconds}s"
  log="build-fuzz/$t.log"
  rc=0
  "$bin" -max_total_time="$seconds" -print_final_stats=1 \
      -artifact_prefix=build-fuzz/crashes/"$t"- "$work" "tests/fuzz/corpus/$t" >"$log" 2>&1 || rc=$?
  grep -E 'stat::number_of_executed_units|stat::peak_rss_mb|ERROR|SUMMARY|Done' "$log" || true
  if [ "$rc" -ne 0 ]; then
    tail -n 60 "$log" >&2
    echo "fuzz.sh: $t FAILED with exit $rc (log $log, input in build-fuzz/crashes/)" >&2
    exit 1
  fi
done
echo "fuzz.sh: all targets ran clean"
