"""The analysis entry points the CLI calls: `analyze` (table -> tables, figures, report)
and `plot` (figures again from the written tables, no refitting).

Output layout (contract): `<out>/report.md`, `<out>/figures/*.png`, `<out>/tables/`
{runs.parquet, runs.csv (final checkpoints only), trends.csv, flips.csv, extrapolation.csv,
fits.csv} plus
predictable.csv, sensitivity.csv, gaps.csv and `<out>/analysis_config.json`.
"""

from __future__ import annotations

import dataclasses
import json
import time
import warnings
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from analysis import io
from analysis.axes import main_suite, select_points, with_axes
from analysis.calibrate import CALIBRATION_TABLES, calibration_tables, resolve_labels
from analysis.classify import (
    GroupTrends,
    classify_group,
    fraction_predictable,
    sensitivity,
    trend_rows,
)
from analysis.config import AnalysisConfig
from analysis.errors import AnalysisError, AnalysisWarning
from analysis.extrapolate import EXTRAP_COLUMNS, leave_largest_out, testbed_backtest
from analysis.fit_quality import flag_fits
from analysis.fit_tables import downstream_fit_rows
from analysis.flips import FLIP_COLUMNS, corpus_gaps, detect_flips
from analysis.matrix import POOLED, bootstrap_weights, build_groups
from analysis.table import COLUMNS, conform, with_all_columns
from analysis.testbed_extras import EXTRA_TABLES, testbed_extras
from analysis.within_groups import mark_within_mix

FIT_COLUMNS = [
    "kind",
    "backtest",
    "law",
    "corpus",
    "val_set",
    "task",
    "setup",
    "name",
    "x_metric",
    "n_points",
    "r2",
    "rmse",
    "llo_abs_error",
    "params",
    "param_ci",
    "fitted",
    "flag",
]


@dataclass
class AnalysisSummary:
    """What `analyze` produced: paths, headline numbers and the warnings it raised."""

    out_dir: Path
    n_runs: int
    n_tasks: int
    val_sets: list[str]
    corpora: list[str]
    frac_predictable: dict[str, tuple[float, float, float]]  # val_set -> (est, lo, hi)
    n_flips: dict[str, int]  # kind -> count
    files: list[Path] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0


def _seed(cfg: AnalysisConfig, corpus: str) -> int:
    # the same corpus gets the same resamples under every validation set: paired bootstrap
    return cfg.bootstrap.seed + zlib.crc32(corpus.encode()) % 100_000


def _limit_threads():
    # tiny matrices: BLAS threads only contend (2 shared cores); optional dependency
    try:
        from threadpoolctl import threadpool_limits

        return threadpool_limits(1)
    except ImportError:  # pragma: no cover
        import contextlib

        return contextlib.nullcontext()


