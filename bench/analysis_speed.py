"""Time the whole analysis on each shipped testbed (import + analysis, all outputs).

    .venv/bin/python bench/analysis_speed.py [TESTBEDS] [OUT_DIR]

TESTBEDS: comma-separated, default gadre2024,olmo_ladder,pythia,obsscaling (the shipped copies, with
each testbed's settings as `harness analyze source=...` uses them: every OLMo checkpoint
enters the points comparison, the two-step backtest and the seed comparison). OUT_DIR
defaults to a temp folder. Prints, per testbed, wall and CPU seconds and the 1-minute load
average before and after (the machine may be shared: CPU seconds are the less inflated
figure). Target: <= 60 s per testbed on 2 cores; obsscaling <= 30 s (issue 23).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path


def main(argv: list[str]) -> dict[str, float]:
    from analysis import testbeds
    from analysis.config import AnalysisConfig
    from analysis.errors import AnalysisWarning
    from analysis.pipeline import analyze
    from analysis.testbeds import settings_for

    default = "gadre2024,olmo_ladder,pythia,obsscaling"
    names = (argv[1] if len(argv) > 1 else default).split(",")
    out = Path(argv[2]) if len(argv) > 2 else Path(tempfile.mkdtemp(prefix="analysis_bench_"))
    times = {}
    for name in names:
        load0 = os.getloadavg()[0]
        w0, c0 = time.perf_counter(), time.process_time()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", AnalysisWarning)
            table = testbeds.get(name).load()
            w1 = time.perf_counter()
            summary = analyze(table, out / name, settings_for(name, AnalysisConfig()))
        wall, cpu = time.perf_counter() - w0, time.process_time() - c0
        times[name] = wall
        print(
            f"{name}: import {w1 - w0:.1f} s, total {wall:.1f} s wall, {cpu:.1f} s CPU "
            f"(load average {load0:.1f} -> {os.getloadavg()[0]:.1f}) -> {out / name}"
        )
        info = out / name / "tables" / "prediction_info.json"
        if info.exists():  # the predictions stage's own share (analysis.predict)
            p = json.loads(info.read_text())
            print(f"  predictions stage: {p['cpu_seconds']:.1f} s CPU, default {p['default']}")
        ref = settings_for(name, AnalysisConfig()).reference_val_set
        if ref in summary.frac_predictable:
            est, lo, hi = summary.frac_predictable[ref]
            print(f"  predictable on {ref}: {est:.2f} [{lo:.2f}, {hi:.2f}]")
    return times


if __name__ == "__main__":
    main(sys.argv)
