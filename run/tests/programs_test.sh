#!/usr/bin/env bash
# hsi-run with real, unmodified programs (ctest run_programs_test).
#
#   run/tests/programs_test.sh BINDIR
#
# BINDIR holds hsid, hsi-run, hsictl and hsi-run-check (build/bin). A private
# hsid runs on a socket in a fresh directory; every server listens on a port
# of its own; everything started here is killed by pid on exit. Each check
# says what it checks; data is always compared end to end (cmp, checksums,
# values read back). A program that is not installed is skipped with the
# reason (packaging/setup.sh installs them); exit 77 if hsi-run itself is
# missing, 1 if any check failed.
set -u
BIN=${1:?usage: programs_test.sh BINDIR}
. "$(dirname "$0")/lib.sh"
hsi_run_test_init "$BIN" hsi-run-test
have() { command -v "$1" >/dev/null || { echo "SKIP: $1 is not installed (packaging/setup.sh)"; return 1; }; }


start_hsid() {
  "$BIN/hsid" --socket "$T/hsid.sock" >"$T/hsid.log" 2>&1 &
  HSID=$!
  PIDS+=("$HSID")
  wait_for "$BIN/hsictl" --socket "$T/hsid.sock" fallbacks >/dev/null 2>&1 || { echo "hsid did not start:"; cat "$T/hsid.log"; exit 1; }
}
start_hsid
export HSI_RUN_SOCKET="$T/hsid.sock" HSI_RUN_LOG=2

# Starts hsi-run-check's server (under `$@`), sets CHECK_PORT.
check_server() {
  rm -f "$T/port"
  "$@" "$BIN/hsi-run-check" server --port-file "$T/port" --conns "${CONNS:-1}" >"$T/server.out" 2>"$T/server.err" &
  PIDS+=("$!")
  SERVER=$!
  wait_for test -s "$T/port" || { fail "hsi-run-check server did not start"; return 1; }
  CHECK_PORT=$(cat "$T/port")
}

# ------------------------------------------------------------------ 1. own stream program, every mode
for mode in poll threads fork epoll; do
  check_server "$RUN" || continue
  rm -f "$T/client.out" "$T/client.err"
  if timeout 60 "$RUN" "$BIN/hsi-run-check" client --port "$CHECK_PORT" --bytes 30000000 --mode "$mode" --seed 7 \
       >"$T/client.out" 2>"$T/client.err" && grep -q "OK bytes=30000000" "$T/client.out"; then
    if grep -q "connector paired on rings" "$T/client.err"; then
      pass "hsi-run-check $mode: 30 MB echoed on rings, every byte compared"
    else
      fail "hsi-run-check $mode: correct, but the connection was not on rings: $(cat "$T/client.err")"
    fi
  else
    fail "hsi-run-check $mode: $(cat "$T/client.out" "$T/client.err" | tail -n 5)"
  fi
  wait "$SERVER" 2>/dev/null
done

# Wake-ups: round trips where the reader sleeps for nearly every echo, in
# each way a program can sleep (docs/hsi-run.md, section 4: lazy arming and
# one bell per wait); a lost wake-up fails a round after 10 s.
for mode in et-rounds block-rounds shared-epoll many-epoll two-waiters; do
  conns=1; [ "$mode" = many-epoll ] && conns=16; [ "$mode" = two-waiters ] && conns=2
  CONNS=$conns check_server "$RUN" || continue
  if timeout 120 "$RUN" "$BIN/hsi-run-check" client --port "$CHECK_PORT" --bytes 0 --mode "$mode" --rounds 2000 \
       >"$T/client.out" 2>"$T/client.err" && grep -q "OK rounds=2000" "$T/client.out" &&
     [ "$(grep -c "connector paired on rings" "$T/client.err")" -eq "$conns" ]; then
    pass "wake-ups, $mode: 2000 round trips on rings, none lost"
  else
    fail "wake-ups, $mode: $(cat "$T/client.out" | tail -n 2) $(grep -c 'paired on rings' "$T/client.err")/$conns on rings"
  fi
  wait "$SERVER" 2>/dev/null
done

check_server "$RUN"
if timeout 60 "$RUN" "$BIN/hsi-run-check" client --port "$CHECK_PORT" --bytes 0 --mode semantics >"$T/sem.out" 2>"$T/sem.err" &&
   grep -q "OK semantics" "$T/sem.out" && grep -q "connector paired on rings" "$T/sem.err"; then
  pass "socket semantics on rings: select, MSG_PEEK, FIONREAD, MSG_DONTWAIT, EPOLLONESHOT, sendmmsg/recvmmsg, shared epoll after fork, EOF, EPIPE, options"
