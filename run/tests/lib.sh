# run/tests/lib.sh: what the hsi-run test scripts (and
# bench/run/hsi-run-bench.sh) share; sourced, not run.
#
#   . "$(dirname "$0")/lib.sh"
#   hsi_run_test_init BINDIR PREFIX
#
# checks that BINDIR holds hsid, hsi-run, hsictl and hsi-run-check (exit 77
# with the reason if not), sets BIN, RUN (hsi-run) and FAILED, and calls
# hsi_run_scratch PREFIX: T (a fresh directory /tmp/PREFIX.XXXXXX) and PIDS
# (every process started: on exit each gets SIGTERM, then SIGKILL after
# 5 s: an nginx master stops its workers only when asked); `cleanup_extra`
# runs (if the script defines it) before T is removed. fail/pass print one
# check's verdict; wait_for waits up to 10 s for a condition given as a
# command; listening PORT and free_port are about loopback TCP ports.

hsi_run_test_init() {
  BIN=$1
  for p in hsid hsi-run hsictl hsi-run-check; do
    [ -x "$BIN/$p" ] || { echo "SKIP: $BIN/$p is not built"; exit 77; }
  done
  RUN="$BIN/hsi-run"
  FAILED=0
  hsi_run_scratch "$2"
}

hsi_run_scratch() {
  T=$(mktemp -d "/tmp/$1.XXXXXX")
  PIDS=()
  trap hsi_run_test_cleanup EXIT
}

hsi_run_test_cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
  local deadline=$((SECONDS + 5))
  for p in "${PIDS[@]}"; do
    while kill -0 "$p" 2>/dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.05; done
    kill -9 "$p" 2>/dev/null
  done
  wait 2>/dev/null
  if declare -F cleanup_extra >/dev/null; then cleanup_extra; fi
  rm -rf "$T"
}

fail() { echo "FAIL: $*"; FAILED=1; }
pass() { echo "ok: $*"; }

wait_for() {
  local deadline=$((SECONDS + 10))
  until "$@"; do
    [ $SECONDS -ge $deadline ] && return 1
    sleep 0.05
  done
}

listening() { ss -Hltn "sport = :$1" | grep -q LISTEN; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
