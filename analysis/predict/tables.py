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


#: testbed suffix -> what a prediction was fitted on besides its own ladder (`pooling`)
POOLING = {
    ":with_others": "with_other_families",  # analysis.predict.families
    ":cutoff": "all_families_below_cutoff",  # analysis.predict.cutoff
}
ALONE = "alone"


def pooling(testbed: pd.Series) -> pd.Series:
    """Each row's `pooling`: `alone` (its own ladder: one corpus or family) or POOLING's."""
    tb = testbed.astype(str)
    out = pd.Series(ALONE, index=testbed.index)
    for suffix, name in POOLING.items():
        out[tb.str.endswith(suffix)] = name
    return out


def ladder_rows(pred: pd.DataFrame) -> pd.DataFrame:
    """The rows fitted on each ladder alone (the figures of the ladders' backtests)."""
    return pred[pooling(pred["testbed"]) == ALONE] if not pred.empty else pred


def method_table(pred: pd.DataFrame) -> pd.DataFrame:
    """Per testbed, split and method: median and mean absolute error, 80% coverage, rows;
    `pooling` says what the fits saw besides the predicted ladder."""
    if pred.empty:
        return pd.DataFrame(
            columns=["testbed", "pooling", "split", "method", "default", "median_abs_error"]
            + ["mean_abs_error", "coverage", "n", "calibrated"]
        )
    ok = pred[np.isfinite(pred["actual"].astype(float))]
    ok = ok.assign(pooling=pooling(ok["testbed"]))
    g = ok.groupby(["testbed", "pooling", "split", "method"])
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


POOLING_COLUMNS = ["testbed", "pooling", "targets", "method", "default", "median_abs_error"]
POOLING_COLUMNS += ["mean_abs_error", "coverage", "n", "n_families", "families"]


def _held_stats(d: pd.DataFrame) -> pd.DataFrame:
    g = d.groupby("method")
    return g.agg(
        default=("default", "max"),
        median_abs_error=("abs_error", "median"),
        mean_abs_error=("abs_error", "mean"),
        coverage=("covered", "mean"),
        n=("abs_error", "size"),
        n_families=("corpus", "nunique"),
        families=("corpus", lambda c: " ".join(sorted(set(c)))),
    ).reset_index()


def pooling_table(pred: pd.DataFrame) -> pd.DataFrame:
    """prediction_pooling.csv: held-out errors per method of the per-family backtests alone
    and with the other families' data (analysis.predict.families), the latter on all its
    targets and on the alone backtest's own (corpus, origin, target, task) keys, with the
    families each covers; empty without `with_other_families` rows."""
    if pred.empty:
        return pd.DataFrame(columns=POOLING_COLUMNS)
    ok = pred[(pred["split"] == "held_out") & np.isfinite(pred["actual"].astype(float))]
    pool = pooling(ok["testbed"])
    key = ["corpus", "origin", "target", "task"]
    parts = []
    for tb in ok.loc[pool == POOLING[":with_others"], "testbed"].unique():
        base = str(tb)[: -len(":with_others")]
        alone, wo = ok[ok["testbed"] == base], ok[ok["testbed"] == tb]
        matched = wo.merge(alone[key].drop_duplicates(), on=key)
        for d, name, targets in (
            (alone, ALONE, "own"),
            (wo, POOLING[":with_others"], "all"),
            (matched, POOLING[":with_others"], "alone's"),
        ):
            if not d.empty:
                parts.append(_held_stats(d).assign(testbed=base, pooling=name, targets=targets))
    if not parts:
        return pd.DataFrame(columns=POOLING_COLUMNS)
    out = pd.concat(parts, ignore_index=True)[POOLING_COLUMNS]
    return out.sort_values(["testbed", "pooling", "targets", "median_abs_error"]).reset_index(
        drop=True
    )
