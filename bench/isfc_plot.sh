#!/bin/sh
# Draws docs/img/isfc-collisions.png and docs/img/isfc-throughput.png from
# the markdown table hsi-isfc-bench printed (file $1):
#   build/bin/hsi-isfc-bench > isfc.md && bench/isfc_plot.sh isfc.md docs/img
set -eu
in=$1
out=${2:-.}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# "load devices" label, convention value, naive value; for the two-way loads.
awk -F'|' -v col=8 '/relocation-like|symmetric/ {
    gsub(/ /, "", $2); gsub(/ /, "", $3); gsub(/ /, "", $4);
    key = ($2 == "relocation-like" ? "reloc" : "sym") "-" $3;
    if ($4 == "convention") c[key] = $col; else n[key] = $col; order[++k] = key }
  END { for (i = 1; i <= k; i += 2) print order[i], c[order[i]], n[order[i]] }' "$in" > "$tmp/coll"
awk -F'|' -v col=7 '/\| [a-z]/ && !/load/ {
    gsub(/ /, "", $2); gsub(/ /, "", $3); gsub(/ /, "", $4);
    key = ($2 == "bulkoneway" ? "bulk" : $2 == "relocation-like" ? "reloc" : "sym") "-" $3;
    if ($4 == "convention") c[key] = $col; else n[key] = $col; order[++k] = key }
  END { for (i = 1; i <= k; i += 2) print order[i], c[order[i]], n[order[i]] }' "$in" > "$tmp/tput"
gnuplot <<GP
set terminal pngcairo size 900,420 font ",10"
load "$(dirname "$0")/histogram.gp"
set xtics rotate by -30
call "$(dirname "$0")/bars.gp" "$out/isfc-collisions.png" "ISFC link write collisions (both ends), convention vs naive (hsi-isfc-bench, one run)" "collisions" "$tmp/coll" "convention" "naive"
call "$(dirname "$0")/bars.gp" "$out/isfc-throughput.png" "ISFC link throughput LPAR1->LPAR2, convention vs naive (hsi-isfc-bench, one run)" "GiB/s" "$tmp/tput" "convention" "naive"
GP
echo "wrote $out/isfc-collisions.png $out/isfc-throughput.png"