else
  fail "semantics: $(cat "$T/sem.out") $(tail -n 3 "$T/sem.err")"
fi
wait "$SERVER" 2>/dev/null
check_server env
if timeout 60 "$BIN/hsi-run-check" client --port "$CHECK_PORT" --bytes 0 --mode semantics >"$T/sem.out" 2>&1 &&
   grep -q "OK semantics" "$T/sem.out"; then
  pass "the same semantics check over plain TCP (the reference)"
else
  fail "semantics over plain TCP: $(cat "$T/sem.out")"
fi
wait "$SERVER" 2>/dev/null

# ------------------------------------------------------------------ 2. mixed: one end not under hsi-run
check_server env
if timeout 60 "$RUN" "$BIN/hsi-run-check" client --port "$CHECK_PORT" --bytes 5000000 --mode threads >"$T/client.out" 2>"$T/client.err" &&
   grep -q OK "$T/client.out" && grep -q "stays on TCP (no_listener)" "$T/client.err"; then
  pass "hsi-run client, plain server: TCP, fallback no_listener, all bytes"
else
  fail "hsi-run client vs plain server: $(tail -n 3 "$T/client.out" "$T/client.err")"
fi
wait "$SERVER" 2>/dev/null
check_server "$RUN"
if timeout 60 "$BIN/hsi-run-check" client --port "$CHECK_PORT" --bytes 5000000 --mode poll >"$T/client.out" 2>&1 &&
   grep -q OK "$T/client.out"; then
  wait "$SERVER" 2>/dev/null
  if grep -q "stays on TCP (plain_peer)" "$T/server.err"; then
    pass "plain client, hsi-run server: TCP, fallback plain_peer, all bytes"
  else
    fail "plain client vs hsi-run server: no plain_peer fallback logged: $(cat "$T/server.err")"
  fi
else
  fail "plain client vs hsi-run server: $(tail -n 3 "$T/client.out")"
fi
fb=$("$BIN/hsictl" --socket "$T/hsid.sock" --json fallbacks)
if python3 -c 'import json,sys; f=json.load(sys.stdin)["fallbacks"]; sys.exit(0 if f["no_listener"]>=1 and f["plain_peer"]>=1 else 1)' <<<"$fb"; then
  pass "hsictl fallbacks --json counts no_listener and plain_peer"
else
  fail "hsictl fallbacks: $fb"
fi

# ------------------------------------------------------------------ 3. hsid not running: TCP
check_server env HSI_RUN_SOCKET="$T/nobody.sock"
if timeout 60 env HSI_RUN_SOCKET="$T/nobody.sock" "$RUN" "$BIN/hsi-run-check" client --port "$CHECK_PORT" --bytes 5000000 \
     --mode epoll >"$T/client.out" 2>"$T/client.err" && grep -q OK "$T/client.out" && grep -q "hsid not reachable" "$T/client.err"; then
  pass "no hsid: both ends on TCP, all bytes"
else
  fail "no hsid: $(tail -n 3 "$T/client.out" "$T/client.err")"
fi
wait "$SERVER" 2>/dev/null

# ------------------------------------------------------------------ 4. streams listed while open; hsid killed mid-transfer
CONNS=3 check_server "$RUN"
timeout 120 "$RUN" "$BIN/hsi-run-check" client --port "$CHECK_PORT" --bytes 3000000000 --mode threads >"$T/kill-hsid.out" 2>"$T/kill-hsid.err" &
CLIENT=$!
PIDS+=("$CLIENT")
if wait_for grep -q "connector paired on rings" "$T/kill-hsid.err"; then
  ls=$("$BIN/hsictl" --socket "$T/hsid.sock" --json streams)
  if python3 -c 'import json,sys; s=json.load(sys.stdin)["streams"]; sys.exit(0 if any(x["state"]=="paired" and x["acceptor"].endswith(":'"$CHECK_PORT"'") for x in s) else 1)' <<<"$ls"; then
    pass "hsictl streams --json lists the paired connection"
  else
    fail "hsictl streams: $ls"
  fi
  kill -9 "$HSID"
  if wait "$CLIENT" && grep -q "OK bytes=3000000000" "$T/kill-hsid.out"; then
    pass "hsid killed during a 3 GB transfer: no byte lost, the connection kept working"
  else
    fail "hsid killed mid-transfer: $(tail -n 3 "$T/kill-hsid.out" "$T/kill-hsid.err")"
  fi
