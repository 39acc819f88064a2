"""The analysis entry points the CLI calls: `analyze` (table -> tables, figures, report)
and `plot` (figures again from the written tables, no refitting).

Output layout (contract): `<out>/report.md`, `<out>/figures/*.png`, `<out>/tables/`
{runs.parquet, runs.csv (final checkpoints only), the tables of `analysis.schemas`,
warnings.txt, complete.json (written last: analysis.output.folder)} and
`<out>/analysis_config.json`. `compute` runs the stages into an `AnalysisResults`;
`write_outputs` writes it.
"""

from __future__ import annotations

import dataclasses
import json
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from analysis import testbeds
from analysis.config import AnalysisConfig
from analysis.errors import AnalysisError, AnalysisWarning
from analysis.flips.capability_axis import capability_axis
from analysis.flips.detect import TEST_COLUMNS, corpus_gaps, detect_flips, unclassified_reason
from analysis.flips.evidence import axis_falls, n_facts, with_q
from analysis.flips.metrics import metric_flips
from analysis.flips.rates import flip_rates, null_rates
from analysis.flips.task_axis import task_loss_axis
from analysis.flips.variants import variant_flips
from analysis.groups.build import POOLED, build_groups
from analysis.ingest.axes import AXES, has_checkpoints, main_suite, select_points, with_axes
from analysis.ingest.table import COLUMNS, conform, validate, with_all_columns
from analysis.laws.extrapolate import leave_largest_out, with_published
from analysis.laws.fit_quality import flag_fits
from analysis.laws.two_step import (
    two_step_backtest,
    variance_analysis,
    with_published_chained,
    with_two_step,
)
from analysis.output import files as io
from analysis.output.folder import SUMMARY_ENTRIES, check_settings, require_complete, staged
from analysis.predict.stage import prediction_tables, write_predictions
from analysis.results import AnalysisResults
from analysis.schemas import EXTRAP_COLUMNS, FIT_COLUMNS, FLIP_COLUMNS
from analysis.trends.calibrate import calibration_tables
from analysis.trends.classify import (
    GroupTrends,
    classify,
    corpus_seed,
    fraction_predictable,
    sensitivity,
    trend_rows,
    unclassify,
)
from analysis.trends.fit_tables import downstream_fit_rows
from analysis.trends.points import compute_comparison, points_comparison
from analysis.trends.seed_spread import seed_spread
from analysis.trends.within_groups import mark_within_mix


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
    results: AnalysisResults | None = None  # the stages' output, in memory


def limit_threads():
    # tiny matrices: BLAS threads only contend (2 shared cores); optional dependency
    try:
        from threadpoolctl import threadpool_limits

        return threadpool_limits(1)
    except ImportError:  # pragma: no cover
        import contextlib

        return contextlib.nullcontext()


def analyze(
    table: pd.DataFrame,
    out_dir: Path,
    cfg: AnalysisConfig | None = None,
    load_warnings: list[str] | None = None,
    overwrite: bool = True,
) -> AnalysisSummary:
    """Classify, fit, detect flips, backtest, and write tables, figures and report.md;
    `load_warnings` (raised while the table was read) head the report's warnings. Unless
    `overwrite`, a report in `out_dir` made with other settings is refused before any write."""
    t0 = time.time()
    out_dir = Path(out_dir)
    # the settings check needs the resolved reference axis, but runs before any fitting
    res = compute(table, cfg, lambda settled: check_settings(out_dir, settled.to_dict(), overwrite))
    res.warnings = list(dict.fromkeys([*(load_warnings or []), *res.warnings]))
    files = write_outputs(out_dir, res, t0)
    for m in res.warnings:  # surface them to the caller too
        warnings.warn(m, AnalysisWarning, stacklevel=2)
    frac = res.tables["predictable"]
    runs = res.runs
    return AnalysisSummary(
        out_dir=out_dir,
        n_runs=int(runs["run_id"].nunique()),
        n_tasks=int(runs.loc[runs["kind"] == "task", "name"].nunique()),
        val_sets=sorted(runs.loc[runs["kind"] == "val_loss", "name"].unique()),
        corpora=sorted(runs["corpus"].dropna().unique()),
        frac_predictable={r.val_set: (r.frac, r.ci_low, r.ci_high) for r in frac.itertuples()},
        n_flips=res.tables["flips"]["kind"].value_counts().to_dict(),
        files=files,
        warnings=res.warnings,
        seconds=time.time() - t0,
        results=res,
    )


