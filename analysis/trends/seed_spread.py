"""Run-to-run spread: how far runs that differ only in their training seed land apart, against
how far the sizes of a sweep move the same quantity.

A trend across sizes that is not several times the seed-to-seed spread is not a trend one seed
can show, so the study's categories are only as firm as this ratio (Lourie et al. 2025 make the
same point with the OLMo seed variants). Computed from the final checkpoints of a sweep in which
some (corpus, size) configuration was trained with two or more seeds.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

COLUMNS = [
    "quantity",
    "name",
    "n_configs",
    "n_seeds",
    "seed_sd",
    "size_range",
    "range_over_sd",
]


def seed_spread(finals: pd.DataFrame, accuracy_metric: str, val_sets: list[str]) -> pd.DataFrame:
    """One row per validation loss in `val_sets` and per task (its `accuracy_metric`):

    seed_sd: the standard deviation over seeds of one configuration, averaged (as a variance)
      over the configurations with two seeds or more;
    size_range: the range over sizes of the seed-averaged value, averaged over corpora;
    range_over_sd: size_range / seed_sd, how many seed spreads the scaling trend spans.

    Empty when no configuration has two seeds.
    """
    f = finals[finals["source"].fillna("") == "harness"] if "source" in finals else finals
    loss = f[(f["kind"] == "val_loss") & f["name"].isin(val_sets)].assign(quantity="val_loss")
    acc = f[(f["kind"] == "task") & (f["metric"] == accuracy_metric)].assign(quantity="task")
    rows = []
    for (quantity, name), g in pd.concat([loss, acc]).groupby(["quantity", "name"], sort=True):
        g = g.dropna(subset=["value", "size", "corpus", "seed"])
        per = g.groupby(["corpus", "size"])["value"]
        counts = per.count()
        multi = counts[counts >= 2].index
        if len(multi) == 0:
            continue
        var = per.var(ddof=1).loc[multi]
        means = per.mean().groupby(level="corpus")
        size_range = float(np.mean([s.max() - s.min() for _, s in means if len(s) >= 2] or [0]))
        sd = float(np.sqrt(var.mean()))
        rows.append(
            {
                "quantity": quantity,
                "name": name,
                "n_configs": len(multi),
                "n_seeds": int(g["seed"].nunique()),
                "seed_sd": sd,
                "size_range": size_range,
                "range_over_sd": size_range / sd if sd > 0 else float("inf"),
            }
        )
    return pd.DataFrame(rows, columns=COLUMNS)
