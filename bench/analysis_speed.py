"""Time the whole analysis on the Gadre et al. (2024) testbed.

    .venv/bin/python bench/analysis_speed.py [EXP_DATA] [OUT_DIR]

EXP_DATA defaults to ../shared/external/gadre2024/exp_data, OUT_DIR to a temp folder.
Prints the seconds for import + analysis (104 models x 46 tasks x 8 validation sets,
1000 bootstrap resamples, all tables, figures and the report). Target: <= 60 s on 2 cores.
"""

from __future__ import annotations

import sys
import tempfile
import time
import warnings
from pathlib import Path


def main(argv: list[str]) -> float:
    t0 = time.perf_counter()
    from analysis.config import AnalysisConfig
    from analysis.errors import AnalysisWarning
    from analysis.gadre import load_testbed
    from analysis.pipeline import analyze

    src = Path(argv[1]) if len(argv) > 1 else Path("../shared/external/gadre2024/exp_data")
    out = Path(argv[2]) if len(argv) > 2 else Path(tempfile.mkdtemp(prefix="analysis_bench_"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AnalysisWarning)
        table = load_testbed(src)
        t1 = time.perf_counter()
        summary = analyze(table, out, AnalysisConfig())
    t2 = time.perf_counter()
    print(f"import {t1 - t0:.1f} s, analyze {t2 - t1:.1f} s, total {t2 - t0:.1f} s -> {out}")
    for v, (est, lo, hi) in summary.frac_predictable.items():
        print(f"  predictable on {v}: {est:.2f} [{lo:.2f}, {hi:.2f}]")
    return t2 - t0


if __name__ == "__main__":
    main(sys.argv)
