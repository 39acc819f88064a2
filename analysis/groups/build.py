"""Final-checkpoint matrices: the table reshaped into (models x tasks) arrays per group.

A group is one validation set (the x-axis) and one corpus (or "all" corpora pooled):
x = that validation loss per model, Y = accuracy per model and task variant. Every fit,
classification and bootstrap in the analysis works on these arrays, which is what lets
the bootstrap be a matrix product with a (resamples x models) weight matrix.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis.errors import AnalysisError, warn

POOLED = "all"


@dataclass
class Group:
    """Arrays of one (val_set, corpus) group; n models, T task variants."""

    val_set: str
    corpus: str
    run_ids: np.ndarray  # (n,)
    run_corpus: np.ndarray  # (n,) corpus of each model (differs only when pooled)
    size: np.ndarray  # (n,)
    n_params: np.ndarray  # (n,)
    x: np.ndarray  # (n,) validation loss
    names: list[str]  # (T,) task variant names ("hellaswag", "mmlu@5shot")
    tasks: list[str]  # (T,) base task
    setups: list[str]  # (T,) setup variant, "" for default
    Y: np.ndarray  # (n, T) accuracy, NaN when missing
    S: np.ndarray  # (n, T) binomial standard error, NaN when unknown
    chance: np.ndarray  # (T,)
    X_task: np.ndarray | None = None  # (n, T) continuous task metric (bpb/logprob) or None
    task_metric: str = ""
    cluster: np.ndarray | None = None  # (n,) run of each point when points are checkpoints

    @property
    def n(self) -> int:
        return int(self.x.size)


def final_rows(table: pd.DataFrame) -> pd.DataFrame:
    """Rows of final checkpoints with finite values (NaN scores are warned about, dropped)."""
    fin = table[table["final"].fillna(False).astype(bool)]
    bad = ~np.isfinite(fin["value"].astype(float))
    for (run, name), _ in fin[bad].groupby(["run_id", "name"]):
        warn(f"run {run}: NaN value for {name}; left out")
    return fin[~bad]


def build_groups(
    table: pd.DataFrame,
    metric: str = "acc",
    task_metrics: tuple[str, ...] = ("bpb", "logprob"),
    min_corpus_models: int = 0,
) -> list[Group]:
    """One Group per (val_set, corpus) plus (val_set, "all") when there are >= 2 corpora;
    a corpus with fewer than `min_corpus_models` models is only part of the pooled group
    (many public model families have one or two sizes: no trend of their own)."""
    fin = final_rows(table)
    losses = fin[fin["kind"] == "val_loss"]
    tasks = fin[(fin["kind"] == "task") & (fin["metric"] == metric)]
    if losses.empty or tasks.empty:
        raise AnalysisError(
            f"no final-checkpoint {'validation losses' if losses.empty else metric + ' scores'}"
        )
    runs = fin.drop_duplicates("run_id").set_index("run_id")
    Y = tasks.pivot_table(index="run_id", columns="name", values="value", aggfunc="mean")
    S = tasks.pivot_table(index="run_id", columns="name", values="stderr", aggfunc="mean")
    S = S.reindex(index=Y.index, columns=Y.columns)
    meta = tasks.drop_duplicates("name").set_index("name")
    chance = tasks.groupby("name")["chance"].median().reindex(Y.columns)
    Xt, tm = None, ""
    for m in task_metrics:
        sub = fin[(fin["kind"] == "task") & (fin["metric"] == m)]
        if not sub.empty:
            Xt = sub.pivot_table(index="run_id", columns="name", values="value", aggfunc="mean")
            Xt, tm = Xt.reindex(index=Y.index, columns=Y.columns), m
            break
    corpora = sorted(runs["corpus"].dropna().unique())
    per_corpus = runs.loc[runs.index.isin(Y.index), "corpus"].value_counts()
    own = [c for c in corpora if per_corpus.get(c, 0) >= min_corpus_models]
    groups = []
    for vset, lv in losses.groupby("name"):
        x_all = lv.groupby("run_id")["value"].mean()
        for corpus in own + ([POOLED] if len(corpora) > 1 else []):
            ids = [
                r
                for r in Y.index
                if r in x_all.index and (corpus == POOLED or runs.at[r, "corpus"] == corpus)
            ]
            if not ids:
                continue
            groups.append(
                Group(
                    val_set=str(vset),
                    corpus=corpus,
                    run_ids=np.array(ids, dtype=object),
                    run_corpus=runs.loc[ids, "corpus"].astype(str).to_numpy(),
                    size=runs.loc[ids, "size"].astype(str).to_numpy(),
                    n_params=runs.loc[ids, "n_params"].astype(float).to_numpy(),
                    x=x_all.loc[ids].to_numpy(float),
                    names=[str(c) for c in Y.columns],
                    tasks=[str(meta.at[c, "task"]) for c in Y.columns],
                    setups=[
                        str(meta.at[c, "setup"]) if pd.notna(meta.at[c, "setup"]) else ""
                        for c in Y.columns
                    ],
                    Y=Y.loc[ids].to_numpy(float),
                    S=S.loc[ids].to_numpy(float),
                    chance=chance.to_numpy(float),
                    X_task=None if Xt is None else Xt.loc[ids].to_numpy(float),
                    task_metric=tm,
                    cluster=_clusters(ids),
                )
            )
    if not groups:
        raise AnalysisError("no run has both a validation loss and task scores")
    return groups


def _clusters(ids: list) -> np.ndarray | None:
    # points named "<run>#<step>" (analysis.ingest.axes, points=all) belong to their run
    from analysis.ingest.axes import CHECKPOINT_SEP, run_of

    if not any(CHECKPOINT_SEP in str(i) for i in ids):
        return None
    return run_of(np.array(ids, dtype=object))


def bootstrap_weights(
    n: int,
    n_resamples: int,
    seed: int,
    strata: np.ndarray | None = None,
    clusters: np.ndarray | None = None,
) -> np.ndarray:
    """(1 + R, n) weights: row 0 all ones (the data), rows 1.. multinomial resample counts.

    With `strata` (e.g. corpus per model) models are resampled within each stratum, so a
    pooled resample keeps every corpus's share. With `clusters` (the run of each point)
    whole runs are resampled and each point weighs its run's count.
    """
    rng = np.random.default_rng(seed)
    W = np.ones((n_resamples + 1, n))
    if n_resamples == 0 or n == 0:
        return W
    strata = np.zeros(n, dtype=int) if strata is None else pd.factorize(strata)[0]
    cl = np.arange(n) if clusters is None else pd.factorize(clusters)[0]
    for s in np.unique(strata):
        idx = np.flatnonzero(strata == s)
        units, inv = np.unique(cl[idx], return_inverse=True)
        counts = rng.multinomial(units.size, np.full(units.size, 1.0 / units.size), n_resamples)
        W[1:, idx] = counts[:, inv]
    return W


def percentile_ci(samples: np.ndarray, ci: float, axis: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Central `ci` interval of bootstrap samples (NaNs ignored)."""
    lo, hi = 50 * (1 - ci), 50 * (1 + ci)
    with np.errstate(all="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return (
                np.nanpercentile(samples, lo, axis=axis),
                np.nanpercentile(samples, hi, axis=axis),
            )
