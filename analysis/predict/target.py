"""One named target: every method's prediction and calibrated interval per task, beside
the default method's backtest error on the same runs and the task's trend category
(`harness predict`).

The fits use every run of the ladder below the target (for a shipped testbed: the runs
within its internal limit, so the OLMo targets are predicted from the 190M-3B ladder); the
rolling-origin backtest of the same runs (`backtest.rolling_origin`) chooses the default
method and the ensemble and calibrates each method's interval width.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from analysis.errors import AnalysisError
from analysis.predict.backtest import (
    ENSEMBLE,
    ensemble_rows,
    internal_max,
    ladders,
    predict_all,
    rolling_origin,
)
from analysis.predict.ladder import Ladder
from analysis.predict.methods import Settings
from analysis.predict.tables import with_category

MIN_TRAIN_RUNS = 4
MIN_TRAIN_SIZES = 2


@dataclass
class TargetPrediction:
    """Per-task rows (`rows`), the ladder fitted, curves for the figures, and notes."""

    rows: pd.DataFrame
    ladder: Ladder
    target: dict
    default: str
    curves: dict = field(default_factory=dict)  # method -> (C path (k,), acc (T, k))


def _train_ladder(table, testbed, s, accuracy_metric, val_set, N, D, corpus):
    lads = ladders(table, accuracy_metric, val_set, s)
    if not lads:
        raise AnalysisError("runs: no ladder with accuracies in these runs")
    if corpus is not None:
        lads = [(c, lad) for c, lad in lads if c == corpus]
        if not lads:
            raise AnalysisError(f"corpus: '{corpus}' not in these runs")
    elif len(lads) > 1:
        names = ", ".join(c for c, _ in lads)
        raise AnalysisError(f"corpus: required, the runs have several ({names})")
    corpus, lad = lads[0]
    source = str(table["source"].dropna().iloc[0])
    limit = internal_max(source, lad) if source != "harness" else float("inf")
    keep = lad.runs[(lad.runs["N"] <= limit) & (lad.runs["N"] < N)]
    largest = lad.runs.loc[lad.runs["N"] <= limit, "N"].max()
    if N < largest or 6 * N * D <= lad.runs.loc[keep.index, "C"].max():
        raise AnalysisError(
            f"target.params: {N:.3g} parameters x {D:.3g} tokens is not larger than the "
            f"runs (largest {largest:.3g} parameters); predict a larger model"
        )
    if len(keep) < MIN_TRAIN_RUNS or keep["size"].nunique() < max(MIN_TRAIN_SIZES, 3):
        raise AnalysisError(
            f"runs: {len(keep)} runs of {keep['size'].nunique()} sizes below the target; "
            "a prediction needs at least 4 runs of 3 sizes"
        )
    return corpus, lad, lad.subset(keep.index)


def predict_target(
    table: pd.DataFrame,
    testbed: str,
    N: float,
    D: float,
    *,
    target_name: str = "",
    tasks: list[str] | None = None,
    corpus: str | None = None,
    categories: pd.DataFrame | None = None,
    s: Settings | None = None,
    accuracy_metric: str = "acc",
    val_set: str | None = None,
) -> TargetPrediction:
    """Predictions at (N, D) for every (or the named) task; an unknown task, a target not
    larger than the runs or too few runs raise AnalysisError (one line)."""
    s = s or Settings()
    corpus, full, train = _train_ladder(table, testbed, s, accuracy_metric, val_set, N, D, corpus)
    unknown = [t for t in tasks or [] if t not in train.tasks]
    if unknown:
        raise AnalysisError(
            f"task: '{unknown[0]}' not in these runs (known: {', '.join(train.tasks[:12])}"
            + (", ..." if len(train.tasks) > 12 else "")
            + ")"
        )
    bt, info = rolling_origin(table, testbed, s, accuracy_metric, val_set)
    bt = bt[bt["corpus"] == corpus]
    res = predict_all(train, np.array([N]), np.array([D]), s)
    cmax = train.runs["C"].max()
    rows = []
    for method, (pred, lo, hi) in res.items():
        for i, task in enumerate(train.tasks):
            actual = full.acc.at[target_name, task] if target_name in full.acc.index else np.nan
            rows.append(
                {
                    "testbed": testbed,
                    "corpus": corpus,
                    "origin": train.sizes()[-1],
                    "target": target_name or f"N={N:.3g},D={D:.3g}",
                    "task": task,
                    "method": method,
                    "predicted": pred[i, 0],
                    "lo_hw": lo[i, 0],
                    "hi_hw": hi[i, 0],
                    "actual": actual,
                    "compute_ratio": 6 * N * D / cmax,
                    "n_train": len(train.runs),
                    "split": "target",
                }
            )
    df = pd.DataFrame(rows)
    df = pd.concat([df, ensemble_rows(df, info.get("members", []))], ignore_index=True)
    scale = bt.groupby("method")["scale"].first() if not bt.empty else pd.Series(dtype=float)
    cal = bt.groupby("method")["calibrated"].first() if not bt.empty else pd.Series(dtype=bool)
    df["scale"] = df["method"].map(scale).fillna(1.0)
    df["calibrated"] = df["method"].map(cal).fillna(False).astype(bool)
    df["lo"] = np.clip(df["predicted"] - df["scale"] * df["lo_hw"], 0, 1)
    df["hi"] = np.clip(df["predicted"] + df["scale"] * df["hi_hw"], 0, 1)
    default = info.get("default", ENSEMBLE)
    if default not in set(df["method"]):
        default = df["method"].iloc[0]
    df["default"] = df["method"] == default
    d_err = bt[bt["default"]].groupby("task")["abs_error"].median() if not bt.empty else {}
    df["default_backtest_error"] = df["task"].map(d_err)
    df["max_backtest_ratio"] = float(bt["compute_ratio"].max()) if not bt.empty else np.nan
    df["category"] = _category(df, categories, corpus)
    if tasks:
        df = df[df["task"].isin(tasks)]
    curves = _curves(train, N, D, s, list(res))
    return TargetPrediction(
        df.reset_index(drop=True),
        train,
        {"N": N, "D": D, "C": 6 * N * D, "name": target_name, "corpus": corpus},
        default,
        curves,
    )


def _category(df: pd.DataFrame, cats: pd.DataFrame | None, corpus: str) -> pd.Series:
    if cats is None or cats.empty:
        return pd.Series("unclassified", index=df.index)
    return with_category(df.assign(corpus=corpus), cats)


def _curves(train: Ladder, N: float, D: float, s: Settings, methods: list[str]) -> dict:
    """Each method's predictions along the straight path in log (N, D) from the largest
    training run to the target (for the per-task figures)."""
    top = train.runs.loc[train.runs["C"].idxmax()]
    f = np.linspace(0.0, 1.0, 12)
    Np = np.exp(np.log(top["N"]) + f * (np.log(N) - np.log(top["N"])))
    Dp = np.exp(np.log(top["D"]) + f * (np.log(D) - np.log(top["D"])))
    res = predict_all(train, Np, Dp, s, methods=[m for m in methods if m != "naive"])
    return {m: (6 * Np * Dp, p) for m, (p, _, _) in res.items()}


def warnings_for(row: pd.Series) -> list[str]:
    """One-line warnings of a task's default prediction."""
    out = []
    if row["category"] != "predictable":
        out.append(f"{row['task']}: classified {row['category']}, not predictable")
    ratio, reach = row["compute_ratio"], row["max_backtest_ratio"]
    if np.isfinite(reach) and ratio > reach:
        out.append(
            f"{row['task']}: extrapolates {ratio:.0f}x in compute, further than any "
            f"backtest reached ({reach:.0f}x)"
        )
    return out
