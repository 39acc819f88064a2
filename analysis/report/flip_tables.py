"""The report's flip tables: what breaks a law per kind of change, with the null rate beside
it (first screen), and the flips section's counts by level (analysis.flips.evidence)."""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd

from analysis.results import AnalysisResults

Md = Callable[..., str]


def _pct(v: float) -> str:
    return "n/a" if pd.isna(v) else f"{v:.0%}"


def rates_block(res: AnalysisResults, md: Md) -> str:
    """'What breaks a law': flip_rates.csv as a table, the tests run, the null and the x-axes
    left out, in a few lines."""
    rates, alpha = res.table("flip_rates"), res.cfg.flips.alpha
    s = ["\n**What breaks a law, per kind of change** "]
    s.append(
        f"(share of tasks whose verdict flips or whose corpora reverse at q < {alpha:g}; "
        f"{res.flip_tests} tests, Benjamini-Hochberg over all of them; trends need "
        f"{res.cfg.flips.min_sizes} distinct sizes):\n"
    )
    if rates.empty:
        s.append("\nNo comparison could be made (too few settings or sizes).\n")
    else:
        r = rates[~rates["trajectory"].astype(bool)]
        rows = [
            {
                "change": x.setting.replace("_", " "),
                "tests": int(x.n_tests),
                "tasks flipped": f"{int(x.n_flipped)} of {int(x.n_tasks)}",
                "share": f"{_pct(x.share)} [{_pct(x.ci_low)}, {_pct(x.ci_high)}]",
            }
            for x in r.itertuples()
        ]
        if rows:
            s.append(md(pd.DataFrame(rows)))
        x = rates.iloc[0]
        s.append(
            f"Null (same detector, a change that should not matter): random halves of the "
            f"same runs flip {_pct(x.null_split_rate)} of tasks (mean of "
            f"{res.cfg.flips.null_splits} splits, at most {_pct(x.null_split_max)})"
            + (
                f"; one seed against the other: {_pct(x.null_seed_rate)}"
                if pd.notna(x.null_seed_rate)
                else ""
            )
            + ".\n"
        )
        t = rates[rates["trajectory"].astype(bool)]
        for x in t.itertuples():
            s.append(
                f"Apart, not scaling trends: {int(x.n_flipped)} of {int(x.n_tasks)} tasks differ "
                f"at q < {alpha:g} between one run's checkpoints and its "
                f"{x.setting.replace('_', ' ')} variant's (a training trajectory).\n"
            )
    for note in res.flip_notes:
        s.append(f"\n{note}\n")
    return "".join(s)


def level_counts(flips: pd.DataFrame, alpha: float) -> pd.DataFrame:
    """Flips by setting and level: all, and at q < alpha."""
    if flips.empty:
        return pd.DataFrame(columns=["setting", "level", "flips", f"q<{alpha:g}"])
    f = flips.assign(sig=flips["q_value"].astype(float) < alpha)
    c = f.groupby(["setting", "level"]).agg(flips=("task", "size"), sig=("sig", "sum"))
    return c.rename(columns={"sig": f"q<{alpha:g}"}).reset_index()
