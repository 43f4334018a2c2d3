#!/usr/bin/env bash
# Installs what is missing, builds hsi (release preset, into build/), and runs
# the main job: two LPAR processes exchange frames over an hsi link, and the
# round trip is printed beside loopback TCP and the bare cache-line floor,
# all measured in this run.
# Usage: packaging/run.sh [--help] [-- DEMO-ARGS...]
set -euo pipefail
cd "$(dirname "$0")/.."

case "${1:-}" in
  -h|--help) sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  --) shift ;;
  "") ;;
  *) echo "run.sh: unknown option '$1' (try --help; demo options go after --)" >&2; exit 2 ;;
esac

packaging/setup.sh
cmake --preset release >/dev/null
cmake --build --preset release -j "$(nproc)"
exec build/bin/hsi-demo "$@"
