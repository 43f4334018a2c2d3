#!/usr/bin/env bash
# hsi-run beside loopback TCP with real programs, interleaved, ratios taken
# within each repetition (issue 17, "Must show").
#
#   bench/run/hsi-run-bench.sh [--bin DIR] [--reps N] [--quick] [--only LIST]
#
#   --bin DIR     where hsid, hsi-run and hsictl are (default build/bin)
#   --reps N      repetitions of every pair (default 3; --quick: 1, shorter runs)
#   --only LIST   a subset of: sockperf,iperf3,redis,nginx (comma separated)
#
# Pairs, each run over plain loopback TCP and under hsi-run on both ends, in
# alternating order: sockperf ping-pong 64 B p50 (hsi-run without and with
# --busy-poll 50; TCP without busy polling), iperf3 single-stream bytes/s,
# redis-benchmark GET and SET (-c 50 -d 1024) requests/s, nginx + wrk
# (-c 100, a 4 KiB file) requests/s. Prints a markdown table (medians over
# the repetitions and the median of the per-repetition ratios) and the host.
# A private hsid on a temporary socket; every process started here is killed
# by pid at the end. Needs packaging/setup.sh's programs; a missing one is
# skipped with the reason.
set -u
BIN=build/bin
REPS=3
QUICK=0
ONLY=sockperf,iperf3,redis,nginx
while [ $# -gt 0 ]; do
  case "$1" in
    --bin) BIN=$2; shift 2 ;;
    --reps) REPS=$2; shift 2 ;;
    --quick) QUICK=1; REPS=1; shift ;;
    --only) ONLY=$2; shift 2 ;;
    -h|--help) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "hsi-run-bench: unknown option '$1' (try --help)" >&2; exit 2 ;;
  esac
done
for p in hsid hsi-run; do [ -x "$BIN/$p" ] || { echo "hsi-run-bench: $BIN/$p is not built" >&2; exit 1; }; done
DUR=5; [ $QUICK -eq 1 ] && DUR=2
RUN="$BIN/hsi-run"
. "$(dirname "$0")/../../run/tests/lib.sh"  # scratch dir, cleanup by pid, wait_for
hsi_run_scratch hsi-run-bench
wants() { [[ ",$ONLY," == *",$1,"* ]]; }
have() { command -v "$1" >/dev/null || { echo "skipped: $1 is not installed (packaging/setup.sh)" >&2; return 1; }; }
stop() { kill "$1" 2>/dev/null; wait "$1" 2>/dev/null; }

"$BIN/hsid" --socket "$T/hsid.sock" >"$T/hsid.log" 2>&1 &
PIDS+=("$!")
export HSI_RUN_SOCKET="$T/hsid.sock"
wait_for test -S "$T/hsid.sock" || { echo "hsid did not start" >&2; exit 1; }

RESULTS="$T/results.tsv"  # metric <tab> rep <tab> mode <tab> value
record() { printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >>"$RESULTS"; }

# `wrap MODE`: the command prefix for a mode (tcp, hsi, hsi-busy).
wrap() {
  case "$1" in
    tcp) echo "env" ;;
    hsi) echo "$RUN" ;;
    hsi-busy) echo "$RUN --busy-poll 50" ;;
  esac
}

sockperf_p50() {  # mode rep
  local port; port=$(free_port)
  $(wrap "$1") sockperf server --tcp -i 127.0.0.1 -p "$port" >/dev/null 2>&1 &
  local s=$!; PIDS+=("$s")
  wait_for listening "$port"
  local v
  # --mps 1000000: at its default ("max") rate sockperf 3.7 sizes its
  # table of sequence numbers for at most about a million round trips a
  # second and aborts ("_seqN > m_maxSequenceNo") when both ends busy-poll
  # on rings (2.6 M/s on an idle host); the cap paces the sender only, each
  # round trip is timed alone, and TCP (tens of thousands a second) never
  # meets it.
  v=$($(wrap "$1") sockperf ping-pong --tcp -i 127.0.0.1 -p "$port" -t "$DUR" -m 64 --mps 1000000 \
      2>"$T/sockperf.err" | sed -n 's/.*percentile 50.000 = *\([0-9.]*\).*/\1/p')
  stop "$s"
  if [ -n "$v" ]; then
    record "sockperf ping-pong 64 B p50 (us)" "$2" "$1" "$v"
  else
    echo "hsi-run-bench: sockperf ping-pong ($1, repetition $2) gave no p50: $(grep -m1 ERROR "$T/sockperf.err")" >&2
  fi
}

iperf3_bps() {
  local port; port=$(free_port)
  $(wrap "$1") iperf3 -s -1 -p "$port" >/dev/null 2>&1 &
  local s=$!; PIDS+=("$s")
  wait_for listening "$port"
  local v
  v=$($(wrap "$1") iperf3 -c 127.0.0.1 -p "$port" -t "$DUR" -J 2>/dev/null |
      python3 -c 'import json,sys; print(json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]/8e9)' 2>/dev/null)
  stop "$s"
  [ -n "$v" ] && record "iperf3 1 stream (GB/s)" "$2" "$1" "$v"
}

