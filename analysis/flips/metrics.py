"""Metric flips, for tables with several task metrics (e.g. the OLMo ladder): the category of
each task under accuracy vs probability of the correct answer vs bits-per-byte (as 2^-bpb,
the per-byte probability, so that higher is better as for accuracy)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from analysis.config import AnalysisConfig
from analysis.errors import AnalysisError
from analysis.flips.detect import TEST_COLUMNS, category_rows
from analysis.flips.evidence import n_sizes
from analysis.groups.build import build_groups
from analysis.ingest.axes import select_points
from analysis.trends.classify import GroupTrends, classify_group

METRIC_VARIANTS = ("prob", "bpb")


def metric_flips(
    main: pd.DataFrame,
    cfg: AnalysisConfig,
    groups: dict[tuple[str, str], GroupTrends],
    keys: list[tuple[str, str]],
) -> pd.DataFrame:
    """FLIP_COLUMNS rows: each headline group of `keys` (classified as `groups`) under
    accuracy vs each other task metric, on the same points and resamples (paired)."""
    tasks = main[main["kind"] == "task"]
    present = [m for m in METRIC_VARIANTS if (tasks["metric"] == m).any()]
    rows: list[dict] = []
    if not present or not (tasks["metric"] == cfg.accuracy_metric).any():
        return pd.DataFrame(columns=TEST_COLUMNS)
    keys = [k for k in keys if k[0] == cfg.reference_val_set]
    # the same points as the groups it is compared with (and their bootstrap weights)
    main = select_points(main, cfg.points, cfg.checkpoint_min_frac)
    tasks = main[main["kind"] == "task"]
    base = main[main["kind"] != "task"]
    for m in present:
        sub = tasks[tasks["metric"] == m].copy()
        if m == "bpb":
            sub["value"] = np.exp2(-sub["value"].astype(float))
        sub["metric"] = cfg.accuracy_metric
        sub["stderr"] = np.nan
        try:
            other = build_groups(pd.concat([base, sub], ignore_index=True), cfg.accuracy_metric, ())
        except AnalysisError:
            continue
        for g in other:
            if (g.val_set, g.corpus) not in keys:
                continue
            a = groups[(g.val_set, g.corpus)]
            if n_sizes(a.group.n_params) < cfg.flips.min_sizes:
                continue  # too few sizes for a trend (analysis.flips.detect)
            # the same resamples as the accuracy group: a paired comparison
            b = classify_group(g, a.weights, cfg.classify, dataclasses.replace(cfg.fit))
            names = [n for n in a.group.names if n in g.names]
            rows += category_rows(
                a,
                b,
                "metric",
                f"val_set={g.val_set},corpus={g.corpus}",
                cfg.accuracy_metric,
                m,
                [a.group.names.index(n) for n in names],
                [g.names.index(n) for n in names],
            )
    return pd.DataFrame(rows, columns=TEST_COLUMNS)
