#!/bin/sh
# Draws the coupling-facility benchmark plots from what the three
# benchmarks printed (one run each, saved to files):
#   build/bin/hsi-cf-bench > lock.txt
#   build/bin/hsi-cf-list-bench > list.txt
#   build/bin/hsi-cf-cache-bench > cache.txt
#   bench/cf_plot.sh lock.txt list.txt cache.txt docs/img
# writes cf-lock.png, cf-list.png and cf-cache.png in the last argument
# (default .). Latencies are on a log scale: the methods differ by orders
# of magnitude. Needs gnuplot (packaging/setup.sh installs gnuplot-nox).
set -eu
if [ $# -lt 3 ] || [ "$1" = "-h" ] || [ "$1" = "--help" ]; then
  echo "usage: bench/cf_plot.sh LOCK.txt LIST.txt CACHE.txt [OUTDIR]" >&2
  echo "  (the saved output of hsi-cf-bench, hsi-cf-list-bench, hsi-cf-cache-bench)" >&2
  exit 2
fi
lock=$1
list=$2
cache=$3
out=${4:-.}
for f in "$lock" "$list" "$cache"; do
  [ -r "$f" ] || { echo "cf_plot.sh: cannot read $f" >&2; exit 2; }
done
command -v gnuplot >/dev/null || { echo "cf_plot.sh: gnuplot is not installed" >&2; exit 2; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Each table row: the method (a fixed-width column), then numbers. A short
# label (quoted for gnuplot), then the numbers in the order asked.
# hsi-cf-bench: "%-42s p50 p99 ratio ratio", in ns.
awk '{ name = substr($0, 1, 42); split(substr($0, 43), v, " ") }
  name ~ /^robust pthread mutex/      { l = "mutex (floor)" }
  name ~ /^flock/                     { l = "flock(2)" }
  name ~ /^hsi-cf lock structure \(sync/ { l = "hsi-cf" }
  name ~ /^hsi-cf lock structure, dup/ { l = "hsi-cf duplexed" }
  name ~ /^Redis SET NX/              { l = "Redis SET NX + DEL" }
  l != "" { printf "\"%s\" %s %s\n", l, v[1], v[2]; l = "" }' "$lock" > "$tmp/lock"
# hsi-cf-list-bench: "%-52s p50 us p99 us messages/s".
awk '{ name = substr($0, 1, 52); split(substr($0, 53), v, " ") }
  name ~ /^hsi-cf list \+ transition/ { l = "hsi-cf monitoring" }
  name ~ /^hsi-cf list \+ PopWait/    { l = "hsi-cf PopWait" }
  name ~ /^Redis RPUSH/               { l = "Redis BLPOP" }
  l != "" { printf "\"%s\" %s %s %s\n", l, v[1], v[3], v[5]; l = "" }' "$list" > "$tmp/list"
# hsi-cf-cache-bench: "%-52s p50 p99", in ns.
awk '{ name = substr($0, 1, 52); split(substr($0, 53), v, " ") }
  name ~ /^cache-line floor/          { l = "floor: store seen" }
  name ~ /^write completed/           { l = "write done -> seen invalid" }
  name ~ /^write started/             { l = "write started -> seen invalid" }
  name ~ /^write round trip/          { l = "write round trip" }
  l != "" { printf "\"%s\" %s %s\n", l, v[1], v[2]; l = "" }' "$cache" > "$tmp/cache"
for f in lock list cache; do
  [ -s "$tmp/$f" ] || { echo "cf_plot.sh: no table rows found in the $f output" >&2; exit 1; }
done

bars=$(dirname "$0")/bars.gp
gnuplot <<GP
set terminal pngcairo size 1000,460 font ",10"
load "$(dirname "$0")/histogram.gp"
set logscale y
set xtics rotate by -20
set bmargin 5
call "$bars" "$out/cf-lock.png" "Uncontended lock obtain + release, synchronous (hsi-cf-bench, one run)" "ns per pair (log)" "$tmp/lock" "p50" "p99"
call "$bars" "$out/cf-cache.png" "Cache cross-invalidation (hsi-cf-cache-bench, one run)" "ns (log)" "$tmp/cache" "p50" "p99"
set output "$out/cf-list.png"
set multiplot layout 1,2 title "List message passing, receiver asleep when the list is empty (hsi-cf-list-bench, one run)"
set title "one-way latency"
set ylabel "us (log)"
plot "$tmp/list" using 2:xtic(1) title "p50", "" using 3 title "p99"
unset logscale y
set yrange [0:*]
set title "throughput"
set ylabel "messages/s"
plot "$tmp/list" using 4:xtic(1) title "messages/s"
unset multiplot
GP
echo "wrote $out/cf-lock.png $out/cf-list.png $out/cf-cache.png"