redis_rps() {
  local port; port=$(free_port)
  $(wrap "$1") redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --dir "$T" >/dev/null 2>&1 &
  local s=$!; PIDS+=("$s")
  wait_for listening "$port"
  local n=200000; [ $QUICK -eq 1 ] && n=50000
  $(wrap "$1") redis-benchmark -p "$port" -c 50 -d 1024 -n "$n" -t get,set --csv 2>/dev/null >"$T/rb.csv"
  stop "$s"
  local set get
  set=$(sed -n 's/^"SET","\([0-9.]*\)".*/\1/p' "$T/rb.csv")
  get=$(sed -n 's/^"GET","\([0-9.]*\)".*/\1/p' "$T/rb.csv")
  [ -n "$set" ] && record "redis-benchmark SET -c 50 -d 1024 (req/s)" "$2" "$1" "$set"
  [ -n "$get" ] && record "redis-benchmark GET -c 50 -d 1024 (req/s)" "$2" "$1" "$get"
}

nginx_rps() {
  local port; port=$(free_port)
  mkdir -p "$T/www" "$T/ngx"
  [ -f "$T/www/f4k" ] || head -c 4096 /dev/urandom >"$T/www/f4k"
  cat >"$T/nginx.conf" <<EOF
user $(id -un); daemon off; master_process on; worker_processes 1; pid $T/nginx.pid; error_log $T/nginx.err;
events { worker_connections 1024; }
http { access_log off; sendfile on; tcp_nopush on; keepalive_requests 1000000;
  client_body_temp_path $T/ngx; proxy_temp_path $T/ngx; fastcgi_temp_path $T/ngx; uwsgi_temp_path $T/ngx; scgi_temp_path $T/ngx;
  server { listen 127.0.0.1:$port; root $T/www; } }
EOF
  $(wrap "$1") nginx -c "$T/nginx.conf" -e "$T/nginx.err" >/dev/null 2>&1 &
  local s=$!; PIDS+=("$s")
  wait_for listening "$port"
  local v
  v=$($(wrap "$1") wrk -t 1 -c 100 -d "$DUR" "http://127.0.0.1:$port/f4k" 2>/dev/null | sed -n 's/^Requests\/sec: *\([0-9.]*\).*/\1/p')
  stop "$s"
  [ -n "$v" ] && record "nginx + wrk -c 100, 4 KiB (req/s)" "$2" "$1" "$v"
}

for rep in $(seq 1 "$REPS"); do
  # Alternate which side goes first, so a drift in the host's load does not
  # favour one side.
  if [ $((rep % 2)) -eq 1 ]; then order="tcp hsi"; else order="hsi tcp"; fi
  if wants sockperf && have sockperf; then
    for m in $order hsi-busy; do sockperf_p50 "$m" "$rep"; done
  fi
  if wants iperf3 && have iperf3; then for m in $order; do iperf3_bps "$m" "$rep"; done; fi
  if wants redis && have redis-server && have redis-benchmark; then for m in $order; do redis_rps "$m" "$rep"; done; fi
  if wants nginx && have nginx && have wrk; then for m in $order; do nginx_rps "$m" "$rep"; done; fi
  echo "repetition $rep of $REPS done" >&2
done

python3 - "$RESULTS" "$REPS" <<'EOF'
import collections, statistics, sys
rows = collections.defaultdict(lambda: collections.defaultdict(dict))
for line in open(sys.argv[1]):
    metric, rep, mode, value = line.rstrip("\n").split("\t")
    rows[metric][int(rep)][mode] = float(value)
print("| pair | TCP | hsi-run | hsi-run / TCP (median of per-rep ratios) |")
print("|---|---|---|---|")
for metric, reps in rows.items():
    lower = "(us)" in metric  # latency: TCP / hsi-run is the gain
    for mode, label in (("hsi", "hsi-run"), ("hsi-busy", "hsi-run --busy-poll 50")):
        ratios = [r[mode] / r["tcp"] if not lower else r["tcp"] / r[mode]
                  for r in reps.values() if mode in r and "tcp" in r and r[mode] > 0 and r["tcp"] > 0]
        if not ratios:
            continue
        tcp = statistics.median(r["tcp"] for r in reps.values() if "tcp" in r)
        val = statistics.median(r[mode] for r in reps.values() if mode in r)
        how = "lower" if lower else "higher"
        print(f"| {metric}, {label} | {tcp:.3g} | {val:.3g} | {statistics.median(ratios):.2f}x {how} |")
print(f"\n{sys.argv[2]} repetition(s); ratios within each repetition, then the median.")
EOF
echo
echo "host: $(nproc) CPUs, $(uname -r), load $(cut -d' ' -f1-3 /proc/loadavg), $(date -u +%F)"
