"""Stage 4, flips: one setting changed, the rest held fixed (x-axis, corpus, setup, metric,
each task's own loss, variant runs)."""
