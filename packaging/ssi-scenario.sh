#!/usr/bin/env bash
# The z/VM relocation paper's evaluation (../shared/seeds/002_*.txt, its
# sections 5.3-5.4), reproduced with hsi and real routing software (issue 18).
#
#   packaging/ssi-scenario.sh [--bin DIR] [--relocations N] [--quiet]
#
# Builds, in network namespaces: a private etcd; two hsid members VM9 (CHPID
# F0, HiperSockets 172.0.9.0/24) and VM2 (CHPID F1, 172.1.2.0/24); the two
# data-centre networks trk1 10.20.8.0/24 and trk2 10.20.9.0/24 (bridges in a
# namespace of their own); the paper's five guests (Table 1), each with its
# VIPA 10.20.7.N/32 on dummy0, trk1 and trk2, and for LITDCON1, LITSWAS1 and
# LITDAT01 hsi0 (an hsi-ifd on VM9's F0) and hsi1 (on VM2's F1); an area
# border router 10.20.0.1 on trk1/trk2 (.1) with a backbone link to an
# "ext" namespace. FRR (zebra + ospfd) runs in every guest and the ABR:
# stub area 4.4.4.4 (ABR: no-summary, default-cost 10), costs of the paper
# (VIPA 1, hsi 1, trk 10: same-CPC traffic prefers HiperSockets), hello
# 250 ms, dead 1 s, SPF throttle 0/50/500 ms, no LSA throttle.
#
# Then, section by section, it waits (up to 90 s) until every guest's
# `show ip ospf route` matches what the paper's rules give, and prints the
# paper's table beside hsi's with a verdict:
#   5.3   baseline, all five guests on VM9
#   5.4.2 LITDCON1 relocated to VM2 with the automation (hsi-relocate)
#   5.5   streams to LITDCON1's VIPA from every other guest and from the ABR
#         side, and request/response loops from LITSWAS1 (VM9), LITDAT01
#         (VM2) and the ABR side, during N relocations VM9<->VM2:
#         resets, bytes verified, blackout (longest gap in delivery)
#   5.4.1 LITDCON1 relocated with --no-automation: hsi0 stays up, announced,
#         and reaches no one; then hsi-relocate --recover.
# Exit status: 0 if every section matched and every stream was intact;
# 1 otherwise; 77 (with "SKIP: why") if this machine cannot run it (needs
# root, /dev/net/tun, iproute2, etcd, FRR). Leaves nothing running.
set -euo pipefail

BIN=build/bin
RELOCATIONS=10
QUIET=0
while [ $# -gt 0 ]; do
  case "$1" in
    --bin) BIN="$2"; shift 2 ;;
    --relocations) RELOCATIONS="$2"; shift 2 ;;
    --quiet) QUIET=1; shift ;;
    -h|--help) sed -n '2,32p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "ssi-scenario.sh: unknown option '$1' (try --help)" >&2; exit 2 ;;
  esac
done
case "$RELOCATIONS" in ''|*[!0-9]*) echo "ssi-scenario.sh: --relocations needs a number" >&2; exit 2 ;; esac
BIN=$(cd "$BIN" && pwd)

skip() { echo "SKIP: $*"; exit 77; }
[ "$(id -u)" -eq 0 ] || skip "needs root (CAP_NET_ADMIN for namespaces, veth, bridges)"
[ -c /dev/net/tun ] || skip "no /dev/net/tun"
for p in ip etcd vtysh; do command -v $p >/dev/null || skip "'$p' is not installed (packaging/setup.sh)"; done
for p in /usr/lib/frr/zebra /usr/lib/frr/ospfd; do [ -x $p ] || skip "$p is missing (frr)"; done
for p in hsid hsi-ifd hsi-relocate hsictl hsi-ssi-stream; do [ -x "$BIN/$p" ] || skip "$BIN/$p is not built"; done

