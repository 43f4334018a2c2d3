# bench/histogram.gp: the look of the benchmark bar charts (clustered
# histograms), loaded by bench/isfc_plot.sh and bench/cf_plot.sh.
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set key top left
set grid ytics
