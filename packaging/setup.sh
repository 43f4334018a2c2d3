#!/usr/bin/env bash
# Installs every build, test and benchmark dependency of hsi from Debian 12
# packages. Idempotent and non-interactive; run as root (or with sudo).
#
#   packaging/setup.sh            install what is missing
#   packaging/setup.sh --check    only report what is missing (exit 1 if any)
set -euo pipefail

PACKAGES=(
  build-essential cmake ninja-build pkg-config   # toolchain
  liburing-dev                                   # daemon loop, poller, TCP baseline
  libabsl-dev                                    # Status, flags, strings, time
  libsystemd-dev                                 # sd_notify: the daemons tell systemd when they serve (Type=notify)
  libgtest-dev libgmock-dev                      # unit and multi-process tests
  libbenchmark-dev                               # micro-benchmarks
  libboost-dev                                   # Boost.Interprocess peer
  libtoml11-dev                                  # hsid config (TOML)
  nlohmann-json3-dev                             # --json output of the tools
  clang libclang-rt-14-dev                       # libFuzzer, sanitizer runtimes
  tshark                                         # tests read hsi-dump's pcap files
  iperf3 iputils-ping iproute2                   # hsi-ifd tests: ping, TCP transfer, ip netns
  frr                                            # hsi-ifd OSPF test: zebra + ospfd over hsi0
  sockperf                                       # hsi-ifd tests and bench/ifd/hsi0-vs-veth.sh: ping-pong latency
  gnuplot-nox                                    # hsi-bench draws its PNG plots
  iceoryx                                        # iox-roudi, the broker hsi-bench starts for iceoryx
  libiceoryx-posh-dev libiceoryx-hoofs-dev       # iceoryx C++ API: a transport in hsi-bench
  libiceoryx-binding-c-dev                       # iceoryx C binding (its CMake config wants it)
  etcd-server etcd-client                        # SSI cluster state (issue 18); tests start their own etcd
  libcurl4-openssl-dev                           # the etcd v3 client (JSON gateway over HTTP)
  redis-server redis-tools                       # hsi-run tests/bench: redis-server, redis-benchmark, redis-cli
  nginx-light wrk curl                           # hsi-run tests/bench: nginx serving files to curl and wrk
)

usage() {
  sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//'
}

check_only=0
case "${1:-}" in
  "") ;;
  --check) check_only=1 ;;
  -h|--help) usage; exit 0 ;;
  *) echo "setup.sh: unknown option '$1' (try --help)" >&2; exit 2 ;;
esac

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "setup.sh: all ${#PACKAGES[@]} packages present"
  exit 0
fi
if [ "$check_only" -eq 1 ]; then
  echo "setup.sh: missing: ${missing[*]}"
  exit 1
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "setup.sh: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
  SUDO="sudo"
fi
echo "setup.sh: installing: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# tshark (wireshark-common) asks whether non-root users may capture; answer
# "no" up front so that the install never stops for a question.
if command -v debconf-set-selections >/dev/null; then
  echo "wireshark-common wireshark-common/install-setuid boolean false" | $SUDO debconf-set-selections
fi
$SUDO apt-get update -qq
# redis-server, nginx and etcd-server would start their system services on install;
# hsi's tests start their own on free ports. policy-rc.d 101 tells
# invoke-rc.d not to start anything while we install (removed after), and
# the services are disabled so they do not come up at the next boot either.
policy=/usr/sbin/policy-rc.d
made_policy=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
  $SUDO chmod 755 "$policy"
  made_policy=1
fi
trap 'if [ "$made_policy" -eq 1 ]; then $SUDO rm -f "$policy"; fi' EXIT
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
# Debian's etcd-server enables and starts a system etcd on 2379. hsi's tests
# start their own on free ports; a cluster's etcd is the operator's to run.
# So the packaged service must not stay running (or start at boot).
if printf '%s\n' "${missing[@]}" | grep -qx etcd-server && command -v systemctl >/dev/null; then
  # Without a running systemd (a container), "disable" still removes the
  # boot symlink; "--now" then has nothing to stop.
  $SUDO systemctl disable --now etcd >/dev/null 2>&1 || $SUDO systemctl disable etcd >/dev/null 2>&1 || true
fi
if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
  $SUDO systemctl disable --now redis-server nginx >/dev/null 2>&1 || true
fi
echo "setup.sh: done"
