#!/usr/bin/env bash
# One unmodified program pair, redis-benchmark against redis-server, over
# loopback TCP and then under hsi-run (both ends), side by side; then the
# connection list and fallback counters hsid kept. A private hsid on a
# temporary socket; everything started here is stopped by pid.
# Usage: packaging/run-hsi-run-demo.sh [BINDIR]   (default build/bin)
set -u
BIN=${1:-build/bin}
case "$BIN" in -h|--help) sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;; esac
for p in redis-server redis-benchmark; do
  command -v "$p" >/dev/null || { echo "run-hsi-run-demo: $p is not installed (packaging/setup.sh)"; exit 1; }
done
T=$(mktemp -d /tmp/hsi-run-demo.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done; wait 2>/dev/null; rm -rf "$T"; }
trap cleanup EXIT
wait_for() { local d=$((SECONDS + 10)); until "$@"; do [ $SECONDS -ge $d ] && return 1; sleep 0.05; done; }
listening() { ss -Hltn "sport = :$1" | grep -q LISTEN; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

"$BIN/hsid" --socket "$T/hsid.sock" >"$T/hsid.log" 2>&1 &
PIDS+=("$!")
export HSI_RUN_SOCKET="$T/hsid.sock"
wait_for test -S "$T/hsid.sock" || { echo "hsid did not start"; cat "$T/hsid.log"; exit 1; }

bench() {  # label prefix...
  local label=$1; shift
  local port; port=$(free_port)
  "$@" redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --dir "$T" >/dev/null 2>&1 &
  local s=$!; PIDS+=("$s")
  wait_for listening "$port" || { echo "redis-server did not start"; return 1; }
  "$@" redis-benchmark -p "$port" -c 50 -d 1024 -n 100000 -t get,set --csv 2>/dev/null |
    sed -n "s/^\"\\(GET\\|SET\\)\",\"\\([0-9.]*\\)\",\"\\([0-9.]*\\)\".*/\\1 \\2 \\3/p" |
    while read -r test rps lat; do printf '  %-22s %-4s %10.0f req/s  avg %s ms\n' "$label" "$test" "$rps" "$lat"; done
  kill "$s"; wait "$s" 2>/dev/null
}
echo "redis-benchmark -c 50 -d 1024 -t get,set against redis-server, same host:"
bench "loopback TCP" env
bench "hsi-run (both ends)" "$BIN/hsi-run"
echo
echo "hsid's view (hsictl fallbacks): connections that stayed on TCP, by reason:"
"$BIN/hsictl" --socket "$T/hsid.sock" fallbacks | sed 's/^/  /'
