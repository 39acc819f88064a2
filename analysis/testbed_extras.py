"""Analyses that only some tables allow, run after the main groups (`analysis.pipeline`).

* points comparison (any table with intermediate checkpoints): the headline fraction
  predictable under the other points choice (final vs every checkpoint) on the reference
  x-axis, with min(200, n_resamples) resamples of runs;
* metric flips (tables with several task metrics, e.g. the OLMo ladder): the category of
  each task under accuracy vs probability of the correct answer vs bits-per-byte
  (as 2^-bpb, the per-byte probability, so that higher is better as for accuracy);
* the task's own loss as the x-axis (tables with task bits-per-byte): task_axis_predictable.csv
  and task_axis_trends.csv (val_set `task_bpb`), and category flips from the reference axis;
* variant flips (seed, precision, batch size; `analysis.variants`);
* the two-step backtest and variance analysis (tables with the ladder's target runs;
  `analysis.two_step`), whose rows are also appended to extrapolation.csv.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from analysis.axes import AXES, has_checkpoints, select_points
from analysis.classify import LABELS, classify, classify_group, fraction_predictable, trend_rows
from analysis.config import AnalysisConfig
from analysis.errors import AnalysisError, warn
from analysis.flips import category_rows
from analysis.matrix import build_groups, percentile_ci
from analysis.results import AnalysisResults
from analysis.schemas import FLIP_COLUMNS
from analysis.seed_spread import seed_spread
from analysis.two_step import two_step_backtest, variance_analysis
from analysis.variants import variant_flips

AXIS_TASK_LOSS = "task_bpb"  # x-axis name: each task's own bits-per-byte
METRIC_VARIANTS = ("prob", "bpb")


def testbed_extras(
    table: pd.DataFrame, main: pd.DataFrame, results: AnalysisResults
) -> dict[str, pd.DataFrame]:
    """Extra tables (analysis.schemas.EXTRA_TABLES) for `results`; `flips` and
    `extrapolation` come back with the extra rows appended."""
    cfg = results.cfg
    out: dict = {}
    if has_checkpoints(main):
        out["predictable_points"] = _points_comparison(main, cfg, results)
    extra = [_metric_flips(main, cfg, results)]
    if main.shape[0] < table.shape[0]:
        extra.append(variant_flips(table, cfg))
    extra = [e for e in extra if not e.empty]
    if extra:
        base = results.tables["flips"] if not results.tables["flips"].empty else None
        out["flips"] = pd.concat(([base] if base is not None else []) + extra, ignore_index=True)[
            FLIP_COLUMNS
        ]
    finals = main[main["final"].fillna(False).astype(bool)]
    val_sets = sorted(set(finals.loc[finals["kind"] == "val_loss", "name"]) - set(AXES))
    spread = seed_spread(finals, cfg.accuracy_metric, val_sets)
    if not spread.empty:
        out["seed_spread"] = spread
    own = _task_loss_axis(cfg, results)
    if own is not None:
        pred_row, trend_df, flip_df = own
        # own tables: predictable.csv / trends.csv stay one row per validation set
        out["task_axis_predictable"] = pd.DataFrame([pred_row])
        out["task_axis_trends"] = trend_df
        base = out.get("flips", results.tables["flips"])
        out["flips"] = pd.concat([base, flip_df], ignore_index=True)[FLIP_COLUMNS]
    targets = set(cfg.extrapolate.two_step.targets)
    if targets & set(main["run_id"].astype(str)):
        bt = two_step_backtest(
            main, cfg.extrapolate.two_step, cfg.accuracy_metric, cfg.fit.huber_delta
        )
        out["two_step"] = bt
        out["variance"] = variance_analysis(main, cfg.extrapolate.two_step, bt, cfg.accuracy_metric)
        out["extrapolation"] = _with_two_step(results.tables["extrapolation"], bt)
    return out


def _task_loss_axis(cfg: AnalysisConfig, results: AnalysisResults):
    """Each task against its own loss (bits-per-byte of the correct answer): one group per
    task, x = that task's bpb (lower is better, like a loss), the same rules and resamples;
    the predictable row, the trend rows and the category flips from the reference x-axis.
    None when the runs have no bpb."""
    keys = _headline_keys(results, cfg)
    if not keys:
        return None
    ref = results.groups[keys[0]]
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
        flips += category_rows(
            ref, gt, "val_set", f"corpus={g.corpus}", g.val_set, AXIS_TASK_LOSS, [t], [0]
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
    return pred, pd.concat(rows, ignore_index=True), pd.DataFrame(flips, columns=FLIP_COLUMNS)


def _headline_keys(results: AnalysisResults, cfg: AnalysisConfig) -> list[tuple[str, str]]:
    """The headline group on the reference x-axis (each extra pass costs a full
    classification; every other axis stays in predictable.csv)."""
    keys = [(gt.group.val_set, gt.group.corpus) for gt in results.headline]
    return [k for k in keys if k[0] == cfg.reference_val_set]


def _points_comparison(
    main: pd.DataFrame, cfg: AnalysisConfig, results: AnalysisResults
) -> pd.DataFrame:
    keys = _headline_keys(results, cfg)
    other = "all" if cfg.points == "final" else "final"
    R = min(200, cfg.bootstrap.n_resamples)
    rows = [{"points": cfg.points, **_pred_row(results.groups[k], cfg)} for k in keys]
    try:
        groups = build_groups(
            select_points(main, other, cfg.checkpoint_min_frac),
            cfg.accuracy_metric,
            tuple(cfg.task_loss_metrics),
        )
    except AnalysisError as exc:
        warn(f"points={other} comparison not computed: {exc}")
        return pd.DataFrame(rows)
    for g in groups:
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


def _metric_flips(
    main: pd.DataFrame, cfg: AnalysisConfig, results: AnalysisResults
) -> pd.DataFrame:
    tasks = main[main["kind"] == "task"]
    present = [m for m in METRIC_VARIANTS if (tasks["metric"] == m).any()]
    rows: list[dict] = []
    if not present or not (tasks["metric"] == cfg.accuracy_metric).any():
        return pd.DataFrame(columns=FLIP_COLUMNS)
    keys = [k for k in _headline_keys(results, cfg) if k[0] == cfg.reference_val_set]
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
            groups = build_groups(
                pd.concat([base, sub], ignore_index=True), cfg.accuracy_metric, ()
            )
        except AnalysisError:
            continue
        for g in groups:
            if (g.val_set, g.corpus) not in keys:
                continue
            a = results.groups[(g.val_set, g.corpus)]
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
    return pd.DataFrame(rows, columns=FLIP_COLUMNS)


def _with_two_step(extrap: pd.DataFrame, bt: pd.DataFrame) -> pd.DataFrame:
    """extrapolation.csv rows for the two-step backtest (abs/rel errors beside published)."""
    if bt.empty:
        return extrap
    rows = pd.DataFrame(
        {
            "backtest": "two_step_ladder",
            "corpus": "",
            "target": bt["target"],
            "run_id": bt["target"],
            "quantity": "acc:" + bt["task"],
            "law": bt["method"],
            "predicted": bt["predicted"],
            "ci_low": np.nan,
            "ci_high": np.nan,
            "actual": bt["actual"],
            "rel_error": bt["rel_error"],
            "published_rel_error": bt["published_rel_error"],
            "n_train": bt["n_step1"],
            "abs_error": bt["abs_error"],
            "published_abs_error": bt["published_abs_error"],
        }
    )
    return pd.concat([extrap, rows], ignore_index=True) if not extrap.empty else rows
