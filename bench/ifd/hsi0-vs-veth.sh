#!/usr/bin/env bash
# hsi0 against a veth pair, between the same two network namespaces, in one
# sitting (issue 16's must-show). Not a test: it runs by hand and prints a
# table for docs/benchmarks.md.
#
#   bench/ifd/hsi0-vs-veth.sh [--seconds N] [--rounds N] [--wait MODE[,MODE...]]
#                             [--paths PATH[,PATH...]] [--build DIR] [--sockperf-only]
#
# Paths, each between namespace A (client) and B (server):
#   hsi0 8K   hsi-ifd on CHPID F0 (MFS 16K, MTU 8K)
#   hsi0 56K  hsi-ifd on CHPID F1 (MFS 64K, MTU 56K)
#   hsi0 8K no offload, hsi0 56K no offload: the same on CHPIDs F2 and F3
#             with hsi-ifd --offload off (no checksum offload)
#   veth 1500 and veth 65535
# Programs: iperf3 single stream and -P 4 (receiver's bytes/s), and
# sockperf ping-pong with 64-byte messages (p50, p99 round trip).
# Ratios are hsi0 over the better veth figure of the same run. With
# --rounds N every path runs N times, the paths taking turns, and each
# figure is the median of its N (a busy host moves single runs).
# --wait takes one wait mode or several (adaptive,block,spin): each hsi0
# path runs in each, as rows of one table. A pair of hsi-ifds runs only
# while its own path is measured (idle spinning pumps would take the CPU
# from the measured ones). During each hsi0 ping-pong, `perf stat` (if
# present) counts the two pumps' system calls and context switches: the
# table gives them per round trip and pump.
# --sockperf-only skips iperf3 (its columns read "-"): a latency look in
# a quarter of the time. --paths picks hsi0 paths (8k, 8k-nooffload, 56k,
# 56k-nooffload; default all four); both veths always run.
# Needs root (namespaces, TUN), iperf3, sockperf (packaging/setup.sh).
set -euo pipefail
cd "$(dirname "$0")/../.."

secs=5
rounds=1
wait_mode=adaptive
build=build
only_sockperf=0
paths=8k,8k-nooffload,56k,56k-nooffload
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) secs="$2"; shift 2 ;;
    --wait) wait_mode="$2"; shift 2 ;;
    --build) build="$2"; shift 2 ;;
    --rounds) rounds="$2"; shift 2 ;;
    --sockperf-only) only_sockperf=1; shift ;;
    --paths) paths="$2"; shift 2 ;;
    -h|--help) sed -n '2,30p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "hsi0-vs-veth.sh: unknown option '$1' (try --help)" >&2; exit 2 ;;
  esac
done
# An hsi0 path: "NAME|CHPID|SUBNET (3 octets)|hsi-ifd options" (NAME also
# names the device: hsi0..hsi3, one per CHPID).
declare -A path_entry=(
  [8k]="hsi0 8K|F0|10.240.0|hsi0|" [8k-nooffload]="hsi0 8K no offload|F2|10.242.0|hsi2|--offload off"
  [56k]="hsi0 56K|F1|10.241.0|hsi1|" [56k-nooffload]="hsi0 56K no offload|F3|10.243.0|hsi3|--offload off")
hsi_paths=()
IFS=, read -r -a picked <<<"$paths"
for p in "${picked[@]}"; do
  [ -n "${path_entry[$p]:-}" ] || { echo "hsi0-vs-veth.sh: unknown path '$p' in --paths (8k, 8k-nooffload, 56k, 56k-nooffload)" >&2; exit 2; }
  hsi_paths+=("${path_entry[$p]}")
done
[ "$(id -u)" -eq 0 ] || { echo "hsi0-vs-veth.sh: needs root (network namespaces, /dev/net/tun)" >&2; exit 1; }
for p in iperf3 sockperf ip "$build/bin/hsid" "$build/bin/hsi-ifd"; do
  command -v "$p" >/dev/null || [ -x "$p" ] || { echo "hsi0-vs-veth.sh: $p is missing (packaging/setup.sh, then build)" >&2; exit 1; }