TAG="s$$"
WORK=$(mktemp -d /tmp/hsi-ssi-XXXXXX)
chmod 755 "$WORK"
PIDS=()
NSS=()
cleanup() {
  local i
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do kill "${PIDS[i]}" 2>/dev/null || true; done
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do wait "${PIDS[i]}" 2>/dev/null || true; done
  for ns in "${NSS[@]}"; do ip netns del "$ns" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say() { [ "$QUIET" -eq 1 ] || echo "$@"; }
bg() { local name=$1; shift; "$@" >"$WORK/$name.log" 2>&1 & PIDS+=($!); }
# Waits until "$@" succeeds, for up to $1 seconds (a condition, not a sleep).
until_ok() { local t=$1; shift; local end=$((SECONDS + t)); until "$@"; do [ $SECONDS -lt $end ] || return 1; sleep 0.1; done; }
# A port below the kernel's ephemeral range (32768+) that no socket uses.
free_port() { local p; while :; do p=$((20000 + RANDOM % 12000)); [ "$p" != "${1:-}" ] || continue; ss -Htan "sport = :$p" | grep -q . || { echo $p; return; }; done; }

# ---------------------------------------------------------------- etcd, members
EP=$(free_port); PP=$(free_port $EP)
bg etcd etcd --name e --data-dir "$WORK/etcd" --listen-client-urls http://127.0.0.1:$EP \
  --advertise-client-urls http://127.0.0.1:$EP --listen-peer-urls http://127.0.0.1:$PP \
  --initial-advertise-peer-urls http://127.0.0.1:$PP --initial-cluster e=http://127.0.0.1:$PP --log-level warn
export HSI_ETCD=http://127.0.0.1:$EP HSI_CLUSTER=$TAG
until_ok 20 "$BIN/hsictl" cluster >/dev/null 2>&1 || { cat "$WORK/etcd.log"; echo "etcd did not start"; exit 1; }
# Members hold their key on a 10 s lease (hsid's default is 2 s): no step
# here kills a member, and on a loaded host (a build beside the run) a 2 s
# lease once expired between two keep-alives, so that a relocation found
# its target "left the cluster" and the run failed.
member() { # NAME CHPID SUBNET
  cat >"$WORK/$1.toml" <<EOF
[[chpid]]
id = "$2"
subnet = "$3"
[[lpar]]
name = "*"
uids = ["self"]
[cluster]
name = "$TAG"
member = "$1"
etcd = "$HSI_ETCD"
lease_ttl_s = 10
EOF
  bg "hsid-$1" "$BIN/hsid" --socket "$WORK/$1.sock" --config "$WORK/$1.toml"
}
member VM9 F0 172.0.9.0/24
member VM2 F1 172.1.2.0/24
until_ok 20 sh -c "'$BIN/hsictl' cluster --json | grep -q '\"member\": \"VM2\"' && '$BIN/hsictl' cluster --json | grep -q '\"member\": \"VM9\"'" \
  || { cat "$WORK"/hsid-*.log; echo "members did not join"; exit 1; }

# ---------------------------------------------------------------- networks
DC="$TAG-dc"; ip netns add "$DC"; NSS+=("$DC")
for b in trk1br trk2br; do ip -n "$DC" link add $b type bridge; ip -n "$DC" link set $b up; done
VIPADEV=dummy0
attach_trunks() { # NS HOSTID
  local ns=$1 h=$2 t
  for t in 1 2; do
    ip -n "$DC" link add "t${t}h$h" type veth peer name "trk$t" netns "$ns"
    ip -n "$DC" link set "t${t}h$h" master "trk${t}br" up
    ip -n "$ns" addr add "10.20.$((7 + t)).$h/24" dev "trk$t"
    ip -n "$ns" link set "trk$t" up
  done
}
router_ns() { # NS
  ip netns add "$1"; NSS+=("$1")
  ip -n "$1" link set lo up
  ip netns exec "$1" sysctl -qw net.ipv4.ip_forward=1 net.ipv4.conf.all.arp_announce=1 \
    net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0
}

NAMES=(ECMSS00 LITDCON1 LITSWAS1 LITDAT01 LITSHA22)
declare -A HOST=([ECMSS00]=69 [LITDCON1]=100 [LITSWAS1]=101 [LITDAT01]=104 [LITSHA22]=199)
declare -A HASHSI=([ECMSS00]=0 [LITDCON1]=1 [LITSWAS1]=1 [LITDAT01]=1 [LITSHA22]=0)
declare -A RES UP0 UP1   # the model: residency, hsi0/hsi1 administratively up
nsof() { echo "$TAG-${1,,}"; }

frr_start() { # NS DIR
  local ns=$1 dir=$2
  chown -R frr:frr "$dir"
  for d in zebra ospfd; do
    bg "$d-$ns" ip netns exec "$ns" /usr/lib/frr/$d -u frr -g frr -P 0 -f "$dir/$d.conf" -i "$dir/$d.pid" \
      -z "$dir/zserv.api" --vty_socket "$dir" --log stdout --log-level warnings
    [ $d = ospfd ] || until_ok 20 test -S "$dir/zserv.api" || { cat "$WORK/zebra-$ns.log"; exit 1; }
  done
}
# Timers tuned for fast convergence: hellos every 250 ms and a 1 s dead
# interval (also the wait timer of a new interface's DR election), and no
# 5 s LSA throttle (MinLSInterval) or 1 s min-arrival, which would hold back
# the LSA that withdraws a HiperSockets interface on back-to-back relocations.
ospf_if() { # IF COST PRIORITY
  printf 'interface %s\n ip ospf cost %s\n ip ospf priority %s\n ip ospf dead-interval minimal hello-multiplier 4\n ip ospf retransmit-interval 1\n!\n' "$1" "$2" "$3"
}
OSPF_TIMERS=' timers throttle spf 0 50 500\n timers throttle lsa all 0\n timers lsa min-arrival 0\n'

for g in "${NAMES[@]}"; do
  ns=$(nsof $g); h=${HOST[$g]}; dir="$WORK/$g"; mkdir -p "$dir"
  router_ns "$ns"
  if ! ip -n "$ns" link add dummy0 type ifb 2>/dev/null; then VIPADEV=lo; fi
  [ "$VIPADEV" = lo ] || ip -n "$ns" link set dummy0 up
  ip -n "$ns" addr add "10.20.7.$h/32" dev "$VIPADEV"
  attach_trunks "$ns" "$h"
  if [ "${HASHSI[$g]}" = 1 ]; then
    bg "ifd-$g-0" "$BIN/hsi-ifd" --lpar "$g" --chpid F0 --netns "$ns" --ifname hsi0 --address "172.0.9.$h/24" --socket "$WORK/VM9.sock"
    bg "ifd-$g-1" "$BIN/hsi-ifd" --lpar "$g" --chpid F1 --netns "$ns" --ifname hsi1 --address "172.1.2.$h/24" --socket "$WORK/VM2.sock"
    until_ok 20 sh -c "ip -n $ns link show hsi0 && ip -n $ns link show hsi1" >/dev/null 2>&1 || { cat "$WORK/ifd-$g"-*.log; exit 1; }
    "$BIN/hsi-relocate" -q --define "$g" --netns "$ns" --group LIT --vipa "10.20.7.$h" \
      --hsi "VM9:F0:hsi0:172.0.9.$h/24,VM2:F1:hsi1:172.1.2.$h/24" >/dev/null
    "$BIN/hsi-relocate" -q --logon "$g" --to VM9
    RES[$g]=VM9; UP0[$g]=1; UP1[$g]=0
  else
    "$BIN/hsi-relocate" -q --define "$g" --netns "$ns" --group "${g:0:3}" --vipa "10.20.7.$h" >/dev/null
    "$BIN/hsi-relocate" -q --logon "$g" --to VM9
    RES[$g]=VM9; UP0[$g]=0; UP1[$g]=0
  fi
  echo "hostname ${g,,}" >"$dir/zebra.conf"
  {
    echo "hostname ${g,,}"
    printf 'interface %s\n ip ospf cost 1\n ip ospf priority 0\n ip ospf passive\n!\n' "$VIPADEV"
    [ "${HASHSI[$g]}" = 1 ] && { ospf_if hsi0 1 10; ospf_if hsi1 1 10; }
    ospf_if trk1 10 0; ospf_if trk2 10 0
    printf "router ospf\n ospf router-id 10.20.7.%s\n$OSPF_TIMERS" "$h"
    printf ' network 10.20.7.%s/32 area 4.4.4.4\n network 10.20.8.0/24 area 4.4.4.4\n network 10.20.9.0/24 area 4.4.4.4\n' "$h"
    [ "${HASHSI[$g]}" = 1 ] && printf ' network 172.0.9.0/24 area 4.4.4.4\n network 172.1.2.0/24 area 4.4.4.4\n'
    printf ' area 4.4.4.4 stub no-summary\n!\n'
  } >"$dir/ospfd.conf"
  frr_start "$ns" "$dir"
done
[ "$VIPADEV" = dummy0 ] || say "note: no ifb driver for a dummy0 stand-in: the VIPAs are on lo"

ABR="$TAG-abr"; EXT="$TAG-ext"; router_ns "$ABR"; router_ns "$EXT"
attach_trunks "$ABR" 1
ip -n "$ABR" link add bb0 type veth peer name bb0 netns "$EXT"
ip -n "$ABR" addr add 10.20.0.1/30 dev bb0; ip -n "$ABR" link set bb0 up
ip -n "$EXT" addr add 10.20.0.2/30 dev bb0; ip -n "$EXT" link set bb0 up
ip -n "$EXT" route add default via 10.20.0.1
mkdir -p "$WORK/ABR"; echo "hostname abr" >"$WORK/ABR/zebra.conf"
{
  echo "hostname abr"; ospf_if trk1 10 100; ospf_if trk2 10 100; ospf_if bb0 10 1
  printf "router ospf\n ospf router-id 10.20.0.1\n$OSPF_TIMERS network 10.20.0.0/30 area 0\n"
  printf ' network 10.20.8.0/24 area 4.4.4.4\n network 10.20.9.0/24 area 4.4.4.4\n'
  printf ' area 4.4.4.4 stub no-summary\n area 4.4.4.4 default-cost 10\n!\n'
} >"$WORK/ABR/ospfd.conf"
frr_start "$ABR" "$WORK/ABR"

# ---------------------------------------------------------------- routing tables
vty() { vtysh --vty_socket "$WORK/$1" -c "$2" 2>/dev/null; }
# `show ip ospf route` of guest $1 as "PREFIX COST PATH,PATH" lines (PATH:
# NEXTHOP%IF or direct%IF, sorted), the network table only.
actual() {
  vty "$1" "show ip ospf route" | awk '
    /OSPF router routing table/ { exit }
    /^N/ { if (p != "") print p, c, x; p = ($2 == "IA") ? $3 : $2; c = $0; sub(/^[^[]*\[/, "", c); sub(/\].*/, "", c); x = ""; next }
    /via/ { a = $2; sub(/,$/, "", a); x = x (x == "" ? "" : ",") a "%" $3; next }
    /directly attached to/ { x = x (x == "" ? "" : ",") "direct%" $NF }
    END { if (p != "") print p, c, x }' |
    while read -r p c x; do echo "$p $c $(tr , '\n' <<<"$x" | sort | paste -sd, -)"; done | sort
}
# What the paper's rules give for guest $1 under the model (RES, UP0, UP1).
SUBNET=(172.0.9.0/24 172.1.2.0/24); SUBNET_MEMBER=(VM9 VM2); SUBNET_PFX=(172.0.9 172.1.2)
announced() { local g=$1 s=$2; [ "${HASHSI[$g]}" = 1 ] && { [ $s = 0 ] && [ "${UP0[$g]}" = 1 ] || { [ $s = 1 ] && [ "${UP1[$g]}" = 1 ]; }; }; }
reachable() { announced "$1" "$2" && [ "${RES[$1]}" = "${SUBNET_MEMBER[$2]}" ]; }
trkpaths() { local out=() h; for h in "$@"; do out+=("10.20.8.$h%trk1" "10.20.9.$h%trk2"); done; printf '%s\n' "${out[@]}" | sort | paste -sd, -; }
expected() {
  local g=$1 h s via
  {
    echo "0.0.0.0/0 20 10.20.8.1%trk1,10.20.9.1%trk2"
    echo "10.20.8.0/24 10 direct%trk1"; echo "10.20.9.0/24 10 direct%trk2"
    for h in "${NAMES[@]}"; do
      if [ $h = $g ]; then echo "10.20.7.${HOST[$h]}/32 1 direct%$VIPADEV"; continue; fi
      via=""
      for s in 0 1; do reachable $g $s && reachable $h $s && via="${SUBNET_PFX[s]}.${HOST[$h]}%hsi$s"; done
      if [ -n "$via" ]; then echo "10.20.7.${HOST[$h]}/32 2 $via"; else echo "10.20.7.${HOST[$h]}/32 11 $(trkpaths ${HOST[$h]})"; fi
    done
    for s in 0 1; do
      # An interface that is up but on the wrong member: the paper (5.4.1)
      # found no route at all for its subnet in the guest's own table.
      if reachable $g $s; then echo "${SUBNET[s]} 1 direct%hsi$s"; continue; fi
      announced $g $s && continue
      local on=()
      for h in "${NAMES[@]}"; do announced $h $s && on+=(${HOST[$h]}); done
      [ ${#on[@]} -eq 0 ] || echo "${SUBNET[s]} 11 $(trkpaths "${on[@]}")"
    done
  } | sort
}
all_match() { local g; for g in "${NAMES[@]}"; do [ "$(actual $g)" = "$(expected $g)" ] || return 1; done; }
MATCHED=0; SECTIONS=0
# SECTION TITLE GUEST...: waits for convergence, prints the named guests'
# tables (paper rule vs hsi) and the verdict for all five.
section() {
  local id=$1 title=$2; shift 2
  SECTIONS=$((SECTIONS + 1))
  local t0=$SECONDS ok=0
  until_ok 90 all_match && ok=1
  echo; echo "=== section $id: $title (waited $((SECONDS - t0)) s)"
  local g
  for g in "$@"; do
    echo "--- ${g,,}> show ip ospf route   (paper's rule | hsi)"
    join -a1 -a2 -e '-|(none)' -o 0,1.2,2.2 <(expected $g | sed 's/ /|/2' | sort -k1,1) <(actual $g | sed 's/ /|/2' | sort -k1,1) |
      while read -r p e a; do
        local ec=${e%%|*} ep=${e#*|} ac=${a%%|*} ap=${a#*|}
        [ "$e" = "$a" ] && m=ok || m=DIFF
        printf '  %-15s paper [%s] %-44s hsi [%s] %-44s %s\n' "$p" "$ec" "$ep" "$ac" "$ap" "$m"
      done
  done
  for g in "${NAMES[@]}"; do
    if [ "$(actual $g)" != "$(expected $g)" ]; then
      echo "  ${g,,}: DIFF"; diff <(expected $g) <(actual $g) | sed 's/^/    /' || true
    fi
  done
  if [ $ok = 1 ]; then MATCHED=$((MATCHED + 1)); echo "section $id: MATCH (all five guests)"; else echo "section $id: DIFF"; fi
}

relocate() { # GUEST MEMBER [--no-automation]: hsi-relocate, and the model follows
  local g=$1 m=$2 auto=${3:-}
  "$BIN/hsi-relocate" -q "$g" --to "$m" $auto >/dev/null
  RES[$g]=$m
  if [ -z "$auto" ]; then
    if [ $m = VM9 ]; then UP0[$g]=1; UP1[$g]=0; else UP0[$g]=0; UP1[$g]=1; fi
  fi
}
ping_ok() { ip netns exec "$(nsof $1)" ping -c 1 -W 1 "$2" >/dev/null 2>&1; }

echo "ssi-scenario: etcd $HSI_ETCD, cluster $TAG, members VM9 (F0 172.0.9.0/24) and VM2 (F1 172.1.2.0/24)"
"$BIN/hsictl" cluster

# 5.3: baseline, everyone on VM9.
section 5.3.1-5.3.2 "baseline on VM9: a HiperSockets guest (the paper shows LITDCON1)" LITDCON1
section 5.3.3 "baseline on VM9: a guest without HiperSockets (the paper shows LITSHA22)" LITSHA22

# 5.4.2: relocation with the automation.
T0=$(date +%s%N)
relocate LITDCON1 VM2
section 5.4.2 "LITDCON1 relocated to VM2 with the automation: hsi1 up, hsi0 down (the paper shows LITSWAS1)" LITSWAS1 LITDCON1
echo "reconverged $(( ($(date +%s%N) - T0) / 1000000 )) ms after hsi-relocate started"
if until_ok 10 ping_ok LITSWAS1 172.1.2.100; then echo "litswas1: ping 172.1.2.100 (LITDCON1's hsi1, via trk): ok"; else echo "litswas1: ping 172.1.2.100: FAILED"; MATCHED=$((MATCHED - 1)); fi
relocate LITDCON1 VM9
section 5.3-again "LITDCON1 back on VM9" LITDCON1

# 5.5 (issue 18, item 5): streams to LITDCON1's VIPA during relocations.
FAILS=0
PORT=5201
relocate LITDAT01 VM2   # a HiperSockets guest on each member
until_ok 90 all_match || true
bg stream-server ip netns exec "$(nsof LITDCON1)" "$BIN/hsi-ssi-stream" --serve $PORT
SERVER_PID=${PIDS[-1]}
until_ok 10 grep -q listening "$WORK/stream-server.log"
SENDERS=()
for g in ECMSS00 LITSWAS1 LITDAT01 LITSHA22; do
  bg "send-$g" ip netns exec "$(nsof $g)" "$BIN/hsi-ssi-stream" --send 10.20.7.100:$PORT; SENDERS+=(${PIDS[-1]})
done
bg send-ext ip netns exec "$EXT" "$BIN/hsi-ssi-stream" --send 10.20.7.100:$PORT; SENDERS+=(${PIDS[-1]})
for g in LITSWAS1 LITDAT01; do
  bg "send-rr-$g" ip netns exec "$(nsof $g)" "$BIN/hsi-ssi-stream" --send 10.20.7.100:$PORT --rr; SENDERS+=(${PIDS[-1]})
done
bg send-rr-ext ip netns exec "$EXT" "$BIN/hsi-ssi-stream" --send 10.20.7.100:$PORT --rr; SENDERS+=(${PIDS[-1]})
path_window() { # prints the rx bytes each of LITDCON1's interfaces got in 1 s
  local ns a b; ns=$(nsof LITDCON1)
  a=$(ip netns exec "$ns" sh -c 'for i in hsi0 hsi1 trk1 trk2; do cat /sys/class/net/$i/statistics/rx_bytes; done' | paste -sd' ')
  sleep 1   # a measurement window, not an ordering
  b=$(ip netns exec "$ns" sh -c 'for i in hsi0 hsi1 trk1 trk2; do cat /sys/class/net/$i/statistics/rx_bytes; done' | paste -sd' ')
  paste -d' ' <(tr ' ' '\n' <<<"$a") <(tr ' ' '\n' <<<"$b") | awk 'BEGIN{split("hsi0 hsi1 trk1 trk2",n," ")} {printf "%s %d KB  ", n[NR], ($2-$1)/1024}'; echo
}
echo; echo "=== section 5.5: streams to LITDCON1's VIPA 10.20.7.100 during $RELOCATIONS relocations"
echo "path on VM9 (LITSWAS1 same CPC, LITDAT01 on VM2): $(path_window)"
RELOC_MS=(); CONV_MS=()
for ((i = 1; i <= RELOCATIONS; i++)); do
  to=VM2; [ $((i % 2)) = 0 ] && to=VM9
  t0=$(date +%s%N)
  relocate LITDCON1 $to
  t1=$(date +%s%N)
  until_ok 90 all_match || { echo "relocation $i: routes did not converge"; FAILS=$((FAILS + 1)); }
  t2=$(date +%s%N)
  RELOC_MS+=($(( (t1 - t0) / 1000000 ))); CONV_MS+=($(( (t2 - t0) / 1000000 )))
  [ $i != 1 ] || echo "path on VM2 (LITDAT01 same CPC): $(path_window)"
done
for p in "${SENDERS[@]}"; do kill -TERM $p 2>/dev/null || true; done
for p in "${SENDERS[@]}"; do wait $p 2>/dev/null || true; done
kill -TERM $SERVER_PID; wait $SERVER_PID 2>/dev/null || true
echo "relocation command ms: ${RELOC_MS[*]}"
echo "reconvergence ms (command start to every table matching): ${CONV_MS[*]}"
echo "senders:"; cat "$WORK"/send-*.log | sed 's/^/  /'
echo "receiver (LITDCON1):"; grep '^{' "$WORK/stream-server.log" | sed 's/^/  /'
RESETS=$(cat "$WORK"/send-*.log | grep -c '"reset":true' || true)
BAD=$(grep '^{' "$WORK/stream-server.log" | grep -c -e '"verified":false' -e '"error":"[^"]' || true)
SHORT=$(grep '"mode":"stream"' "$WORK"/send-*.log | awk -F'[:,]' '{for(i=1;i<NF;i++){if($i=="\"sent\"")s=$(i+1); if($i=="\"acked\"")a=$(i+1)}; if(s!=a) n++} END{print n+0}')
ERRS=$(cat "$WORK"/send-*.log | grep -c '"error":"[^"]' || true)
GAPS=$(grep '^{' "$WORK/stream-server.log" | sed 's/.*"gaps_ms":\[\(.*\)\].*/\1/' | tr ',' '\n' | grep . | sort -n || true)
NGAPS=$(grep -c . <<<"$GAPS" || true)
P50=$(awk -v n="$NGAPS" 'NR==int((n+1)/2){print}' <<<"$GAPS"); MAX=$(tail -1 <<<"$GAPS")
echo "STREAMS: connections $(cat "$WORK"/send-*.log | wc -l), reset $RESETS, sender errors $ERRS, streams with sent != acked $SHORT, receiver checks failed $BAD"
PERCONN=$(grep '^{' "$WORK/stream-server.log" | sed 's/.*"max_gap_ms":\([0-9.]*\).*/\1/' | sort -n)
NCONN=$(grep -c . <<<"$PERCONN" || true)
CP50=$(awk -v n="$NCONN" 'NR==int((n+1)/2){print}' <<<"$PERCONN")
echo "BLACKOUT: $NGAPS delivery gaps > 20 ms over all connections; p50 ${P50:-0} ms, max ${MAX:-0} ms;" \
  "longest gap per connection: p50 ${CP50:-0} ms, max $(tail -1 <<<"$PERCONN") ms"
[ "$RESETS" = 0 ] && [ "$BAD" = 0 ] && [ "$SHORT" = 0 ] && [ "$ERRS" = 0 ] && [ $FAILS = 0 ] || FAILS=$((FAILS + 1))
relocate LITDAT01 VM9
[ "${RES[LITDCON1]}" = VM9 ] || relocate LITDCON1 VM9
until_ok 90 all_match || true

# 5.4.1: relocation without the automation.
relocate LITDCON1 VM2 --no-automation
section 5.4.1 "LITDCON1 relocated to VM2 WITHOUT the automation: hsi0 stays up on VM2 (the paper shows LITSWAS1)" LITSWAS1 LITDCON1
if ping_ok LITSWAS1 172.0.9.100; then echo "litswas1: ping 172.0.9.100 answered: the wrong interface was NOT isolated"; FAILS=$((FAILS + 1)); else echo "litswas1: ping 172.0.9.100: no answer (as the paper's ssh/traceroute: HiperSockets cannot span CPCs)"; fi
echo "litdcon1: ip link show hsi0: $(ip -n "$(nsof LITDCON1)" -o link show hsi0 | grep -o '<[^>]*>')"
echo "litdcon1> show ip ospf interface hsi0:"; vty LITDCON1 "show ip ospf interface hsi0" | grep -E "is up|State|Neighbor Count" | sed 's/^/  /'
"$BIN/hsi-relocate" -q --recover LITDCON1
UP0[LITDCON1]=0; UP1[LITDCON1]=1
section 5.4.1-recovered "after hsi-relocate --recover LITDCON1: hsi1 up, hsi0 down" LITSWAS1

echo; "$BIN/hsictl" cluster
echo
echo "SCENARIO: sections matched $MATCHED of $SECTIONS; stream and isolation failures $FAILS"
[ "$MATCHED" = "$SECTIONS" ] && [ "$FAILS" = 0 ]
