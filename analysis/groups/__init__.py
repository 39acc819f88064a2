"""Stage 2, groups: one (x-axis, corpus) group of runs as arrays, and its bootstrap
resamples."""