def _caught(caught: list) -> list[str]:
    return [str(w.message) for w in caught if issubclass(w.category, AnalysisWarning)]


def ingest(table: pd.DataFrame, cfg: AnalysisConfig) -> pd.DataFrame:
    """Stage 1: the contract table (analysis.ingest.table.validate) plus its pseudo x-axes."""
    missing = [c for c in ("run_id", "kind", "name", "value", "final") if c not in table]
    if missing:
        raise AnalysisError(f"table lacks columns {missing}")
    table = conform(with_all_columns(table))
    if table.empty:
        raise AnalysisError("empty table: no runs to analyse")
    table = validate(table)
    # x-axes beyond the validation losses (compute, params) are pseudo validation sets
    return conform(with_axes(table, cfg.x_axes))


def compute(
    table: pd.DataFrame,
    cfg: AnalysisConfig | None = None,
    before_fitting: Callable[[AnalysisConfig], None] | None = None,
) -> AnalysisResults:
    """Every stage of the analysis, in memory: ingest -> groups -> trends and laws ->
    flips -> extras and calibration -> predictions (analysis.predict). Nothing is written.
    `before_fitting` sees the settings as resolved (the reference axis the data has) before
    the first fit; it may raise to stop."""
    cfg = cfg or AnalysisConfig()
    with warnings.catch_warnings(record=True) as caught0:
        warnings.simplefilter("always", AnalysisWarning)
        table = ingest(table, cfg)
    # the groups use the main suite's points (final checkpoints, or every checkpoint)
    main = main_suite(table)
    points = select_points(main, cfg.points, cfg.checkpoint_min_frac)
    cfg = with_present_reference(cfg, points)
    if before_fitting is not None:
        before_fitting(cfg)
    # a bad labels setting fails now, not after minutes of fitting
    sources = sorted(table["source"].dropna().unique())
    labels = testbeds.labels_for(cfg.calibration.labels, sources)
    with warnings.catch_warnings(record=True) as caught, limit_threads():
        warnings.simplefilter("always", AnalysisWarning)
        res = _core(table, points, cfg, main)
        # after the rules, not inside them: a pooled trend between data mixes only is marked
        res.tables["trends"] = mark_within_mix(points, res.tables["trends"], cfg.accuracy_metric)
        _comparisons(table, main, res)
        _flip_evidence(res)
        _backtest_targets(main, res)
        res.tables.update(calibration_tables(labels, res.groups, res.tables["trends"], cfg))
        res.predictions = prediction_tables(table, cfg, res.tables["trends"])
    if res.tables["flips"].empty:
        res.tables["flips"] = AnalysisResults.empty_flips()
    res.warnings = list(dict.fromkeys(_caught(caught0) + _caught(caught)))
    return res


