# bench/bars.gp: one clustered bar chart of two series, for the benchmark
# plot scripts (bench/isfc_plot.sh, bench/cf_plot.sh), after histogram.gp:
#   call "bench/bars.gp" OUTPUT TITLE YLABEL DATA SERIES1 SERIES2
# DATA: a label (quoted) then the two series' values, a row per cluster.
set output ARG1
set title ARG2
set ylabel ARG3
plot ARG4 using 2:xtic(1) title ARG5, "" using 3 title ARG6
