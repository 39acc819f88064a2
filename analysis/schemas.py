"""The analysis outputs' schemas, in one place: which tables `analyze` writes under
`<out>/tables/`, in what order, and the columns of the ones every stage shares. The writer
(`analysis.pipeline`), the report, the figures and the summary all read these names."""

from __future__ import annotations

#: fits.csv: every fitted law (downstream laws per task, loss and error laws of backtests)
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
    "x_min",  # loss laws: smallest and largest training FLOPs of the fitted runs
    "x_max",
]

#: flips.csv: one row per setting change that flips a task's trend (point estimates differ)
FLIP_COLUMNS = [
    "task",
    "setup",
    "setting",
    "context",
    "from",
    "to",
    "kind",
    "effect",
    "effect_from",
    "ci_low",
    "ci_high",
    "p_value",
    "level",  # verdict | reversal | reclassification | trajectory (analysis.flips.evidence)
    "effect_size",  # verdict: change in the verdict's bootstrap probability; reversal: |gap change|
    "q_value",  # Benjamini-Hochberg over every test the analysis ran (flip_tests.csv)
]

#: extrapolation.csv: predicted vs actual for every backtest target
EXTRAP_COLUMNS = [
    "backtest",
    "corpus",
    "target",
    "run_id",
    "quantity",
    "law",
    "predicted",
    "ci_low",
    "ci_high",
    "actual",
    "rel_error",
    "published_rel_error",
    "n_train",
    "flag",
]

#: tables every analysis writes (after runs.parquet / runs.csv), in this order
CORE_TABLES = (
    "trends",
    "flips",
    "fits",
    "extrapolation",
    "predictable",
    "sensitivity",
    "gaps",
    "flip_rates",
)
#: agreement with published labels, written when not empty
CALIBRATION_TABLES = ("calibration", "calibration_metrics", "labels_by_corpus")
#: analyses only some tables allow, written when computed
EXTRA_TABLES = (
    "predictable_points",
    "predictable_compute",
    "two_step",
    "variance",
    "task_axis_predictable",
    "task_axis_trends",
    "capability_predictable",
    "capability_trends",
    "capability_axis",
    "seed_spread",
)
#: what the figures are drawn from (tables/), said by `harness plot`
TABLES_READ = ("runs.parquet", "trends.csv", "flips.csv", "fits.csv", "extrapolation.csv")