def _comparisons(table: pd.DataFrame, main: pd.DataFrame, res: AnalysisResults) -> None:
    """The analyses only some tables allow, run after the main groups on the headline group
    of the reference x-axis (each extra pass costs a full classification): the points
    comparison, metric and variant flips, the seed spread and each task's own loss as the
    x-axis. Their flip rows are appended to flips; every table is one of EXTRA_TABLES."""
    cfg, keys, t = res.cfg, res.reference_keys, res.tables
    if has_checkpoints(main):
        t["predictable_points"] = points_comparison(main, cfg, res.groups, keys)
    alt = compute_comparison(res.points, cfg, keys)
    if not alt.empty:
        t["predictable_compute"] = alt
    extra = [metric_flips(main, cfg, res.groups, keys)]
    if main.shape[0] < table.shape[0]:  # variant sweeps (`<sweep>:<variant>`)
        extra.append(variant_flips(table, cfg))
    extra = [e for e in extra if not e.empty]
    if extra:
        base = [t["flips"]] if not t["flips"].empty else []
        t["flips"] = pd.concat(base + extra, ignore_index=True)[TEST_COLUMNS]
    finals = main[main["final"].fillna(False).astype(bool)]
    val_sets = sorted(set(finals.loc[finals["kind"] == "val_loss", "name"]) - set(AXES))
    spread = seed_spread(finals, cfg.accuracy_metric, val_sets)
    if not spread.empty:
        t["seed_spread"] = spread
    own = task_loss_axis(cfg, res.groups[keys[0]] if keys else None)
    if own is not None:
        pred_row, trend_df, flip_df = own
        # own tables: predictable.csv / trends.csv stay one row per validation set
        t["task_axis_predictable"] = pd.DataFrame([pred_row])
        t["task_axis_trends"] = trend_df
        t["flips"] = pd.concat([t["flips"], flip_df], ignore_index=True)[TEST_COLUMNS]
    _capability(main, res)


def _flip_evidence(res: AnalysisResults) -> None:
    """The flips stage's last step: q-values over every test that ran, the measured null,
    the per-change table (flip_rates), and flips.csv = the tests whose point estimates
    differ (analysis.flips.evidence, analysis.flips.rates)."""
    t0 = time.process_time()
    tests = with_q(res.tables["flips"])
    key = res.reference_keys[0] if res.reference_keys else None
    null = null_rates(res.groups.get(key) if key else None, res.points, res.cfg)
    res.tables["flip_rates"] = flip_rates(tests, null, res.cfg)
    res.flip_tests = n_facts(tests) if not tests.empty else 0
    res.tables["flips"] = tests[tests["level"].astype(str) != ""][FLIP_COLUMNS].reset_index(
        drop=True
    )
    res.flip_cpu_s += time.process_time() - t0


def _capability(main: pd.DataFrame, res: AnalysisResults) -> None:
    """The capability axis of the testbeds that name benchmarks for it (Testbed.
    capability_tasks): its tables, and its flips appended to flips.csv."""
    bench = sorted({t for b in testbeds.of_table(main) for t in b.capability_tasks})
    if not bench:
        return
    points = select_points(main, "final")
    out = capability_axis(res.cfg, points, res.groups, bench)
    if out is None:
        return
    flips = out.pop("flips")
    res.tables.update(out)
    t = res.tables
    t["flips"] = pd.concat([t["flips"], flips], ignore_index=True)[TEST_COLUMNS]


def _backtest_targets(main: pd.DataFrame, res: AnalysisResults) -> None:
    """The two-step backtest and variance analysis, for tables with the ladder's target
    runs; their rows are also appended to extrapolation.csv."""
    cfg = res.cfg
    if not set(cfg.extrapolate.two_step.targets) & set(main["run_id"].astype(str)):
        return
    bt = two_step_backtest(main, cfg.extrapolate.two_step, cfg.accuracy_metric, cfg.fit.huber_delta)
    published: dict = {}
    for b in testbeds.of_table(main):
        published.update(b.published.get("two_step_13B", {}))
    bt = with_published_chained(bt, published)
    res.tables["two_step"] = bt
    res.tables["variance"] = variance_analysis(
        main, cfg.extrapolate.two_step, bt, cfg.accuracy_metric
    )
    res.tables["extrapolation"] = with_two_step(res.tables["extrapolation"], bt)


def write_outputs(out_dir: Path, res: AnalysisResults, t0: float) -> list[Path]:
    """Tables, figures and report.md of `res`, built whole in a staging folder and swapped
    into `out_dir` (analysis.output.folder); the report's own warnings are added to
    `res.warnings`. Returns the written files (their final paths)."""
    from analysis.report.figures import plot_all
    from analysis.report.markdown import write_report

    with staged(out_dir) as stage:
        files = _write(stage, res)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", AnalysisWarning)
            files += plot_all(stage)
            files += write_predictions(stage, res.predictions or {})
        res.warnings += _caught(caught)
        files.append(write_report(stage, res, time.time() - t0))
    return [out_dir / f.relative_to(stage) for f in files]


