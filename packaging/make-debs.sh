#!/usr/bin/env bash
# Builds the Debian packages (libhsi0, libhsi-dev, hsid, hsi-tools) with
# CPack from the "package" preset (prefix /usr) into build-package/packages/.
# Usage: packaging/make-debs.sh [--help]
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-}" in
  -h|--help) sed -n '2,4p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  "") ;;
  *) echo "make-debs.sh: unknown option '$1' (try --help)" >&2; exit 2 ;;
esac
packaging/setup.sh
cmake --preset package >/dev/null
cmake --build --preset package -j "$(nproc)"
rm -rf build-package/packages
(cd build-package && cpack -G DEB)
ls -1 build-package/packages/*.deb
