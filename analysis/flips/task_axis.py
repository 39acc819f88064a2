"""Each task against its own loss (bits-per-byte of the correct answer) as the x-axis, for
tables with task bits-per-byte: task_axis_predictable.csv, task_axis_trends.csv (val_set
`task_bpb`), and the category flips from the reference x-axis."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from analysis.config import AnalysisConfig
from analysis.flips.detect import TEST_COLUMNS, category_rows
from analysis.flips.evidence import n_sizes
from analysis.groups.build import percentile_ci
from analysis.trends.classify import LABELS, GroupTrends, classify, trend_rows

AXIS_TASK_LOSS = "task_bpb"  # x-axis name: each task's own bits-per-byte


def task_loss_axis(
    cfg: AnalysisConfig, ref: GroupTrends | None
) -> tuple[dict, pd.DataFrame, pd.DataFrame] | None:
    """Each task against its own loss (bits-per-byte of the correct answer): one group per
    task, x = that task's bpb (lower is better, like a loss), the same rules and resamples;
    the predictable row, the trend rows and the category flips from the reference x-axis.
    None when the runs have no bpb."""
    if ref is None:
        return None
    g = ref.group
    if g.X_task is None or g.task_metric != "bpb":
        return None
    codes, rows, flips = [], [], []
    for t in range(len(g.names)):
        ok = np.isfinite(g.X_task[:, t]) & np.isfinite(g.Y[:, t])
        if ok.sum() < cfg.classify.min_models:
            continue
        gt_group = dataclasses.replace(
            g,
            val_set=AXIS_TASK_LOSS,
            run_ids=g.run_ids[ok],
            run_corpus=g.run_corpus[ok],
            size=g.size[ok],
            n_params=g.n_params[ok],
            x=g.X_task[ok, t],
            names=[g.names[t]],
            tasks=[g.tasks[t]],
            setups=[g.setups[t]],
            Y=g.Y[ok][:, [t]],
            S=g.S[ok][:, [t]],
            chance=g.chance[[t]],
            X_task=None,
            cluster=None if g.cluster is None else g.cluster[ok],
        )
        gt = classify(gt_group, cfg, cfg.bootstrap.seed)
        codes.append(gt.codes[:, 0])
        rows.append(trend_rows(gt))
        if n_sizes(g.n_params) < cfg.flips.min_sizes:
            continue  # too few sizes for a trend: no flip (analysis.flips.detect)
        flips += category_rows(
            ref, gt, "task_loss_axis", f"corpus={g.corpus}", g.val_set, AXIS_TASK_LOSS, [t], [0]
        )
    if not codes:
        return None
    C = np.stack(codes, 1)
    frac = (C == LABELS.index("predictable")).mean(1)
    lo, hi = percentile_ci(frac[1:], cfg.bootstrap.ci) if len(frac) > 2 else (np.nan, np.nan)
    pred = {
        "val_set": AXIS_TASK_LOSS,
        "corpus": g.corpus,
        "frac": float(frac[0]),
        "ci_low": float(lo),
        "ci_high": float(hi),
        "n_tasks": C.shape[1],
        "n_predictable": int(round(frac[0] * C.shape[1])),
    }
    return pred, pd.concat(rows, ignore_index=True), pd.DataFrame(flips, columns=TEST_COLUMNS)