def with_present_reference(cfg: AnalysisConfig, table: pd.DataFrame) -> AnalysisConfig:
    """Use the table's first validation set as the x-axis when the configured one is absent
    (the default names the testbed's C4 set; a harness sweep names its own sets)."""
    present = list(dict.fromkeys(table.loc[table["kind"] == "val_loss", "name"]))
    if not present or cfg.reference_val_set in present:
        return cfg
    return dataclasses.replace(cfg, reference_val_set=present[0])


def check_named_reference(cfg: AnalysisConfig, table: pd.DataFrame) -> None:
    """A `reference_val_set` the user named must be an x-axis of the runs (a validation set
    they recorded, or one of `x_axes`): falling back to another, as for the default, would
    rest every headline on a set they did not ask for."""
    present = list(dict.fromkeys(table.loc[table["kind"] == "val_loss", "name"]))
    known = [*present, *(a for a in cfg.x_axes if a not in present)]
    if cfg.reference_val_set not in known:
        raise AnalysisError(
            f"analysis.reference_val_set: no validation set '{cfg.reference_val_set}' in the "
            f"runs (known: {', '.join(known) or 'none'})"
        )


def _core(
    table: pd.DataFrame, points: pd.DataFrame, cfg: AnalysisConfig, finals: pd.DataFrame
) -> AnalysisResults:
    """Groups, their trends and downstream laws, the headline fractions, flips, gaps,
    sensitivity and the extrapolation backtests."""
    groups: dict[tuple[str, str], GroupTrends] = {}
    fit_rows: list[dict] = []
    for g in build_groups(
        points, cfg.accuracy_metric, tuple(cfg.task_loss_metrics), cfg.min_corpus_models
    ):
        gt = classify(g, cfg, corpus_seed(cfg, g.corpus))
        groups[(g.val_set, g.corpus)] = gt
        fit_rows += downstream_fit_rows(gt, cfg.fit)
    # the flips' check, applied to trends too: no category on an x-axis that is no scale or
    # from fewer than min_sizes distinct sizes (their fits stay in fits.csv)
    scale, notes = _scales(groups)
    unclassified = {
        k: unclassified_reason(gt, cfg.flips.min_sizes, scale) for k, gt in groups.items()
    }
    groups = {k: unclassify(gt) if unclassified[k] else gt for k, gt in groups.items()}
    trend_df = pd.concat(
        [trend_rows(gt, unclassified[k]) for k, gt in groups.items()], ignore_index=True
    )
    headline = _headline_groups(groups)
    pred_rows = []
    for gt in headline:
        est, lo, hi = fraction_predictable(gt, cfg.bootstrap.ci)
        if unclassified[(gt.group.val_set, gt.group.corpus)]:
            est, lo, hi = np.nan, np.nan, np.nan  # n/a, not 0: nothing was classified
        pred_rows.append(
            {
                "val_set": gt.group.val_set,
                "corpus": gt.group.corpus,
                "frac": est,
                "ci_low": lo,
                "ci_high": hi,
                "n_tasks": len(gt.group.names),
                "n_predictable": int(round(est * len(gt.group.names))) if est == est else 0,
            }
        )
    t_flips = time.process_time()
    weights = {k: gt.weights for k, gt in groups.items()}
    corpora = sorted({c for _, c in groups})
    head = POOLED if POOLED in corpora else corpora[0]
    flips = detect_flips(groups, weights, cfg.flips, cfg.reference_val_set, head, scale)
    val_sets = sorted({v for v, _ in groups})
    gaps = corpus_gaps(groups, val_sets, sorted({c for _, c in groups}), cfg.flips)
    sens = sensitivity(
        [gt for gt in headline if not unclassified[(gt.group.val_set, gt.group.corpus)]],
        cfg.classify,
    )
    extrap, loss_fits = _extrapolate(finals, cfg, val_sets)
    tables = {
        "trends": trend_df,
        "flips": flips,
        "fits": _flagged(pd.DataFrame(fit_rows + loss_fits, columns=FIT_COLUMNS), cfg),
        "extrapolation": extrap,
        "predictable": pd.DataFrame(pred_rows),
        "sensitivity": sens,
        "gaps": gaps.drop(columns=["boot"]) if not gaps.empty else gaps,
    }
    res = AnalysisResults(cfg, table, points, groups, headline, tables)
    res.flip_notes = notes
    res.flip_cpu_s = time.process_time() - t_flips
    return res


