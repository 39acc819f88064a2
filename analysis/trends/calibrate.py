"""Calibrating the trend rules against published labels, with honest cross-validation.

The paper (Lourie et al. 2025) labelled each Gadre et al. task by eye, looking at all three
corpora together against C4 validation loss. Given such labels for some tasks, the rules'
thresholds (analysis.trends.classify) are tuned by an exhaustive search over CALIBRATION_GRID:

  score(thresholds) = six-way agreement + 0.5 * binary (predictable vs not) agreement

on the labelled tasks, subject to a prior on the share of *all* tasks called predictable
(the paper's published count, 18 of 46, within `prior_tolerance` tasks; it uses no
unpublished label). Ties go to the threshold set whose grid neighbours score best on
average, so the choice sits on a plateau of good agreement rather than on a knife edge.

The agreement reported is leave-one-out: for every labelled task the whole search is rerun
without it and the held-out task is classified with the thresholds found. Only this
cross-validated figure says how the rules would do on tasks they were not tuned on.
"""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.config import ClassifyConfig
from analysis.errors import AnalysisError
from analysis.groups.build import Group
from analysis.trends.classify import CATEGORIES, LABELS, apply_rules, trend_features

#: thresholds searched; the others keep their configured value (snr_min stays at 0, the
#: range that noise alone gives: a principled point, not a tuned one)
CALIBRATION_GRID: dict[str, tuple[float, ...]] = {
    "snr_pred": (1.2, 1.5, 1.8, 2.0, 2.2, 2.4, 2.6, 3.0, 3.5, 4.0),
    "dir_frac": (0.2, 0.3, 0.4, 0.5, 0.6, 0.7),
    "nm_frac": (0.3, 0.4, 0.5, 0.6, 0.7, 0.8),
    "snr_nm": (0.5, 0.8, 1.2, 1.6, 2.0, 2.5, 3.0),
    "plateau_frac": (0.05, 0.1, 0.2, 0.3, 0.4),
}
BINARY_WEIGHT = 0.5


def read_labels(path: Path | str, known_tasks: list[str] | None = None) -> pd.Series:
    """task -> category from a TSV with columns `task` and `category` (# comments allowed).

    An unknown category, or a task the data does not have, is a one-line AnalysisError.
    """
    path = Path(path)
    try:
        df = pd.read_csv(path, sep="\t", comment="#", dtype=str)
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise AnalysisError(f"labels: cannot read '{path}': {exc}") from None
    missing = {"task", "category"} - set(df.columns)
    if missing:
        raise AnalysisError(f"labels: '{path}' lacks column(s) {sorted(missing)}")
    df = df.dropna(how="all")
    for row in df.itertuples(index=False):
        if row.category not in CATEGORIES:
            raise AnalysisError(
                f"labels: unknown category '{row.category}' for task "
                f"'{row.task}' in {path} (known: {', '.join(CATEGORIES)})"
            )
        if known_tasks is not None and row.task not in known_tasks:
            raise AnalysisError(f"labels: unknown task '{row.task}' in {path}")
    if df["task"].duplicated().any():
        dup = df.loc[df["task"].duplicated(), "task"].iloc[0]
        raise AnalysisError(f"labels: task '{dup}' labelled twice in {path}")
    return df.set_index("task")["category"]


def cohen_kappa(a: np.ndarray, b: np.ndarray) -> float:
    """Cohen's kappa of two label vectors (NaN when chance agreement is perfect)."""
    a, b = np.asarray(a), np.asarray(b)
    po = float(np.mean(a == b))
    pe = sum(float(np.mean(a == c)) * float(np.mean(b == c)) for c in set(a) | set(b))
    return (po - pe) / (1 - pe) if pe < 1 else float("nan")


@dataclass
class Calibration:
    """The outcome of calibrating on one group (per-task table, thresholds, agreement)."""

    tasks: pd.DataFrame  # task, label, cv (left-out prediction), configured, tuned
    tuned: dict[str, float]  # thresholds the search picks on all labelled tasks
    metrics: dict[str, float] = field(default_factory=dict)

    def confusion(self, column: str = "cv") -> pd.DataFrame:
        """Label (rows) by prediction (columns), over the six categories."""
        return pd.crosstab(
            pd.Categorical(self.tasks["label"], CATEGORIES),
            pd.Categorical(self.tasks[column], LABELS),
            rownames=["label"],
            colnames=["rules"],
            dropna=False,
        )


def _agreement(pred: np.ndarray, label: np.ndarray) -> dict[str, float]:
    p, y = pred == "predictable", label == "predictable"
    return {
        "six_way": float(np.mean(pred == label)),
        "binary": float(np.mean(p == y)),
        "kappa": cohen_kappa(p, y),
        "n": int(label.size),
    }


def _grid(cfg: ClassifyConfig, grid: dict[str, tuple[float, ...]]):
    keys = list(grid)
    idx = np.array(list(itertools.product(*(range(len(grid[k])) for k in keys))))
    values = {k: np.asarray(grid[k], float)[idx[:, i]][:, None] for i, k in enumerate(keys)}
    return keys, values, dataclasses.replace(cfg, **values)


