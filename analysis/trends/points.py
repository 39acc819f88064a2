"""The headline fraction predictable under both points choices (final checkpoints vs every
checkpoint), for tables with intermediate checkpoints."""

from __future__ import annotations

import pandas as pd

from analysis.config import AnalysisConfig
from analysis.errors import AnalysisError, warn
from analysis.groups.build import build_groups
from analysis.ingest.axes import select_points
from analysis.trends.classify import GroupTrends, classify, fraction_predictable


def points_comparison(
    main: pd.DataFrame,
    cfg: AnalysisConfig,
    groups: dict[tuple[str, str], GroupTrends],
    keys: list[tuple[str, str]],
) -> pd.DataFrame:
    """predictable_points.csv: the headline groups `keys` (classified as `groups`) beside
    the same groups built from the other points choice (final vs every checkpoint), with
    min(200, n_resamples) resamples of runs."""
    other = "all" if cfg.points == "final" else "final"
    R = min(200, cfg.bootstrap.n_resamples)
    rows = [{"points": cfg.points, **_pred_row(groups[k], cfg)} for k in keys]
    try:
        other_groups = build_groups(
            select_points(main, other, cfg.checkpoint_min_frac),
            cfg.accuracy_metric,
            tuple(cfg.task_loss_metrics),
        )
    except AnalysisError as exc:
        warn(f"points={other} comparison not computed: {exc}")
        return pd.DataFrame(rows)
    for g in other_groups:
        if (g.val_set, g.corpus) not in keys:
            continue
        gt = classify(g, cfg, cfg.bootstrap.seed, n_resamples=R)
        rows.append({"points": other, **_pred_row(gt, cfg)})
    return pd.DataFrame(rows)


def _pred_row(gt, cfg: AnalysisConfig) -> dict:
    est, lo, hi = fraction_predictable(gt, cfg.bootstrap.ci)
    g = gt.group
    n_runs = len(set(g.cluster)) if g.cluster is not None else g.n
    return {
        "val_set": g.val_set,
        "corpus": g.corpus,
        "frac": est,
        "ci_low": lo,
        "ci_high": hi,
        "n_tasks": len(g.names),
        "n_points": g.n,
        "n_runs": n_runs,
        "resamples": gt.codes.shape[0] - 1,
    }