def analyze(
    table: pd.DataFrame, out_dir: Path, cfg: AnalysisConfig | None = None
) -> AnalysisSummary:
    """Classify, fit, detect flips, backtest, and write tables, figures and report.md."""
    t0 = time.time()
    cfg = cfg or AnalysisConfig()
    out_dir = Path(out_dir)
    missing = [c for c in ("run_id", "kind", "name", "value", "final") if c not in table]
    if missing:
        raise AnalysisError(f"table lacks columns {missing}")
    table = conform(with_all_columns(table))
    if table.empty:
        raise AnalysisError("empty table: no runs to analyse")
    # x-axes beyond the validation losses (compute, params) are pseudo validation sets;
    # the groups use the main suite's points (final checkpoints, or every checkpoint)
    table = conform(with_axes(table, cfg.x_axes))
    main = main_suite(table)
    points = select_points(main, cfg.points, cfg.checkpoint_min_frac)
    cfg = _with_present_reference(cfg, points)
    # a bad labels setting fails now, not after minutes of fitting
    resolve_labels(cfg.calibration.labels, sorted(table["source"].dropna().unique()))
    with warnings.catch_warnings(record=True) as caught, _limit_threads():
        warnings.simplefilter("always", AnalysisWarning)
        results = _compute(points, cfg, main)
        # after the rules, not inside them: a pooled trend between data mixes only is marked
        results["trends"] = mark_within_mix(points, results["trends"], cfg.accuracy_metric)
        results.update(testbed_extras(table, main, cfg, results))
        results.update(
            calibration_tables(
                sorted(table["source"].dropna().unique()),
                results["_trends"],
                results["trends"],
                cfg,
            )
        )
        from analysis.predict.stage import prediction_tables  # predictions stage (issue 26)

        results.update(prediction_tables(table, cfg, results["trends"]))
    msgs = list(
        dict.fromkeys(str(w.message) for w in caught if issubclass(w.category, AnalysisWarning))
    )
    files = _write(out_dir, table, cfg, results, msgs)
    from analysis.predict.stage import write_predictions

    files += write_predictions(out_dir, results)
    from analysis.plots import plot_all
    from analysis.report import write_report

    with warnings.catch_warnings(record=True) as caught2:
        warnings.simplefilter("always", AnalysisWarning)
        files += plot_all(out_dir)
    msgs += [str(w.message) for w in caught2 if issubclass(w.category, AnalysisWarning)]
    files.append(write_report(out_dir, cfg, msgs, time.time() - t0))
    for m in msgs:  # surface them to the caller too
        warnings.warn(m, AnalysisWarning, stacklevel=2)
    frac = results["predictable"]
    return AnalysisSummary(
        out_dir=out_dir,
        n_runs=int(table["run_id"].nunique()),
        n_tasks=int(table.loc[table["kind"] == "task", "name"].nunique()),
        val_sets=sorted(table.loc[table["kind"] == "val_loss", "name"].unique()),
        corpora=sorted(table["corpus"].dropna().unique()),
        frac_predictable={r.val_set: (r.frac, r.ci_low, r.ci_high) for r in frac.itertuples()},
        n_flips=results["flips"]["kind"].value_counts().to_dict(),
        files=files,
        warnings=msgs,
        seconds=time.time() - t0,
    )


def _with_present_reference(cfg: AnalysisConfig, table: pd.DataFrame) -> AnalysisConfig:
    """Use the table's first validation set as the x-axis when the configured one is absent
    (the default names the testbed's C4 set; a harness sweep names its own sets)."""
    present = list(dict.fromkeys(table.loc[table["kind"] == "val_loss", "name"]))
    if not present or cfg.reference_val_set in present:
        return cfg
    return dataclasses.replace(cfg, reference_val_set=present[0])


def _compute(table: pd.DataFrame, cfg: AnalysisConfig, finals: pd.DataFrame | None = None) -> dict:
    groups = build_groups(table, cfg.accuracy_metric, tuple(cfg.task_loss_metrics))
    trends: dict[tuple[str, str], GroupTrends] = {}
    weights: dict[tuple[str, str], np.ndarray] = {}
    fit_rows: list[dict] = []
    for g in groups:
        W = bootstrap_weights(
            g.n,
            cfg.bootstrap.n_resamples,
            _seed(cfg, g.corpus),
            g.run_corpus if g.corpus == POOLED else None,
            g.cluster,
        )
        gt = classify_group(g, W, cfg.classify, cfg.fit)
        trends[(g.val_set, g.corpus)] = gt
        weights[(g.val_set, g.corpus)] = W
        fit_rows += downstream_fit_rows(gt, cfg.fit)
    trend_df = pd.concat([trend_rows(gt) for gt in trends.values()], ignore_index=True)
    headline = _headline_groups(trends)
    pred_rows = []
    for gt in headline:
        est, lo, hi = fraction_predictable(gt, cfg.bootstrap.ci)
        pred_rows.append(
            {
                "val_set": gt.group.val_set,
                "corpus": gt.group.corpus,
                "frac": est,
                "ci_low": lo,
                "ci_high": hi,
                "n_tasks": len(gt.group.names),
                "n_predictable": int(round(est * len(gt.group.names))),
            }
        )
    flips = detect_flips(trends, weights, cfg.flips)
    val_sets = sorted({v for v, _ in trends})
    gaps = corpus_gaps(trends, val_sets, sorted({c for _, c in trends}), cfg.flips)
    sens = sensitivity(headline, cfg.classify)
    extrap, loss_fits = _extrapolate(table if finals is None else finals, cfg, val_sets)
    return {
        "trends": trend_df,
        "predictable": pd.DataFrame(pred_rows),
        "flips": flips,
        "_trends": trends,
        "_weights": weights,
        "_headline": headline,
        "gaps": gaps.drop(columns=["boot"]) if not gaps.empty else gaps,
        "sensitivity": sens,
        "extrapolation": extrap,
        "fits": _flagged(pd.DataFrame(fit_rows + loss_fits, columns=FIT_COLUMNS), cfg),
    }