def calibrate(
    group: Group,
    labels: pd.Series,
    cfg: ClassifyConfig,
    grid: dict[str, tuple[float, ...]] | None = None,
    prior_frac: float | None = 18 / 46,
    prior_tolerance: int = 2,
) -> Calibration:
    """Tune the thresholds on the labelled tasks of `group` and cross-validate the tuning."""
    from scipy.ndimage import uniform_filter

    grid = grid or CALIBRATION_GRID
    unknown = sorted(set(grid) - {f.name for f in dataclasses.fields(cfg)})
    if unknown:
        raise AnalysisError(f"calibration grid: unknown threshold '{unknown[0]}'")
    names = list(group.names)
    lab = labels[[t for t in labels.index if t in names]]
    if len(lab) < 3:
        raise AnalysisError(f"labels: only {len(lab)} labelled tasks in the data; need >= 3")
    keys, values, gcfg = _grid(cfg, grid)
    ones = np.ones((1, group.n))
    feats = trend_features(group.x, group.Y, ones, np.full((1, len(names)), np.nan), cfg)
    n_distinct = np.isfinite(group.Y).sum(0)[None, :].astype(float)
    codes = apply_rules(feats, gcfg, n_distinct)  # (C, T)
    allowed = np.ones(codes.shape[0], bool)
    if prior_frac is not None:
        n_pred = (codes == LABELS.index("predictable")).sum(1)
        target = round(prior_frac * len(names))  # a count of tasks (0.3913 of 46 -> 18)
        allowed = np.abs(n_pred - target) <= prior_tolerance
        if not allowed.any():
            allowed[:] = True  # the prior cannot be met on this data: ignore it
    col = np.array([names.index(t) for t in lab.index])
    y = np.array([LABELS.index(c) for c in lab])
    sub = codes[:, col]
    six = sub == y[None]
    binary = (sub == 0) == (y == 0)[None]
    shape = [len(grid[k]) for k in keys]

    def pick(train: np.ndarray) -> int:
        score = six[:, train].mean(1) + BINARY_WEIGHT * binary[:, train].mean(1)
        score = np.where(allowed, score, -1.0)
        smooth = uniform_filter(score.reshape(shape), size=3, mode="nearest").ravel()
        best = np.flatnonzero(score >= score.max() - 1e-12)
        return int(best[np.argmax(smooth[best])])

    cv = np.empty(len(y), dtype=int)
    for i in range(len(y)):
        train = np.ones(len(y), bool)
        train[i] = False
        cv[i] = sub[pick(train), i]
    full = pick(np.ones(len(y), bool))
    configured = apply_rules(feats, cfg, n_distinct)[0, col]
    table = pd.DataFrame(
        {
            "task": lab.index,
            "label": lab.to_numpy(),
            "cv": [LABELS[c] for c in cv],
            "configured": [LABELS[c] for c in configured],
            "tuned": [LABELS[c] for c in sub[full]],
            **{
                k: np.round(getattr(feats, k)[0, col], 3)
                for k in ("snr", "net", "rise", "drop", "plateau")
            },
        }
    )
    metrics = {
        f"cv_{k}": v
        for k, v in _agreement(table["cv"].to_numpy(), table["label"].to_numpy()).items()
    }
    metrics |= {
        f"configured_{k}": v
        for k, v in _agreement(table["configured"].to_numpy(), table["label"].to_numpy()).items()
    }
    tuned = {k: float(values[k][full, 0]) for k in keys}
    return Calibration(table, tuned, metrics)


def labels_by_corpus(trends: pd.DataFrame, val_set: str) -> pd.DataFrame:
    """Per task: the category in each corpus and pooled, and whether the corpora agree."""
    sub = trends[trends["val_set"] == val_set]
    if sub.empty:
        return pd.DataFrame()
    wide = sub.pivot_table(index="name", columns="corpus", values="category", aggfunc="first")
    corpora = [c for c in wide.columns if c != "all"]
    wide["corpora_agree"] = wide[corpora].nunique(axis=1) == 1
    return wide.reset_index().rename_axis(columns=None)


def calibration_tables(
    path: Path | None, trends: dict, trend_df: pd.DataFrame, cfg
) -> dict[str, pd.DataFrame]:
    """The calibration tables for `analyze` (only labels_by_corpus without labels).

    `path` is the labels file (analysis.testbeds.labels_for resolves the setting);
    `trends` maps (val_set, corpus) -> GroupTrends; the labels are checked on the pooled
    group of the reference validation set, as the paper looked at its figures.
    """
    out = {"labels_by_corpus": labels_by_corpus(trend_df, cfg.reference_val_set)}
    keys = [k for k in trends if k[0] == cfg.reference_val_set]
    if path is None or not keys:
        return out
    key = next((k for k in keys if k[1] == "all"), sorted(keys)[0])
    group = trends[key].group
    labels = read_labels(path, None)
    unknown = [t for t in labels.index if t not in group.names]
    if unknown and cfg.calibration.labels != "auto":
        raise AnalysisError(f"labels: unknown task '{unknown[0]}' in {path}")
    labels = labels.drop(unknown)  # auto: a subset of the testbed checks what it has
    if len(labels) < 3:
        return out
    cal = calibrate(
        group,
        labels,
        cfg.classify,
        prior_frac=cfg.calibration.prior_predictable,
        prior_tolerance=cfg.calibration.prior_tolerance,
    )
    metrics = [{"metric": k, "value": v} for k, v in cal.metrics.items()]
    metrics += [{"metric": f"tuned_{k}", "value": v} for k, v in cal.tuned.items()]
    metrics += [
        {"metric": "labels_file", "value": Path(path).name},  # no local path in tables
        {"metric": "val_set", "value": key[0]},
        {"metric": "corpus", "value": key[1]},
    ]
    out["calibration"] = cal.tasks
    out["calibration_metrics"] = pd.DataFrame(metrics)
    return out
