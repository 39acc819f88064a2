"""The headline fraction predictable under the other choice of each analysis setting a claim
rests on: points (final checkpoints vs every checkpoint, for tables with intermediate
checkpoints) and x-axis (a validation loss vs compute), so the report can say whether its
headline survives the other choice."""

from __future__ import annotations

import pandas as pd

from analysis.config import AnalysisConfig
from analysis.errors import AnalysisError, warn
from analysis.flips.detect import unclassified_reason
from analysis.groups.build import build_groups
from analysis.ingest.axes import AXES, select_points, with_axes
from analysis.trends.classify import GroupTrends, classify, fraction_predictable

#: resamples of the alternative choices' classifications (a one-line comparison, not a headline)
ALT_RESAMPLES = 200


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
    R = min(ALT_RESAMPLES, cfg.bootstrap.n_resamples)
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


def compute_comparison(
    points: pd.DataFrame, cfg: AnalysisConfig, keys: list[tuple[str, str]]
) -> pd.DataFrame:
    """predictable_compute.csv: the headline group on the reference x-axis `keys[0]` (a
    validation loss) rebuilt with compute as its x-axis, same points, ALT_RESAMPLES resamples;
    empty when the reference x-axis is already compute or parameters."""
    if not keys or keys[0][0] in AXES:
        return pd.DataFrame()
    corpus = keys[0][1]
    try:
        has = (points["kind"] == "val_loss") & (points["name"] == "compute")
        table = points if has.any() else with_axes(points, ["compute"])
        groups = build_groups(table, cfg.accuracy_metric, tuple(cfg.task_loss_metrics))
    except AnalysisError as exc:
        warn(f"compute comparison not computed: {exc}")
        return pd.DataFrame()
    R = min(ALT_RESAMPLES, cfg.bootstrap.n_resamples)
    for g in groups:
        if (g.val_set, g.corpus) == ("compute", corpus):
            gt = classify(g, cfg, cfg.bootstrap.seed, n_resamples=R)
            return pd.DataFrame([{"x_axis": "compute", **_pred_row(gt, cfg)}])
    return pd.DataFrame()


def _pred_row(gt, cfg: AnalysisConfig) -> dict:
    est, lo, hi = fraction_predictable(gt, cfg.bootstrap.ci)
    if unclassified_reason(gt, cfg.flips.min_sizes, {}):  # too few sizes: n/a, not 0
        est, lo, hi = float("nan"), float("nan"), float("nan")
    g = gt.group
    n_runs = len(set(g.cluster)) if g.cluster is not None else g.n
    return {
        "val_set": g.val_set,
        "corpus": g.corpus,
        "frac": est,
        "ci_low": lo,
        "ci_high": hi,
        "n_tasks": len(g.names),
        "n_predictable": int(round(est * len(g.names))) if est == est else 0,
        "n_points": g.n,
        "n_runs": n_runs,
        "resamples": gt.codes.shape[0] - 1,
    }
