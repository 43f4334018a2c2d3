#!/usr/bin/env bash
# hsi-run across exec (ctest run_exec_test; docs/hsi-run.md section 5).
#
#   run/tests/exec_test.sh BINDIR
#
# With real processes under hsi-run on both ends, a private hsid, and
# hsi-run-check's echo stream (every byte generated from a seed, echoed,
# compared): a client that execs itself mid-stream with bytes in flight both
# ways (its unread echoes: the receive side; its bytes not yet echoed: the
# send side), a forked child that execs while its parent closes its copy,
# a server (the acceptor) that execs mid-stream, a client that execs twice
# (the second exec waits for the peer to reach the first one's ring), one
# that execs through fexecve (glibc's calls execveat, past execve) or
# execveat itself, a
# server whose new image is slow to load while the client keeps calling
# (the client must not ask hsid on each call meanwhile), and an
# exec into an image that is not under hsi-run (LD_PRELOAD dropped, or a
# statically linked program: the connection must not reach it; the
# descriptor is closed there, with the reason logged). Each carried case also checks that the connection stayed
# on rings (the new image logged the re-attach, the peer its switch).
# Children that glibc execs past the exec interposers (posix_spawn, also
# with a file action that dup2s the connection onto the child's stdin,
# system(), popen()) or that a vfork child execs (from the parent's memory)
# must find the descriptor closed, the reason logged,
# while the parent finishes its stream on its own copy.
# Also under ASan+UBSan (label "asan"): the preload library instrumented.
set -u
BIN=$(cd "${1:?usage: exec_test.sh BINDIR}" && pwd)
. "$(dirname "$0")/lib.sh"
hsi_run_test_init "$BIN" hsi-run-exec
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0"
"$BIN/hsid" --socket "$T/hsid.sock" >"$T/hsid.log" 2>&1 &
PIDS+=("$!")
wait_for "$BIN/hsictl" --socket "$T/hsid.sock" fallbacks >/dev/null 2>&1 || { echo "hsid did not start:"; cat "$T/hsid.log"; exit 1; }
export HSI_RUN_SOCKET="$T/hsid.sock" HSI_RUN_LOG=2
SERVER_ENV=()

# exec_case NAME CLIENT_MODE BYTES [SERVER ARGS...]: an hsi-run-check server
# (SERVER_ENV: env(1) options before it) and client under
# hsi-run; the client's output must say OK, the server must exit 0, and
# (unless the mode is exec-plain) both logs must show the connection
# carried on rings. CLIENT_MS: how long the client ran.
exec_case() {
  local name=$1 mode=$2 bytes=$3
  shift 3
  rm -f "$T/port" "$T/port.tmp"
  env "${SERVER_ENV[@]}" "$RUN" "$BIN/hsi-run-check" server --port-file "$T/port" "$@" >"$T/server.out" 2>"$T/server.err" &
  local server=$!
  PIDS+=("$server")
  wait_for test -s "$T/port" || { fail "$name: the server did not start: $(cat "$T/server.err")"; return; }
  local t0
  t0=$(date +%s%N)
  if ! timeout 60 "$RUN" "$BIN/hsi-run-check" client --port "$(cat "$T/port")" --bytes "$bytes" --mode "$mode" --seed 11 \
       ${STATIC:+--exec-path "$STATIC"} >"$T/client.out" 2>"$T/client.err"; then
    fail "$name: client: $(tail -n 3 "$T/client.out") $(grep -v 'hsi-run\[' "$T/client.err" | tail -n 3)"
    kill "$server" 2>/dev/null
    return
  fi
  CLIENT_MS=$((($(date +%s%N) - t0) / 1000000))
  if ! timeout 30 tail --pid="$server" -f /dev/null; then
    fail "$name: the server did not end"
    return
  fi
  wait "$server"
  local rc=$?
  [ $rc -eq 0 ] || { fail "$name: the server exited $rc: $(tail -n 3 "$T/server.out" "$T/server.err")"; return; }
  if [ "$mode" = exec-static ]; then
    if grep -q "closed in the new image at exec: $STATIC is statically linked" "$T/client.err"; then
      pass "$name: the descriptor was closed in the static program (reason logged), the server ended cleanly"
    else
      fail "$name: expected the descriptor closed with its reason: $(cat "$T/client.err")"
    fi
    return
  fi
  case $mode in spawn|spawn-threads|system|popen|vfork)
    local reason="closed in the spawned child ($mode): the parent keeps its copy"
    [ "$mode" = spawn-threads ] && reason="closed in the spawned child (posix_spawn): the parent keeps its copy"
    [ "$mode" = spawn ] && reason="closed as fd 0 in the spawned child (posix_spawn file action dup2)"
    [ "$mode" = vfork ] && reason="closed in the new image at exec: exec from a vfork"
    if grep -q "^OK bytes=$bytes" "$T/client.out" && grep -q "$reason" "$T/client.err" &&
       { [ "$mode" != spawn ] || grep -q "closed in the spawned child (posix_spawn): the parent keeps" "$T/client.err"; }; then
      pass "$name: the child found the descriptor closed (reason logged), the parent's $bytes bytes echoed and compared"
    else
      fail "$name: $(grep -v '^closed' "$T/client.out") $(grep -E 'spawned|closed' "$T/client.err" | head -n 3)"
    fi
    return
  esac
  if [ "$mode" = exec-plain ]; then
    if grep -q "^OK closed" "$T/client.out" &&
       grep -q "closed in the new image at exec: the new image's LD_PRELOAD does not name libhsi-run.so" "$T/client.err"; then
      pass "$name: the descriptor was closed in the image not under hsi-run (reason logged), no byte misread"
    else
      fail "$name: expected the descriptor closed with its reason: $(cat "$T/client.out") $(cat "$T/client.err")"
    fi
    return
  fi
  local carried=$T/client.err peer=$T/server.err
  if [ "${EXECER:-client}" = server ]; then carried=$T/server.err; peer=$T/client.err; fi
  if grep -q "^OK bytes=$bytes" "$T/client.out" && grep -q "carried across exec (stream" "$carried" &&
     grep -q "the peer exec'd: on its new segments" "$peer" && ! grep -q "connection reset" "$T/client.err" "$T/server.err" &&
     { [ "$mode" != exec2 ] || grep -q "carried across exec (stream [0-9]*, generation 2)" "$carried"; }; then
    pass "$name: $bytes bytes echoed and compared, the connection carried on rings across exec"
  else
    fail "$name: $(cat "$T/client.out") client: $(grep -E 'carried|exec|reset' "$T/client.err" | head -n 5)" \
      "server: $(grep -E 'carried|exec|reset' "$T/server.err" | head -n 5)"
  fi
}

