"""Figures of the prediction backtests (drawn from predictions.csv) and of one prediction
per task (`harness predict`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from analysis.output import files as io
from analysis.report import style


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    style.use()
    return plt


def _save(fig, path: Path, dpi: int = style.DPI) -> Path:
    io.atomic_write(path, lambda p: fig.savefig(p, dpi=dpi, format="png"))
    _plt().close(fig)
    return path


def error_vs_ratio(pred: pd.DataFrame, path: Path) -> Path | None:
    """Absolute error against the extrapolation's compute ratio (target compute over the
    largest training run's), one line per method: the median in log-spaced ratio bins."""
    d = pred[np.isfinite(pred["abs_error"].astype(float))]
    if d.empty:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.5, 4))
    lr = np.log10(d["compute_ratio"].astype(float).clip(lower=1.0))
    edges = np.unique(np.quantile(lr, np.linspace(0, 1, 9)))
    for method, sub in d.groupby("method"):
        b = np.clip(np.digitize(lr[sub.index], edges[1:-1]), 0, len(edges) - 2)
        med = sub["abs_error"].groupby(b).median()
        x = [10 ** ((edges[i] + edges[i + 1]) / 2) for i in med.index]
        # markers on every method: a method with one ratio bin is a point, not an empty line
        default = bool(sub["default"].any())
        ax.plot(
            x,
            med.to_numpy(),
            "-o",
            ms=5 if default else 3,
            lw=2.2 if default else 1.2,
            label=method,
        )
    ax.set_xscale("log")
    from matplotlib.ticker import NullFormatter

    ax.xaxis.set_minor_formatter(NullFormatter())  # minor labels overlap on a short range
    ax.set_xlabel("compute ratio (target / largest training run)")
    ax.set_ylabel("median |predicted - actual| accuracy")
    ax.set_title(f"{d['testbed'].iloc[0]}: prediction error vs extrapolation", fontsize=10)
    ax.legend(loc="best")
    fig.tight_layout()
    return _save(fig, path)


def error_by_category(pred: pd.DataFrame, category: pd.Series, path: Path) -> Path | None:
    """The default method's absolute errors per trend category (box plot), with each
    category's interval coverage in its label."""
    d = pred[pred["default"].astype(bool) & np.isfinite(pred["abs_error"].astype(float))]
    if d.empty:
        return None
    d = d.assign(category=category.reindex(d.index))
    groups = [(c, g) for c, g in d.groupby("category")]
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    ax.boxplot([g["abs_error"].to_numpy() for _, g in groups], showfliers=True)
    ax.set_xticks(range(1, len(groups) + 1))
    ax.set_xticklabels(
        [f"{c}\nn={len(g)}, cov {g['covered'].mean():.0%}" for c, g in groups],
        fontsize=style.MIN_FONT,
    )
    ax.set_ylabel("|predicted - actual| (default method)")
    ax.set_title(f"{d['testbed'].iloc[0]}: error by trend category (every fold)", fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def task_figure(
    task: str,
    runs: pd.DataFrame,
    acc: pd.Series,
    curves: dict[str, tuple[np.ndarray, np.ndarray]],
    target: tuple[float, dict[str, tuple[float, float, float]]],
    path: Path,
    actual: float = float("nan"),
) -> Path:
    """One task: the runs' accuracy against compute, each method's curve along the path
    to the target, the target's predictions with their intervals (and its actual accuracy
    when the target is a run of the table)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.scatter(runs["C"], acc.reindex(runs.index), c="k", s=14, label="runs", zorder=3)
    for method, (c, y) in curves.items():
        ax.plot(c, style.accuracy(y), lw=1, label=method)  # an accuracy stays in [0, 1]
    ct, preds = target
    for k, (method, (p, lo, hi)) in enumerate(preds.items()):
        x = ct * (1 + 0.04 * k)
        ax.errorbar([x], [p], yerr=[[p - lo], [hi - p]], fmt="o", ms=4, capsize=3)
        ax.annotate(
            method, (x, p), fontsize=style.MIN_FONT, xytext=(3, 0), textcoords="offset points"
        )
    if np.isfinite(actual):
        ax.scatter([ct], [actual], marker="*", s=120, c="r", zorder=4, label="actual")
    ax.set_xscale("log")
    ax.set_xlabel("compute (6ND FLOPs)")
    ax.set_ylabel("accuracy")
    ax.set_title(task, fontsize=10)
    ax.legend(loc="best")
    fig.tight_layout()
    return _save(fig, path)


def cutoff_scatter(pred: pd.DataFrame, path: Path) -> Path | None:
    """The compute-cutoff protocol's held-out predictions against the actual scores, one
    panel per method, with each method's mean error and 80% coverage in its title."""
    d = pred[
        pred["testbed"].astype(str).str.endswith(":cutoff")
        & (pred["split"] == "held_out")
        & np.isfinite(pred["actual"].astype(float))
    ]
    if d.empty:
        return None
    plt = _plt()
    methods = sorted(d["method"].unique())
    fig, axes = plt.subplots(1, len(methods), figsize=(3.3 * len(methods), 3.4), squeeze=False)
    for ax, m in zip(axes[0], methods, strict=True):
        s = d[d["method"] == m]
        yerr = np.vstack([s["predicted"] - s["lo"], s["hi"] - s["predicted"]]).clip(min=0)
        ax.errorbar(s["actual"], s["predicted"], yerr=yerr, fmt=".", ms=3, lw=0.4, alpha=0.5)
        ax.plot([0, 1], [0, 1], "k--", lw=0.8)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("actual accuracy")
        ax.set_title(
            f"{m}{' (default)' if s['default'].any() else ''}\n|err| {s['abs_error'].mean():.3f}, "
            f"coverage {s['covered'].mean():.0%}",
            fontsize=8,
        )
    axes[0][0].set_ylabel("predicted (80% interval)")
    fig.suptitle(f"{d['testbed'].iloc[0]}: models above the compute cutoff", fontsize=9)
    fig.tight_layout()
    return _save(fig, path)
