#!/usr/bin/env bash
# Installs what is missing, builds hsi (release preset, into build/), and runs
# the main job: hsid starts with its built-in default config, two LPAR
# processes link through it and exchange 10 million frames (none may be
# lost), and the round trip is printed beside loopback TCP measured in the
# same run; then hsi-demo puts the bare ring beside the cache-line floor;
# then hsi0, the IP interface, in two network namespaces: iperf3 and
# sockperf over it beside a veth pair (as root; skipped, with the reason,
# otherwise); last, one unmodified program pair (redis-benchmark against
# redis-server) over loopback TCP and under hsi-run, side by side.
# Usage: packaging/run.sh [--help] [-- LPAR-DEMO-ARGS...]
set -euo pipefail
cd "$(dirname "$0")/.."

case "${1:-}" in
  -h|--help) sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  --) shift ;;
  "") ;;
  *) echo "run.sh: unknown option '$1' (try --help; demo options go after --)" >&2; exit 2 ;;
esac

packaging/setup.sh
cmake --preset release >/dev/null
cmake --build --preset release -j "$(nproc)"
echo
echo "== hsid + two LPARs (packaging/run-demo.sh)"
packaging/run-demo.sh -- "$@"
echo
echo "== the ring against the hardware floor (build/bin/hsi-demo)"
build/bin/hsi-demo
echo
echo "== hsi0: an IP interface in two network namespaces, beside veth (bench/ifd/hsi0-vs-veth.sh)"
if [ "$(id -u)" -ne 0 ]; then
  echo "skipped: needs root (network namespaces and /dev/net/tun)"
elif [ ! -c /dev/net/tun ]; then
  echo "skipped: /dev/net/tun is missing (no TUN/TAP in this kernel or container)"
else
  bench/ifd/hsi0-vs-veth.sh --paths 56k --seconds 3
fi
echo
echo "== unmodified programs: redis over TCP and under hsi-run (packaging/run-hsi-run-demo.sh)"
exec packaging/run-hsi-run-demo.sh build/bin
