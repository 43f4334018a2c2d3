#!/usr/bin/env bash
# Starts build/bin/hsid with its built-in default config on a temporary
# socket, runs build/bin/hsi-lpar-demo (two LPAR processes exchange
# 10 million frames through an hsid-made link, none lost, and the round trip
# is printed beside loopback TCP measured in the same run), then stops hsid.
# Usage: packaging/run-demo.sh [--help] [-- DEMO-ARGS...]   (build first)
set -euo pipefail
cd "$(dirname "$0")/.."

case "${1:-}" in
  -h|--help) sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  --) shift ;;
  "") ;;
  *) echo "run-demo.sh: unknown option '$1' (try --help; demo options go after --)" >&2; exit 2 ;;
esac

bin=${HSI_BIN:-build/bin}
for b in hsid hsi-lpar-demo; do
  [ -x "$bin/$b" ] || { echo "run-demo.sh: $bin/$b is missing; build first (cmake --preset release && cmake --build --preset release)" >&2; exit 1; }
done

dir=$(mktemp -d /tmp/hsi-demo.XXXXXX)
sock="$dir/hsid.sock"
hsid_pid=
cleanup() {
  if [ -n "$hsid_pid" ] && kill -0 "$hsid_pid" 2>/dev/null; then
    kill -TERM "$hsid_pid" 2>/dev/null || true
    wait "$hsid_pid" 2>/dev/null || true
  fi
  rm -rf "$dir"
}
trap cleanup EXIT INT TERM

"$bin/hsid" --socket "$sock" 2>"$dir/hsid.log" &
hsid_pid=$!
for _ in $(seq 1 500); do
  [ -S "$sock" ] && break
  kill -0 "$hsid_pid" 2>/dev/null || { echo "run-demo.sh: hsid exited:" >&2; cat "$dir/hsid.log" >&2; exit 1; }
  sleep 0.01
done
[ -S "$sock" ] || { echo "run-demo.sh: hsid did not create $sock" >&2; exit 1; }

status=0
"$bin/hsi-lpar-demo" --socket "$sock" "$@" || status=$?
kill -TERM "$hsid_pid"
wait "$hsid_pid" || true
hsid_pid=
if [ -S "$sock" ]; then echo "run-demo.sh: hsid left its socket behind" >&2; status=1; fi
exit "$status"