else
  fail "hsid-kill case: the client never paired: $(cat "$T/kill-hsid.err")"
fi
# A new hsid: the running server registers its listener again at its next
# accept (the connection that accept serves was proposed to a hsid that
# knew no listener: TCP), and the connection after it pairs.
start_hsid
for i in 2 3; do
  timeout 60 "$RUN" "$BIN/hsi-run-check" client --port "$CHECK_PORT" --bytes 5000000 --mode poll >"$T/restart$i.out" 2>"$T/restart$i.err"
done
if grep -q OK "$T/restart2.out" && grep -q OK "$T/restart3.out" && grep -q "connector paired on rings" "$T/restart3.err"; then
  pass "hsid restarted: the server's listener registered again, new connections pair"
else
  fail "after an hsid restart: $(cat "$T/restart2.out" "$T/restart3.out"; tail -n 2 "$T/restart3.err")"
fi
wait "$SERVER" 2>/dev/null

# ------------------------------------------------------------------ 5. the peer killed: an error, not a hang
check_server "$RUN"
timeout 60 "$RUN" "$BIN/hsi-run-check" client --port "$CHECK_PORT" --bytes 100000000000 --mode threads >"$T/kill-peer.out" 2>"$T/kill-peer.err" &
CLIENT=$!
PIDS+=("$CLIENT")
if wait_for grep -q "connector paired on rings" "$T/kill-peer.err"; then
  kill -9 "$SERVER"
  wait "$CLIENT"
  rc=$?
  if [ $rc -eq 1 ] && grep -qE "FAIL: (recv|send|got [0-9]+ of)" "$T/kill-peer.out"; then
    pass "server killed mid-transfer: the client sees the connection fail ($(head -c 80 "$T/kill-peer.out"))"
  else
    fail "server killed: client exit $rc: $(cat "$T/kill-peer.out")"
  fi
else
  fail "peer-kill case: the client never paired"
fi

# ------------------------------------------------------------------ 6. iperf3
# iperf3 checks no content (its -F file mode loses bytes over plain TCP too,
# in its partial-write handling), and its receiver count stops at the
# end-of-test message (short of the sender's over plain TCP too). So: the
# run completes and the client's own count is the -n bytes (what it sent,
# or with -R what it received; iperf3 may send up to a block per stream
# more than -n, on TCP as well). Content is checked by hsi-run-check,
# redis and nginx.
if have iperf3; then
  for extra in "" "-R" "-P 4"; do
    port=$(free_port)
    "$RUN" iperf3 -s -1 -p "$port" >/dev/null 2>&1 &
    PIDS+=("$!")
    wait_for listening "$port"
    # shellcheck disable=SC2086
    if timeout 60 "$RUN" iperf3 -c 127.0.0.1 -p "$port" -n 200M $extra -J >"$T/iperf.json" 2>"$T/iperf-c.err" &&
       python3 -c 'import json,sys; e=json.load(open(sys.argv[1]))["end"]; k="sum_received" if sys.argv[2]=="-R" else "sum_sent"; n=200*2**20; sys.exit(0 if n<=e[k]["bytes"]<=n+8*2**17 else 1)' "$T/iperf.json" "$extra"; then
      n=$(grep -c "connector paired on rings" "$T/iperf-c.err")
      pass "iperf3 -n 200M $extra: completed, $n connections on rings"
    else
      fail "iperf3 $extra: $(python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); print(j.get("error"), j.get("end",{}).get("sum_sent",{}).get("bytes"), j.get("end",{}).get("sum_received",{}).get("bytes"))' "$T/iperf.json" 2>&1) $(tail -n 3 "$T/iperf-c.err")"
    fi
  done
fi