done

tag=$$
A=hsibench-a-$tag
B=hsibench-b-$tag
dir=$(mktemp -d /tmp/hsi-bench-ifd.XXXXXX)
pids=()
pair=()  # the hsi-ifds of the path being measured (start_pair)
cleanup() {
  for p in "${pair[@]}" "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pair[@]}" "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  ip netns del "$A" 2>/dev/null || true
  ip netns del "$B" 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT INT TERM

cat >"$dir/hsid.toml" <<'EOF'
[hsid]
admin_uids = ["self"]

[[chpid]]
id = "F0"
mfs = "16K"
subnet = "10.240.0.0/24"
queue_size = "1M"

[[chpid]]
id = "F1"
mfs = "64K"
subnet = "10.241.0.0/24"
queue_size = "4M"

[[chpid]]
id = "F2"
mfs = "16K"
subnet = "10.242.0.0/24"
queue_size = "1M"

[[chpid]]
id = "F3"
mfs = "64K"
subnet = "10.243.0.0/24"
queue_size = "4M"

[[lpar]]
name = "*"
uids = ["self"]
EOF
"$build/bin/hsid" --config "$dir/hsid.toml" --socket "$dir/hsid.sock" 2>"$dir/hsid.log" &
pids+=($!)
until [ -S "$dir/hsid.sock" ]; do kill -0 "${pids[0]}" || { cat "$dir/hsid.log" >&2; exit 1; }; sleep 0.01; done

ip netns add "$A"
ip netns add "$B"
for ns in "$A" "$B"; do ip -n "$ns" link set lo up; done
start_ifd() {  # NS LPAR CHPID IFNAME ADDRESS MODE [OPTION...]: adds its pid to pair
  "$build/bin/hsi-ifd" --lpar "$2" --chpid "$3" --netns "$1" --ifname "$4" --address "$5" \
    --socket "$dir/hsid.sock" --wait "$6" "${@:7}" 2>"$dir/$2.log" &
  local pid=$!
  pair+=("$pid")
  until ip -n "$1" -4 addr show dev "$4" 2>/dev/null | grep -q "inet $5"; do
    kill -0 "$pid" 2>/dev/null || { cat "$dir/$2.log" >&2; exit 1; }
    sleep 0.01
  done
}
# The pair of hsi-ifds of an hsi0 path (path_entry) runs only while it is
# measured.
start_pair() {  # PATH-ENTRY MODE
  local chpid subnet ifname opts
  IFS='|' read -r _ chpid subnet ifname opts <<<"$1"
  # shellcheck disable=SC2086  # opts is a word list
  start_ifd "$A" "a$chpid$2" "$chpid" "$ifname" "$subnet.1" "$2" $opts
  # shellcheck disable=SC2086
  start_ifd "$B" "b$chpid$2" "$chpid" "$ifname" "$subnet.2" "$2" $opts
  ip netns exec "$A" ping -q -c 1 -W 5 "$subnet.2" >/dev/null || { echo "hsi0-vs-veth.sh: $subnet.2 unreachable" >&2; exit 1; }
}
stop_pair() {  # and waits until both are gone (their devices with them)
  kill "${pair[@]}"
  wait "${pair[@]}" 2>/dev/null || true
  pair=()
}
# veth pairs at 1500 and 65535.
ip link add va1500-$tag netns "$A" type veth peer name vb1500-$tag netns "$B"
ip link add va64k-$tag netns "$A" type veth peer name vb64k-$tag netns "$B"
ip -n "$A" link set va64k-$tag mtu 65535
ip -n "$B" link set vb64k-$tag mtu 65535
ip -n "$A" addr add 10.250.0.1/24 dev va1500-$tag
ip -n "$B" addr add 10.250.0.2/24 dev vb1500-$tag
ip -n "$A" addr add 10.251.0.1/24 dev va64k-$tag
ip -n "$B" addr add 10.251.0.2/24 dev vb64k-$tag
for l in va1500 va64k; do ip -n "$A" link set "$l-$tag" up; done
for l in vb1500 vb64k; do ip -n "$B" link set "$l-$tag" up; done
for t in 10.250.0.2 10.251.0.2; do
  ip netns exec "$A" ping -q -c 1 -W 5 "$t" >/dev/null || { echo "hsi0-vs-veth.sh: $t unreachable" >&2; exit 1; }
done

ip netns exec "$B" iperf3 -s -p 5201 >/dev/null 2>&1 &
pids+=($!)
ip netns exec "$B" sockperf server -p 11111 >/dev/null 2>&1 &
pids+=($!)
until ip netns exec "$B" ss -ltn | grep -q ':5201 '; do sleep 0.01; done
until ip netns exec "$B" ss -lun | grep -q ':11111 '; do sleep 0.01; done

iperf() {  # ADDRESS STREAMS -> Gbit/s received
  ip netns exec "$A" iperf3 -c "$1" -p 5201 -t "$secs" -P "$2" -J |
    python3 -c 'import json,sys; print("%.2f" % (json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]/1e9))'
}
counting=0
command -v perf >/dev/null && counting=1
# ADDRESS [PID...] -> "p50 p99 round-trips syscalls switches": p50 and p99
# in us; round trips of the whole run, warm-up included, as the counts of
# the PIDs' system calls and context switches (summed; "-" without perf)
# span it (and sockperf's start, a few ms).
pingpong() {
  local out=$dir/perf.out counter=
  if [ "$counting" = 1 ] && [ $# -gt 1 ]; then
    local list="${*:2}"
    perf stat -x, -o "$out" -e raw_syscalls:sys_enter,context-switches -p "${list// /,}" 2>/dev/null &
    counter=$!
  fi
  ip netns exec "$A" sockperf ping-pong -i "$1" -p 11111 -m 64 -t "$secs" 2>&1 |
    awk '/percentile 50.000/ {p50=$NF} /percentile 99.000/ {p99=$NF}
         /\[Total Run\]/ {for (i = 1; i <= NF; i++) if ($i ~ /^ReceivedMessages=/) {split($i, x, "="); n = x[2]}}
         END {print p50, p99, n + 0}' >"$dir/pp.out"
  local calls=- switches=-
  if [ -n "$counter" ]; then
    kill -INT "$counter"
    wait "$counter" 2>/dev/null || true
    calls=$(awk -F, '$3 == "raw_syscalls:sys_enter" && $1 ~ /^[0-9]+$/ {print $1}' "$out" 2>/dev/null || true)
    switches=$(awk -F, '$3 == "context-switches" && $1 ~ /^[0-9]+$/ {print $1}' "$out" 2>/dev/null || true)
  fi
  echo "$(cat "$dir/pp.out") ${calls:--} ${switches:--}"
}

IFS=, read -r -a modes <<<"$wait_mode"
declare -A single multi p50 p99 calls switches
rows=()
for mode in "${modes[@]}"; do
  for entry in "${hsi_paths[@]}"; do rows+=("${entry%%|*}, $mode"); done
done
veth_paths=("veth 1500:10.250.0.2" "veth 65535:10.251.0.2")
for entry in "${veth_paths[@]}"; do rows+=("${entry%%:*}"); done
for row in "${rows[@]}"; do single[$row]="" multi[$row]="" p50[$row]="" p99[$row]="" calls[$row]="" switches[$row]=""; done
measure() {  # ROW ADDRESS [PUMP-PID...]
  if [ "$only_sockperf" = 0 ]; then
    single[$1]+=" $(iperf "$2" 1)"
    multi[$1]+=" $(iperf "$2" 4)"
  fi
  local a b n c w
  read -r a b n c w < <(pingpong "${@:2}")
  p50[$1]+=" $a" p99[$1]+=" $b"
  # Per round trip and pump.
  if [ "$c" != - ] && [ "$w" != - ] && [ "$n" -gt 0 ]; then
    calls[$1]+=" $(python3 -c "print($c / $n / 2)")" switches[$1]+=" $(python3 -c "print($w / $n / 2)")"
  fi
}
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
for ((round = 0; round < rounds; round++)); do
  for mode in "${modes[@]}"; do
    for entry in "${hsi_paths[@]}"; do
      IFS='|' read -r name _ subnet _ <<<"$entry"
      start_pair "$entry" "$mode"
      measure "$name, $mode" "$subnet.2" "${pair[@]}"
      stop_pair
    done
  done
  for entry in "${veth_paths[@]}"; do measure "${entry%%:*}" "${entry#*:}"; done
done
load_end=$(cut -d' ' -f1-3 /proc/loadavg)
median() { python3 -c "import statistics, sys; print('%.2f' % statistics.median(float(x) for x in sys.argv[1:]) if sys.argv[1:] else '-')" "$@"; }
for row in "${rows[@]}"; do
  # shellcheck disable=SC2086  # the lists are space-separated numbers
  single[$row]=$(median ${single[$row]}) multi[$row]=$(median ${multi[$row]})
  # shellcheck disable=SC2086
  p50[$row]=$(median ${p50[$row]}) p99[$row]=$(median ${p99[$row]})
  # shellcheck disable=SC2086
  calls[$row]=$(median ${calls[$row]}) switches[$row]=$(median ${switches[$row]})
done

best() { python3 -c "import sys; print(max(float(x) if x != '-' else 0 for x in sys.argv[1:]))" "$@"; }
bestlat() { python3 -c "import sys; print(min(float(x) for x in sys.argv[1:]))" "$@"; }
vs=$(best "${single[veth 1500]}" "${single[veth 65535]}")
vm=$(best "${multi[veth 1500]}" "${multi[veth 65535]}")
vl=$(bestlat "${p50[veth 1500]}" "${p50[veth 65535]}")
ratio() { python3 -c "import sys; print('-' if '-' in sys.argv[1:] or float(sys.argv[2]) == 0 else '%.2fx' % (float(sys.argv[1]) / float(sys.argv[2])))" "$1" "$2"; }

echo "hsi0 vs veth, $(date -u '+%F %H:%M') UTC, $(nproc) CPUs, kernel $(uname -r), hsi-ifd --wait $wait_mode," \
  "${secs} s per run, median of $rounds round(s), load average $load_start at the start, $load_end at the end"
printf '| path, wait | iperf3 1 stream Gbit/s | vs best veth | iperf3 -P 4 Gbit/s | vs best veth | sockperf 64 B p50 us | p99 us | p50 vs best veth | pump syscalls / round trip | pump switches / round trip |\n'
printf '|---|---|---|---|---|---|---|---|---|---|\n'
for row in "${rows[@]}"; do
  printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$row" "${single[$row]}" "$(ratio "${single[$row]}" "$vs")" \
    "${multi[$row]}" "$(ratio "${multi[$row]}" "$vm")" "${p50[$row]}" "${p99[$row]}" "$(ratio "${p50[$row]}" "$vl")" \
    "${calls[$row]}" "${switches[$row]}"
done
echo
offload_lines=()
for mode in "${modes[@]}"; do
  for m in 8K 56K; do
    on="hsi0 $m, $mode" off="hsi0 $m no offload, $mode"
    [ -n "${single[$on]+x}" ] && [ -n "${single[$off]+x}" ] || continue  # --paths left one out
    offload_lines+=("  hsi0 $m, $mode: iperf3 1 stream $(ratio "${single[$on]}" "${single[$off]}"),"\
" -P 4 $(ratio "${multi[$on]}" "${multi[$off]}"), sockperf p50 $(ratio "${p50[$on]}" "${p50[$off]}")")
  done
done
if [ ${#offload_lines[@]} -gt 0 ]; then
  echo "checksum offload (hsi-ifd --offload on over off, same run):"
  printf '%s\n' "${offload_lines[@]}"
fi
