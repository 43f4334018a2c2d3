#!/usr/bin/env bash
# hsi-run across uids and network namespaces (ctest run_isolation_test).
#
#   run/tests/isolation_test.sh BINDIR
#
# What docs/hsi-run.md (section 2, "Policy" and step 1) promises, with real
# processes: hsid's [hsid] run_uids / run_cross_uids decide which uids are
# paired on rings (a refusal is a TCP fallback named "policy", never a
# failure), and a listener is known only in its own network namespace (a
# listener on port P in one namespace says nothing about port P in another).
# Every check moves bytes end to end with hsi-run-check (every byte generated
# from a seed, echoed, compared) and asserts the decision each end logged.
#
# Needs root (setpriv to other uids, ip netns); exits 77 with the reason if
# this machine cannot run it. Everything started here is killed by pid, every
# namespace made here deleted, on exit.
set -uo pipefail

BIN=${1:?usage: isolation_test.sh BINDIR}
. "$(dirname "$0")/lib.sh"
hsi_run_test_init "$BIN" hsi-run-iso
[ "$(id -u)" -eq 0 ] || { echo "SKIP: needs root (runs ends as other uids, makes network namespaces)"; exit 77; }
for p in setpriv ip python3; do
  command -v "$p" >/dev/null || { echo "SKIP: $p is not installed (packaging/setup.sh)"; exit 77; }
done
# Under ASan (ctest's asan run: every program here is ours and instrumented)
# the preloaded libhsi-run.so comes before libasan in the load order, which
# ASan refuses by default; the runtime is the program's own, so that order is
# safe. Harmless in other builds.
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0"
NOBODY=65534   # the run_uids member
STRANGER=65533 # in no list
chmod 755 "$T"
mkdir -m 777 "$T/w"  # where the other uids' servers write their port files
NETNS=()
cleanup_extra() {
  for n in "${NETNS[@]}"; do ip netns del "$n" 2>/dev/null; done
}
as_uid() { local u=$1; shift; setpriv --reuid="$u" --regid="$u" --clear-groups -- "$@"; }

# Starts hsid with `[hsid]` lines $1 (replacing any running one).
start_hsid() {
  [ -n "${HSID:-}" ] && { kill -9 "$HSID" 2>/dev/null; wait "$HSID" 2>/dev/null; }
  printf '[hsid]\nadmin_uids = ["self"]\n%b\n' "$1" >"$T/hsid.toml"
  rm -f "$T/hsid.sock"
  "$BIN/hsid" --socket "$T/hsid.sock" --config "$T/hsid.toml" >>"$T/hsid.log" 2>&1 &
  HSID=$!
  PIDS+=("$HSID")
  wait_for "$BIN/hsictl" --socket "$T/hsid.sock" fallbacks >/dev/null 2>&1 ||
    { echo "hsid did not start:"; cat "$T/hsid.log"; exit 1; }
}
export HSI_RUN_SOCKET="$T/hsid.sock" HSI_RUN_LOG=2
# fallback_count REASON: hsid's count of that fallback (hsictl fallbacks --json).
fallback_count() {
  "$BIN/hsictl" --socket "$T/hsid.sock" --json fallbacks |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["fallbacks"][sys.argv[1]])' "$1"
}

# pair_case NAME SERVER_UID CLIENT_UID EXPECT: an hsi-run-check server under
# hsi-run as SERVER_UID, a client under hsi-run as CLIENT_UID; all bytes must
# come back, and EXPECT is "rings" (both ends logged the pairing),
# "unregistered" (the server's uid is not in run_uids: hsid refused its
# listener at listen(), so the client is refused as `policy`, and hsictl
# fallbacks counts one more `policy` and no more `no_listener`), or a
# fallback reason the client logged ("stays on TCP (REASON)").
pair_case() {
  local name=$1 suid=$2 cuid=$3 expect=$4
  local policy0 nolistener0
  policy0=$(fallback_count policy)
  nolistener0=$(fallback_count no_listener)
  rm -f "$T/w/port"
  as_uid "$suid" "$RUN" "$BIN/hsi-run-check" server --port-file "$T/w/port" --conns 1 >"$T/server.out" 2>"$T/server.err" &
  local server=$!
  PIDS+=("$server")
  wait_for test -s "$T/w/port" || { fail "$name: the server did not start: $(cat "$T/server.err")"; return; }
  local port
  port=$(cat "$T/w/port")
  if ! timeout 60 setpriv --reuid="$cuid" --regid="$cuid" --clear-groups -- "$RUN" "$BIN/hsi-run-check" client \
       --port "$port" --bytes 3000000 --mode poll >"$T/client.out" 2>"$T/client.err" || ! grep -q OK "$T/client.out"; then
    fail "$name: bytes lost or the client failed: $(tail -n 3 "$T/client.out" "$T/client.err")"
    return
  fi
  wait "$server"
  local rc=$?
  [ $rc -eq 0 ] || { fail "$name: the server exited $rc: $(tail -n 5 "$T/server.err")"; return; }
  if [ "$expect" = rings ]; then
    if grep -q "connector paired on rings" "$T/client.err" && grep -q "accepted connection on rings" "$T/server.err"; then
      pass "$name: paired on rings, all bytes"
    else
      fail "$name: expected rings: client: $(cat "$T/client.err") server: $(cat "$T/server.err")"
    fi
  elif [ "$expect" = unregistered ]; then
    if grep -q "listener not registered, its connections stay on TCP: uid $suid is not in \[hsid\] run_uids" "$T/server.err" &&
       grep -q "stays on TCP (policy)" "$T/client.err" &&
       [ "$(fallback_count policy)" -eq $((policy0 + 1)) ] && [ "$(fallback_count no_listener)" -eq "$nolistener0" ]; then
      pass "$name: listener refused at listen(), TCP (policy, counted as policy), all bytes"
    else
      fail "$name: expected the listener refused and counted as policy ($policy0 -> $(fallback_count policy)," \
        "no_listener $nolistener0 -> $(fallback_count no_listener)): client: $(cat "$T/client.err") server: $(cat "$T/server.err")"
    fi
  elif grep -q "stays on TCP ($expect)" "$T/client.err" && ! grep -q "on rings" "$T/client.err" "$T/server.err"; then
    pass "$name: TCP (fallback $expect), all bytes"
  else
    fail "$name: expected fallback $expect: client: $(cat "$T/client.err") server: $(cat "$T/server.err")"
  fi
}

