"""Is a pooled trend a trend, or two clusters? A check made after classification.

A sweep over data mixes pools every mix into one group. When the mixes differ in both
validation loss and accuracy but accuracy is flat within each mix, the pooled fit draws a
curve through two clusters (the demo's toy_code on the code set: an R² 0.90 exp law across
the two mixes, flat inside each). The six categories' rules are unchanged; this module adds
a column to trends.csv for the pooled rows a harness sweep classified predictable:

* ``within mixes``        accuracy moves with loss inside at least one mix;
* ``between mixes only``  no mix shows a trend on its own: the pooled "predictable" is a
                          between-cluster difference, and the report says so;
* ``n/a (<reason>)``      no mix has the 3 models a slope needs.

Test, per mix: least-squares slope of accuracy on validation loss, with the binomial standard
error of the points (trends.csv `binomial_se`, known, not estimated) as the noise; a trend when
|slope| / se(slope) >= `T_MIN` (two-sided ~95% for known noise). Testbed corpora (Gadre et al.)
are different pretraining corpora rather than the data mixes of one sweep, so their rows are
left blank and their published comparison is unchanged.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.groups.build import POOLED

T_MIN = 2.0
MIN_MODELS = 3
COLUMN = "within_mix"


def slope_t(x: np.ndarray, y: np.ndarray, se: float) -> float:
    """|OLS slope| / its standard error when each point has noise `se`; NaN when undefined."""
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    sxx = float(np.sum((x - x.mean()) ** 2)) if x.size else 0.0
    if x.size < MIN_MODELS or sxx <= 0 or not np.isfinite(se) or se <= 0:
        return float("nan")
    slope = float(np.sum((x - x.mean()) * (y - y.mean())) / sxx)
    return abs(slope) / (se / np.sqrt(sxx))


def _verdict(ts: list[float]) -> str:
    finite = [t for t in ts if np.isfinite(t)]
    if not finite:
        return f"n/a (no mix has {MIN_MODELS} models)"
    return "within mixes" if max(finite) >= T_MIN else "between mixes only"


def mark_within_mix(points: pd.DataFrame, trends: pd.DataFrame, metric: str) -> pd.DataFrame:
    """`trends` plus the `within_mix` column (module doc); `points` is the classified table."""
    out = trends.assign(**{COLUMN: ""})
    harness = points[points["source"] == "harness"]
    if out.empty or harness.empty:
        return out
    loss = harness[harness["kind"] == "val_loss"].pivot_table(
        index="run_id", columns="name", values="value", aggfunc="mean"
    )
    acc = harness[(harness["kind"] == "task") & (harness["metric"] == metric)].pivot_table(
        index="run_id", columns="name", values="value", aggfunc="mean"
    )
    corpus = harness.drop_duplicates("run_id").set_index("run_id")["corpus"].astype(str)
    se = out.set_index(["val_set", "corpus", "name"])["binomial_se"]
    rows = out.index[(out["corpus"] == POOLED) & (out["category"] == "predictable")]
    for i in rows:
        v, name = out.at[i, "val_set"], out.at[i, "name"]
        if v not in loss or name not in acc:
            continue
        ts = []
        for c in sorted(corpus.unique()):
            ids = [r for r in corpus.index[corpus == c] if r in loss.index and r in acc.index]
            noise = se.get((v, c, name), out.at[i, "binomial_se"])
            ts.append(
                slope_t(
                    loss.loc[ids, v].to_numpy(float),
                    acc.loc[ids, name].to_numpy(float),
                    float(noise),
                )
            )
        out.at[i, COLUMN] = _verdict(ts)
    return out
