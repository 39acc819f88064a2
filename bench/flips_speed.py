"""CPU seconds of the flips stage alone, per testbed (the whole analysis runs; only the
flip functions are timed), so that the stage can be compared before and after a change on
a shared machine, where wall times are inflated.

    .venv/bin/python bench/flips_speed.py [TESTBEDS]

TESTBEDS: comma-separated, default gadre2024,olmo_ladder,pythia. Timed: every flip
function `analysis.pipeline` calls (detect_flips, metric_flips, variant_flips,
task_loss_axis, and, where they exist, the q-values, the null and the per-change table).
Prints per testbed the flips stage's CPU seconds and the whole analysis's.
"""

from __future__ import annotations

import functools
import sys
import time
import warnings


def main(argv: list[str]) -> dict[str, float]:
    from analysis import pipeline, testbeds
    from analysis.config import AnalysisConfig
    from analysis.errors import AnalysisWarning

    names = (argv[1] if len(argv) > 1 else "gadre2024,olmo_ladder,pythia").split(",")
    spent = [0.0]

    def timed(f):
        @functools.wraps(f)
        def g(*a, **k):
            t0 = time.process_time()
            try:
                return f(*a, **k)
            finally:
                spent[0] += time.process_time() - t0

        return g

    fns = ("detect_flips", "metric_flips", "variant_flips", "task_loss_axis")
    fns += ("with_q", "null_rates", "flip_rates")
    for fn in fns:
        if hasattr(pipeline, fn):
            setattr(pipeline, fn, timed(getattr(pipeline, fn)))
    out = {}
    for name in names:
        spent[0] = 0.0
        table = testbeds.get(name).load()
        c0 = time.process_time()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", AnalysisWarning)
            pipeline.compute(table, testbeds.settings_for(name, AnalysisConfig()))
        total = time.process_time() - c0
        out[name] = spent[0]
        print(
            f"{name}: flips stage {spent[0]:.1f} s CPU of {total:.1f} s CPU (compute, no writing)"
        )
    return out


if __name__ == "__main__":
    main(sys.argv)
