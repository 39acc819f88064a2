"""Tables of the prediction backtests: per-method errors and coverage, the OLMo held-out
targets beside the published chain, and errors by the task's trend category."""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.testbeds.olmo_ladder.loader import PUBLISHED_13B

#: published mean absolute error of the authors' chained predictions over the 8 tasks
#: (13B: their chained_main.csv, `analysis.laws.two_step.PUBLISHED_13B`; 7B: the paper's ~0.038)
PUBLISHED_TASKS = list(PUBLISHED_13B)
PUBLISHED_MEAN_ABS_ERROR = {
    "13B-5T": float(np.mean([abs(p - a) for a, p in PUBLISHED_13B.values()])),
    "7B-4T": 0.038,
}
#: OLMo origins reported as their own rows: the published rungs, and the 3B added
OLMO_ORIGINS = {"1B": "190M-1B (published rungs)", "3B": "190M-3B (3B added)"}


def method_table(pred: pd.DataFrame) -> pd.DataFrame:
    """Per testbed, split and method: median and mean absolute error, 80% coverage, rows."""
    if pred.empty:
        return pd.DataFrame(
            columns=["testbed", "split", "method", "default", "median_abs_error"]
            + ["mean_abs_error", "coverage", "n", "calibrated"]
        )
    ok = pred[np.isfinite(pred["actual"].astype(float))]
    g = ok.groupby(["testbed", "split", "method"])
    out = g.agg(
        default=("default", "max"),
        median_abs_error=("abs_error", "median"),
        mean_abs_error=("abs_error", "mean"),
        coverage=("covered", "mean"),
        n=("abs_error", "size"),
        calibrated=("calibrated", "max"),
    ).reset_index()
    return out.sort_values(["testbed", "split", "median_abs_error"]).reset_index(drop=True)


def olmo_targets(pred: pd.DataFrame) -> pd.DataFrame:
    """OLMo held-out targets: mean absolute error over the 8 published tasks per origin,
    target and method, beside the published chain's."""
    p = pred[
        (pred["testbed"] == "olmo_ladder")
        & pred["task"].isin(PUBLISHED_TASKS)
        & pred["target"].isin(list(PUBLISHED_MEAN_ABS_ERROR))
        & pred["origin"].isin(list(OLMO_ORIGINS))
    ]
    if p.empty:
        return pd.DataFrame()
    g = p.groupby(["origin", "target", "method"])
    out = g.agg(
        default=("default", "max"),
        mean_abs_error=("abs_error", "mean"),
        coverage=("covered", "mean"),
        n_tasks=("task", "nunique"),
    ).reset_index()
    out["fit_on"] = out["origin"].map(OLMO_ORIGINS)
    out["published_mean_abs_error"] = out["target"].map(PUBLISHED_MEAN_ABS_ERROR)
    return out.sort_values(["origin", "target", "mean_abs_error"]).reset_index(drop=True)


def categories(trends: pd.DataFrame, val_set: str) -> pd.DataFrame:
    """(corpus, task) -> category on `val_set` (rows of trends.csv)."""
    if trends is None or trends.empty:
        return pd.DataFrame(columns=["corpus", "task", "category"])
    t = trends[trends["val_set"] == val_set].drop(columns=["task"], errors="ignore")
    return t.rename(columns={"name": "task"})[["corpus", "task", "category"]].drop_duplicates(
        ["corpus", "task"]
    )


def with_category(pred: pd.DataFrame, cats: pd.DataFrame) -> pd.Series:
    """Each prediction's task category: its corpus's when classified, else the pooled one."""
    own = pred.merge(cats, on=["corpus", "task"], how="left")["category"]
    pooled = cats.drop_duplicates("task").set_index("task")["category"]
    pooled = cats[cats["corpus"] == "all"].set_index("task")["category"].combine_first(pooled)
    fill = pred["task"].map(pooled).reset_index(drop=True)
    return own.fillna(fill).fillna("unclassified").set_axis(pred.index)


def category_table(pred: pd.DataFrame, cats: pd.DataFrame) -> pd.DataFrame:
    """The default method's errors and coverage per split and trend category."""
    d = pred[pred["default"].astype(bool) & np.isfinite(pred["actual"].astype(float))]
    if d.empty:
        return pd.DataFrame(
            columns=["testbed", "split", "category", "median_abs_error", "mean_abs_error"]
            + ["coverage", "n", "tasks"]
        )
    d = d.assign(category=with_category(d, cats))
    g = d.groupby(["testbed", "split", "category"])
    return g.agg(
        median_abs_error=("abs_error", "median"),
        mean_abs_error=("abs_error", "mean"),
        coverage=("covered", "mean"),
        n=("abs_error", "size"),
        tasks=("task", "nunique"),
    ).reset_index()


def predictable_vs_rest(cat_table: pd.DataFrame) -> pd.DataFrame:
    """Per testbed and split: error and coverage of `predictable` tasks against the rest."""
    if cat_table.empty:
        return cat_table
    c = cat_table.assign(
        group=np.where(cat_table["category"] == "predictable", "predictable", "other")
    )
    c = c.assign(w_err=c["mean_abs_error"] * c["n"], w_cov=c["coverage"] * c["n"])
    g = c.groupby(["testbed", "split", "group"])[["w_err", "w_cov", "n"]].sum()
    g["mean_abs_error"] = g["w_err"] / g["n"]
    g["coverage"] = g["w_cov"] / g["n"]
    return g[["mean_abs_error", "coverage", "n"]].reset_index()


def summary_row(pred: pd.DataFrame) -> pd.DataFrame:
    """One row per testbed and method (held-out folds): errors and coverage, the default
    marked, naive beside it (summary.md across testbeds)."""
    m = method_table(pred)
    return m[m["split"] == "held_out"].drop(columns=["split"]).reset_index(drop=True)