# ------------------------------------------------------------------ 7. redis
if have redis-server && have redis-cli && have redis-benchmark; then
  port=$(free_port)
  "$RUN" redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --dir "$T" >"$T/redis.log" 2>&1 &
  PIDS+=("$!")
  wait_for listening "$port"
  ok=1
  for size in 1 1000 100000 1048576; do
    head -c "$size" /dev/urandom | base64 -w0 | head -c "$size" >"$T/value"
    "$RUN" redis-cli -p "$port" -x set "k$size" <"$T/value" >/dev/null 2>&1
    "$RUN" redis-cli -p "$port" --no-raw get "k$size" >/dev/null 2>&1
    "$RUN" redis-cli -p "$port" get "k$size" 2>/dev/null | head -c "$size" >"$T/got"
    cmp -s "$T/value" "$T/got" || { ok=0; fail "redis: a value of $size bytes did not read back equal"; }
  done
  [ $ok -eq 1 ] && pass "redis-cli: values of 1 B to 1 MiB read back equal"
  if timeout 120 "$RUN" redis-benchmark -p "$port" -c 50 -n 20000 -d 1024 -t get,set --csv >"$T/rb.csv" 2>"$T/rb.err" &&
     [ "$(grep -cE '^"(GET|SET)"' "$T/rb.csv")" -eq 2 ]; then
    n=$(grep -c "connector paired on rings" "$T/rb.err")
    pass "redis-benchmark -c 50 -d 1024 get,set: completed, $n connections on rings"
  else
    fail "redis-benchmark: $(tail -n 3 "$T/rb.csv" "$T/rb.err")"
  fi
fi

# ------------------------------------------------------------------ 8. nginx + curl + wrk
if have nginx && have curl; then
  port=$(free_port)
  mkdir -p "$T/www" "$T/ngx"
  : >"$T/www/f0"
  for s in 4096 1048576 67108864; do head -c $s /dev/urandom >"$T/www/f$s"; done
  cat >"$T/nginx.conf" <<EOF
user $(id -un); daemon off; master_process on; worker_processes 2; pid $T/nginx.pid; error_log $T/nginx.err;
events { worker_connections 1024; }
http { access_log off; sendfile on; tcp_nopush on;
  client_body_temp_path $T/ngx; proxy_temp_path $T/ngx; fastcgi_temp_path $T/ngx; uwsgi_temp_path $T/ngx; scgi_temp_path $T/ngx;
  server { listen 127.0.0.1:$port; root $T/www; } }
EOF
  "$RUN" nginx -c "$T/nginx.conf" -e "$T/nginx.err" >/dev/null 2>&1 &
  PIDS+=("$!")
  wait_for listening "$port"
  ok=1
  for f in f0 f4096 f1048576 f67108864; do
    timeout 60 "$RUN" curl -s -o "$T/got.$f" "http://127.0.0.1:$port/$f" 2>>"$T/curl.err"
    cmp -s "$T/www/$f" "$T/got.$f" || { ok=0; fail "nginx+curl: $f differs"; }
  done
  if [ $ok -eq 1 ] && [ "$(grep -c 'connector paired on rings' "$T/curl.err")" -eq 4 ]; then
    pass "nginx (sendfile) + curl: files of 0 B to 64 MiB identical, on rings"
  elif [ $ok -eq 1 ]; then
    fail "nginx+curl: identical but not all on rings: $(grep -c 'paired' "$T/curl.err")/4"
  fi
  if have wrk; then
    if timeout 60 "$RUN" wrk -t 1 -c 100 -d 2 "http://127.0.0.1:$port/f4096" >"$T/wrk.out" 2>"$T/wrk.err" &&
       grep -q "Requests/sec" "$T/wrk.out" && ! grep -qE "Non-2xx|Socket errors" "$T/wrk.out"; then
      pass "wrk -c 100 on nginx: $(grep Requests/sec "$T/wrk.out" | tr -s ' '), no errors"
    else
      fail "wrk: $(cat "$T/wrk.out" | tail -4)"
    fi
  fi
fi

# ------------------------------------------------------------------ 9. sockperf
if have sockperf; then
  for mode in ping-pong throughput; do
    port=$(free_port)
    "$RUN" sockperf server --tcp -i 127.0.0.1 -p "$port" >/dev/null 2>&1 &
    PIDS+=("$!")
    wait_for listening "$port"
    if timeout 30 "$RUN" sockperf "$mode" --tcp -i 127.0.0.1 -p "$port" -t 1 -m 64 >"$T/sp.out" 2>"$T/sp.err" &&
       grep -qE "Summary|BandWidth|avg-latency" "$T/sp.out" && grep -q "connector paired on rings" "$T/sp.err"; then
      pass "sockperf $mode: completed on rings"
    else
      fail "sockperf $mode: $(tail -n 3 "$T/sp.out" "$T/sp.err")"
    fi
  done
fi

exit $FAILED