def _scales(groups: dict[tuple[str, str], GroupTrends]) -> tuple[dict[str, bool], list[str]]:
    """Which x-axes are scales (analysis.flips.evidence.axis_falls), judged on each
    validation set's widest group, and one report line per x-axis that is not."""
    scale, notes = {}, []
    for v in sorted({v for v, _ in groups}):
        if v in AXES:  # compute and parameters order models by construction
            scale[v] = True
            continue
        g = max((gt.group for (vv, _), gt in groups.items() if vv == v), key=lambda g: g.n)
        scale[v] = axis_falls(g.x, g.n_params, g.run_corpus)
        if not scale[v]:
            notes.append(
                f"`{v}` does not fall with model size within every corpus: it is no scale "
                "for these models, so no trend is classified against it and no flip uses it "
                "(trends.csv: `not_a_scale`)."
            )
    return scale, notes


def _flagged(fits: pd.DataFrame, cfg: AnalysisConfig) -> pd.DataFrame:
    """fits.csv with its `flag` column (analysis.laws.fit_quality): bound hits, R² <= 0."""
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
    beds = testbeds.of_table(table)
    jobs = [("testbed backtest", b.backtest) for b in beds if b.backtest is not None]
    jobs.append(("leave-largest-out", leave_largest_out))
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
    published = {}
    for b in beds:
        published.update(b.published.get("extrapolation_rel_error", {}))
    extrap = with_published(extrap, table, published)
    return extrap, fits


def _write(out_dir: Path, res: AnalysisResults) -> list[Path]:
    tdir = out_dir / "tables"
    # runs.csv is the readable copy of the final checkpoints; runs.parquet holds every row
    files = [
        io.write_parquet(tdir / "runs.parquet", res.runs_table()),
        io.write_csv(tdir / "runs.csv", res.final_runs[list(COLUMNS)]),
    ]
    for name, df in res.written():
        files.append(io.write_csv(tdir / f"{name}.csv", df))
    files.append(
        io.write_text(out_dir / "analysis_config.json", json.dumps(res.cfg.to_dict(), indent=2))
    )
    msgs = res.warnings
    files.append(io.write_text(tdir / "warnings.txt", "\n".join(msgs) + ("\n" if msgs else "")))
    return files


def run_sources(
    names: list[str],
    cfg: AnalysisConfig,
    out: Path,
    path: str | None = None,
    overwrite: bool = True,
) -> dict[str, AnalysisSummary]:
    """Analyse every testbed in `names` into `<out>/<name>/`; summary when several
    (`overwrite`: as `analyze`)."""
    from analysis.report.summary import write_summary

    out = Path(out)
    beds = {name: testbeds.get(name) for name in names}  # unknown names fail before any work
    summaries = {}
    for name, bed in beds.items():
        t0 = time.time()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", AnalysisWarning)
            table = bed.load(path if len(names) == 1 else None)
        sub = out / name if len(names) > 1 else out
        summaries[name] = analyze(
            table, sub, testbeds.settings_for(name, cfg), _caught(caught), overwrite
        )
        summaries[name].seconds = time.time() - t0  # import + analysis
    if len(names) > 1:
        with staged(out, SUMMARY_ENTRIES, marker_in="summary") as stage:
            write_summary(out, summaries, stage)
    return summaries


def plot(out_dir: Path, plot_options: dict | None = None) -> list[Path]:
    """Regenerate every figure from the tables in `out_dir` (no refitting); `plot_options`
    override the saved `analysis.plot` settings (dpi, formats)."""
    from analysis.report.figures import plot_all

    require_complete(Path(out_dir))  # never redraw from a half-written or mixed output
    return plot_all(Path(out_dir), plot_options)