# ------------------------------------------------------------------ 1. uids
# Only root in run_uids (the default: the uid that started hsid).
start_hsid 'run_uids = ["self"]'
pair_case "root and root, run_uids = [self]" 0 0 rings
pair_case "uid $NOBODY server, root client, $NOBODY not in run_uids" $NOBODY 0 unregistered
# Both in run_uids, but pairing two different uids needs run_cross_uids.
start_hsid "run_uids = [\"self\", $NOBODY]"
pair_case "uid $NOBODY and uid $NOBODY, both ends one allowed uid" $NOBODY $NOBODY rings
pair_case "uid $NOBODY server, root client, run_cross_uids = []" $NOBODY 0 policy
fb=$("$BIN/hsictl" --socket "$T/hsid.sock" --json fallbacks)
if python3 -c 'import json,sys; sys.exit(0 if json.load(sys.stdin)["fallbacks"]["policy"] >= 1 else 1)' <<<"$fb"; then
  pass "hsictl fallbacks counts the policy refusal"
else
  fail "hsictl fallbacks: $fb"
fi
pair_case "uid $STRANGER and uid $STRANGER, in no list" $STRANGER $STRANGER unregistered
start_hsid "run_uids = [\"self\", $NOBODY]\nrun_cross_uids = [\"self\", $NOBODY]"
pair_case "uid $NOBODY server, root client, both in run_cross_uids" $NOBODY 0 rings
pair_case "uid $STRANGER server, root client, $STRANGER in no list" $STRANGER 0 unregistered
# A client whose uid is in no list, to an allowed server: refused at propose.
pair_case "root server, uid $STRANGER client, $STRANGER in no list" 0 $STRANGER policy

# ------------------------------------------------------------------ 2. network namespaces
# Two namespaces, each with its own loopback. An hsi-run server listens on
# 127.0.0.1:P in A; in B a plain echo server (not under hsi-run) listens on
# the same 127.0.0.1:P. A client under hsi-run in B must not be matched to
# A's listener: hsid knows no hsi-run listener at B's 127.0.0.1:P, so the
# fallback is no_listener (a proposal matched across namespaces would wait
# for a claim that never comes: fallback timeout).
start_hsid 'run_uids = ["self"]'
A="hsirun-a-$$" B="hsirun-b-$$"
for n in "$A" "$B"; do
  ip netns add "$n" || { fail "ip netns add $n"; exit 1; }
  NETNS+=("$n")
  ip -n "$n" link set lo up
done
rm -f "$T/w/port"
ip netns exec "$A" "$RUN" "$BIN/hsi-run-check" server --port-file "$T/w/port" --conns 2 >"$T/a.out" 2>"$T/a.err" &
PIDS+=("$!")
wait_for test -s "$T/w/port" || { fail "the server in $A did not start: $(cat "$T/a.err")"; exit 1; }
P=$(cat "$T/w/port")
ip netns exec "$B" python3 -c '
import socket, sys, threading
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(8)
open(sys.argv[2], "w").write("up")
def echo(c):
    while True:
        d = c.recv(1 << 16)
        if not d: break
        c.sendall(d)
    c.close()
while True:
    c, _ = s.accept(); threading.Thread(target=echo, args=(c,), daemon=True).start()
' "$P" "$T/b.up" >"$T/b.err" 2>&1 &
PIDS+=("$!")
wait_for test -s "$T/b.up" || { fail "the plain server in $B did not start: $(cat "$T/b.err")"; exit 1; }
if timeout 60 ip netns exec "$B" "$RUN" "$BIN/hsi-run-check" client --port "$P" --bytes 3000000 --mode poll \
     >"$T/client.out" 2>"$T/client.err" && grep -q OK "$T/client.out"; then
  if grep -q "stays on TCP (no_listener)" "$T/client.err"; then
    pass "same port in two namespaces: the client in $B is not matched to $A's listener (no_listener), all bytes"
  else
    fail "same port in two namespaces: expected no_listener: $(cat "$T/client.err")"
  fi
else
  fail "client in $B: $(tail -n 3 "$T/client.out" "$T/client.err")"
fi
# The same listener in A pairs with a client in A.
if timeout 60 ip netns exec "$A" "$RUN" "$BIN/hsi-run-check" client --port "$P" --bytes 3000000 --mode epoll \
     >"$T/client.out" 2>"$T/client.err" && grep -q OK "$T/client.out" &&
   grep -q "connector paired on rings" "$T/client.err"; then
  pass "client and server in one namespace ($A): paired on rings, all bytes"
else
  fail "client in $A: $(tail -n 3 "$T/client.out" "$T/client.err")"
fi

exit $FAILED
