#!/usr/bin/env bash
# Builds the Debian packages (libhsi0, libhsi-dev, hsid, hsi-tools) with
# CPack from the "package" preset (prefix /usr) into build-package/packages/,
# or, with --build-dir, from a build that exists already and was configured
# with prefix /usr (packaging/test.sh passes its release build: the same
# libraries and programs, not compiled a second time) into DIR/packages/.
# Usage: packaging/make-debs.sh [--build-dir DIR] [--help]
set -euo pipefail
cd "$(dirname "$0")/.."
dir=""
while [ $# -gt 0 ]; do
  case "$1" in
    --build-dir) dir="${2:?make-debs.sh: --build-dir needs a directory}"; shift 2 ;;
    -h|--help) sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "make-debs.sh: unknown option '$1' (try --help)" >&2; exit 2 ;;
  esac
done
if [ -z "$dir" ]; then
  packaging/setup.sh
  cmake --preset package >/dev/null
  cmake --build --preset package -j "$(nproc)"
  dir=build-package
else
  # Packages must hold what /usr/sbin/hsid and friends were built for.
  prefix=$(sed -n 's/^CMAKE_INSTALL_PREFIX:PATH=//p' "$dir/CMakeCache.txt" 2>/dev/null || true)
  if [ "$prefix" != /usr ]; then
    echo "make-debs.sh: $dir is not a build configured with CMAKE_INSTALL_PREFIX=/usr" \
         "(it has '${prefix:-no CMakeCache.txt}'); build one with: cmake --preset package" >&2
    exit 2
  fi
  cmake --build "$dir" -j "$(nproc)" >/dev/null
fi
rm -rf "$dir/packages"
(cd "$dir" && cpack -G DEB >/dev/null)
ls -1 "$dir"/packages/*.deb