exec_case "client execs mid-stream" exec 6000000
exec_case "client execs mid-stream, small" exec 20000
exec_case "forked child execs, parent closes" fork-exec 6000000
# The acceptor's side: the server execs after echoing 1 MB of 6 MB.
EXECER=server exec_case "server execs mid-stream" poll 6000000 --exec-after 1000000
EXECER=server exec_case "server execs mid-stream, client in edge-triggered epoll" epoll 6000000 --exec-after 2000000
# While the server's new image loads (slowly here: 4000 empty directories
# in its LD_LIBRARY_PATH for the loader to try), the
# client, a non-blocking poll loop that keeps writing into a full ring and
# reading an empty one, must not ask hsid on every call: after a "not yet"
# it waits 20 us, doubling to 2 ms, so over its run it asks at most about
# once per 2 ms (the bound: 10 + its run time in ms / 2).
# (Only the new image gets the variable; relative directories, from the
# server's working directory $T: it must stay below the kernel's 128 kB
# per string.)
mkdir -p "$T/l"
(cd "$T/l" && seq 1 4000 | xargs mkdir)
SERVER_ENV=(-C "$T")
EXECER=server exec_case "server execs mid-stream, its new image slow to load" poll 30000000 --exec-after 1000000 \
  --exec-env "LD_LIBRARY_PATH=$(seq 1 4000 | sed "s|^|l/|" | paste -sd:)"
SERVER_ENV=()
asks=$(grep -c "the peer is exec'ing" "$T/client.err")
if [ "$asks" -le $((10 + CLIENT_MS / 2)) ]; then
  pass "while the server's new image loaded, the client asked hsid $asks times in $CLIENT_MS ms"
else
  fail "while the server's new image loaded, the client asked hsid $asks times in $CLIENT_MS ms (more than one per 2 ms)"
fi
exec_case "client execs twice mid-stream" exec2 6000000
exec_case "client fexecve()s mid-stream" fexecve 6000000
exec_case "client execveat()s mid-stream (a path relative to a directory descriptor)" execveat 6000000
exec_case "exec into a program not under hsi-run" exec-plain 2000000
exec_case "posix_spawn child, inherited and dup2'd" spawn 4000000
exec_case "posix_spawn children of 4 threads at once" spawn-threads 4000000
exec_case "system() child" system 4000000
exec_case "popen() child" popen 4000000
exec_case "vfork()+execv child" vfork 4000000
# A statically linked program cannot load the library (ldconfig is static in
# Debian's libc-bin): the descriptor is closed there, the reason logged.
if readelf -l /sbin/ldconfig 2>/dev/null | grep -q INTERP || ! command -v readelf >/dev/null; then
  echo "SKIP: exec into a static program: /sbin/ldconfig is not statically linked here (or no readelf)"
else
  STATIC=/sbin/ldconfig exec_case "exec into a statically linked program" exec-static 2000000 --conns 1
fi

[ "$FAILED" -eq 0 ] || exit 1