def _flagged(fits: pd.DataFrame, cfg: AnalysisConfig) -> pd.DataFrame:
    """fits.csv with its `flag` column (analysis.fit_quality): bound hits, R² <= 0."""
    return fits.assign(flag=flag_fits(fits, cfg.fit))


def _headline_groups(trends: dict[tuple[str, str], GroupTrends]) -> list[GroupTrends]:
    """Per validation set: the pooled group, or the only corpus when there is one."""
    out = []
    for v in sorted({v for v, _ in trends}):
        keys = [k for k in trends if k[0] == v]
        pooled = [k for k in keys if k[1] == POOLED]
        out.append(trends[pooled[0] if pooled else sorted(keys)[0]])
    return out


def _extrapolate(table: pd.DataFrame, cfg: AnalysisConfig, val_sets: list[str]):
    vset = next(
        (v for v in (cfg.extrapolate.val_set, cfg.reference_val_set) if v in val_sets), val_sets[0]
    )
    frames, fits = [], []
    jobs = [("leave-largest-out", leave_largest_out)]
    if (table["source"] == "gadre2024").any():
        jobs.insert(0, ("testbed backtest", testbed_backtest))
    for label, job in jobs:
        try:
            df, f = job(table, cfg, vset)
        except (ValueError, KeyError, IndexError, np.linalg.LinAlgError, AnalysisError) as exc:
            from analysis.errors import warn

            warn(f"{label} could not be computed: {exc!r}")
            continue
        frames.append(df)
        fits += f
    extrap = (
        pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=EXTRAP_COLUMNS)
    )
    return extrap, fits


def _write(
    out_dir: Path, table: pd.DataFrame, cfg: AnalysisConfig, res: dict, msgs: list[str]
) -> list[Path]:
    tdir = out_dir / "tables"
    # runs.csv is the readable copy of the final checkpoints; runs.parquet holds every row
    fin = table[table["final"].fillna(False).astype(bool)]
    files = [
        io.write_parquet(tdir / "runs.parquet", table[list(COLUMNS)]),
        io.write_csv(tdir / "runs.csv", fin[list(COLUMNS)]),
    ]
    flips = res["flips"] if not res["flips"].empty else pd.DataFrame(columns=FLIP_COLUMNS)
    for name, df in (
        ("trends", res["trends"]),
        ("flips", flips),
        ("fits", res["fits"]),
        ("extrapolation", res["extrapolation"]),
        ("predictable", res["predictable"]),
        ("sensitivity", res["sensitivity"]),
        ("gaps", res["gaps"]),
    ):
        files.append(io.write_csv(tdir / f"{name}.csv", df))
    for name in CALIBRATION_TABLES:  # agreement with published labels, when there are some
        if name in res and not res[name].empty:
            files.append(io.write_csv(tdir / f"{name}.csv", res[name]))
    for name in EXTRA_TABLES:  # testbed extras (analysis.testbed_extras), only when computed
        if name in res:
            files.append(io.write_csv(tdir / f"{name}.csv", res[name]))
    files.append(
        io.write_text(out_dir / "analysis_config.json", json.dumps(cfg.to_dict(), indent=2))
    )
    files.append(io.write_text(tdir / "warnings.txt", "\n".join(msgs) + ("\n" if msgs else "")))
    return files


def plot(out_dir: Path, plot_options: dict | None = None) -> list[Path]:
    """Regenerate every figure from the tables in `out_dir` (no refitting); `plot_options`
    override the saved `analysis.plot` settings (dpi, formats)."""
    from analysis.plots import TABLES_READ, plot_all

    tables = Path(out_dir) / "tables"
    if not (tables / TABLES_READ[0]).exists():
        raise AnalysisError(
            f"out: no analysis tables under {tables}; run `harness analyze root={out_dir}` first"
        )
    return plot_all(Path(out_dir), plot_options)
