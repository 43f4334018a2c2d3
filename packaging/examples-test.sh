#!/usr/bin/env bash
# Packaging end to end: builds the .deb files, installs them with dpkg,
# builds examples/ out of tree against the installed package with both
# find_package(hsi) and pkg-config, runs them against the installed hsid,
# then removes the packages and checks that they left nothing behind.
# Usage: packaging/examples-test.sh [--keep] [--build-dir DIR]
#   --keep: leave packages installed; --build-dir: package that build
#   (prefix /usr, see make-debs.sh) instead of building the "package" preset
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

keep=0
build=()
dir=build-package
while [ $# -gt 0 ]; do
  case "$1" in
    --keep) keep=1; shift ;;
    --build-dir) dir="${2:?examples-test.sh: --build-dir needs a directory}"; build=(--build-dir "$dir"); shift 2 ;;
    -h|--help) sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "examples-test.sh: unknown option '$1' (try --help)" >&2; exit 2 ;;
  esac
done

packaging/make-debs.sh "${build[@]}" >/dev/null
debs=("$dir"/packages/*.deb)
names=()
for d in "${debs[@]}"; do names+=("$(dpkg-deb -f "$d" Package)"); done
tmp=$(mktemp -d /tmp/hsi-examples.XXXXXX)
hsid_pid=""
purged=0
cleanup() {
  [ -n "$hsid_pid" ] && kill "$hsid_pid" 2>/dev/null && wait "$hsid_pid" 2>/dev/null || true
  rm -rf "$tmp"
  # A failed run must not leave half-installed packages behind.
  if [ "$keep" -eq 0 ] && [ "$purged" -eq 0 ]; then dpkg --purge "${names[@]}" >/dev/null 2>&1 || true; fi
}
trap cleanup EXIT

# Left over from an interrupted run: remove first, so dpkg starts clean.
left=$(dpkg-query -W -f='${Package} ${db:Status-Status}\n' "${names[@]}" 2>/dev/null | awk '$2 != "not-installed" {print $1}' || true)
if [ -n "$left" ]; then
  echo "== purging hsi packages left from an earlier run: $(echo $left)"
  dpkg --purge $left >/dev/null
fi

echo "== dpkg -i ${debs[*]##*/}"
dpkg -i "${debs[@]}" >/dev/null
for f in /usr/sbin/hsid /usr/include/hsi/nic.h /etc/hsi/hsid.toml; do
  [ -e "$f" ] || { echo "examples-test.sh: $f missing after install" >&2; exit 1; }
done

echo "== libhsi.so exports only the public API"
lib=$(readlink -f /usr/lib/x86_64-linux-gnu/libhsi.so.0)
# Type A lines are the version nodes of libhsi.map (HSI_0), not code.
bad=$(nm -D --defined-only -C "$lib" | awk '$2 != "A" { $1=""; $2=""; print }' | grep -v '^  hsi::' || true)
internal=$(nm -D --defined-only -C "$lib" | grep 'hsi::internal' || true)
if [ -n "$bad$internal" ]; then
  echo "examples-test.sh: libhsi.so exports more than the hsi API:" >&2
  printf '%s\n' "$bad" "$internal" | head -20 >&2
  exit 1
fi
echo "   $(nm -D --defined-only "$lib" | wc -l) symbols, all in namespace hsi, none in hsi::internal"

echo "== build examples with find_package(hsi)"
cmake -S examples -B "$tmp/cmake" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$tmp/cmake" >/dev/null
echo "== build examples with pkg-config"
mkdir -p "$tmp/pc"
for ex in echo_server echo_client broadcast; do
  c++ -std=c++20 -O2 "examples/$ex.cc" $(pkg-config --cflags --libs hsi) -o "$tmp/pc/$ex"
done
c++ -std=c++20 -O2 examples/uring_loop.cc $(pkg-config --cflags --libs hsi liburing) -o "$tmp/pc/uring_loop"

echo "== run against the installed hsid"
export HSI_SOCKET="$tmp/hsid.sock"
/usr/sbin/hsid --config /etc/hsi/hsid.toml --socket "$HSI_SOCKET" 2>"$tmp/hsid.log" &
hsid_pid=$!
for _ in $(seq 100); do [ -S "$HSI_SOCKET" ] && break; sleep 0.05; done
[ -S "$HSI_SOCKET" ] || { cat "$tmp/hsid.log" >&2; echo "hsid did not start" >&2; exit 1; }

run_echo() {  # $1: directory of binaries
  "$1/echo_server" 2000 >"$tmp/server.out" &
  local spid=$!
  for _ in $(seq 100); do [ -s "$tmp/server.out" ] && break; sleep 0.05; done
  "$1/echo_client" "$(head -n1 "$tmp/server.out")" 2000 64
  wait "$spid"
}
run_echo "$tmp/cmake"
"$tmp/cmake/broadcast" 3 500
"$tmp/cmake/uring_loop" 8 500
run_echo "$tmp/pc"
"$tmp/pc/broadcast" 2 100
"$tmp/pc/uring_loop" 4 100
kill "$hsid_pid"; wait "$hsid_pid" || true; hsid_pid=""

if [ "$keep" -eq 0 ]; then
  echo "== dpkg --purge"
  dpkg --purge "${names[@]}" >/dev/null
  purged=1
  for f in /usr/sbin/hsid /usr/include/hsi /etc/hsi /usr/lib/x86_64-linux-gnu/libhsi.so.0 \
           /usr/lib/x86_64-linux-gnu/pkgconfig/hsi.pc /usr/lib/x86_64-linux-gnu/cmake/hsi; do
    [ ! -e "$f" ] || { echo "examples-test.sh: $f left behind after purge" >&2; exit 1; }
  done
fi
echo "examples-test.sh: packages installed, examples built both ways and ran, packages removed cleanly"
