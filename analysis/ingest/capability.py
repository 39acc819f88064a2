"""The capability axis: an observational analogue of validation loss (Ruan et al. 2024).

Without a validation loss, a model's position can still be read off its standard benchmark
scores: their first principal component is a shared capability measure across model
families. For the trend of task t, the axis is built WITHOUT t (leave-one-out): a task
must not be plotted against a quantity made partly of its own scores.

Construction (`capability_scores`), on the (models x benchmarks) matrix of accuracies:

1. Standardise each benchmark over the models that have it (mean 0, standard deviation 1;
   a benchmark with no spread is left out).
2. Missing scores: start from 0 (the benchmark's mean), then alternate a rank-1 fit (the
   first component) and replacing only the missing cells by that fit, a fixed number of
   rounds (IMPUTE_ROUNDS); observed cells are never changed. A model with fewer than
   MIN_OBSERVED benchmarks gets no capability (NaN), so it drops out of that axis.
3. The first right singular vector v of the completed matrix Z (numpy SVD on a small
   matrix: deterministic, the same with 1 or 2 threads). Sign: v is flipped so that its
   loadings sum to a positive number, so a higher capability means higher scores.
4. Capability s = Z' v / sqrt(k), k benchmarks: the loading-weighted z-score, on the scale
   of one standardised benchmark (about -3..3), where Z' fills a model's missing cells with
   its rank-1 fit given v (its least-squares score on v from its observed cells).

The fit uses every model of the table that has benchmark scores (all families together: the
axis is shared across families); nothing of the task analysed enters its own axis.

As an x-axis (`axis_values`) the analysis uses x = OFFSET - s: lower is better, like a loss,
and positive for any model within OFFSET standard deviations of the mean, which the
exponential law's bounds need (analysis.ingest.axes has the same convention for compute).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

AXIS = "capability"
OFFSET = 5.0
IMPUTE_ROUNDS = 50
MIN_OBSERVED = 2


def first_component(Z: np.ndarray, observed: np.ndarray) -> np.ndarray:
    """Unit loading vector of the first principal component of standardised `Z` (missing
    cells imputed by alternating rank-1 fits), signed so its loadings sum to > 0."""
    Zc = np.where(observed, Z, 0.0)
    v = np.zeros(Z.shape[1])
    for _ in range(IMPUTE_ROUNDS):
        u, s, vt = np.linalg.svd(Zc, full_matrices=False)
        v = vt[0]
        fit = s[0] * np.outer(u[:, 0], v)
        Zc = np.where(observed, Z, fit)
        if observed.all():
            break
    return v if v.sum() >= 0 else -v


def capability_scores(scores: pd.DataFrame) -> pd.Series:
    """Capability of each model (index) from its benchmark accuracies (columns); the module
    doc gives the construction. NaN for a model with too few benchmarks."""
    A = scores.to_numpy(float)
    mu, sd = np.nanmean(A, axis=0), np.nanstd(A, axis=0)
    keep = np.isfinite(sd) & (sd > 0)
    A, mu, sd = A[:, keep], mu[keep], sd[keep]
    obs = np.isfinite(A)
    enough = obs.sum(axis=1) >= min(MIN_OBSERVED, A.shape[1])
    out = pd.Series(np.nan, index=scores.index, dtype=float)
    if A.shape[1] == 0 or enough.sum() < 2:
        return out
    Z = (np.where(obs, A, 0.0) - mu) / sd
    Zs, Os = Z[enough], obs[enough]
    v = first_component(Zs, Os)
    filled = np.where(Os, Zs, _rank1(Zs, Os, v))
    out[enough] = filled @ v / np.sqrt(A.shape[1])
    return out


def _rank1(Z: np.ndarray, observed: np.ndarray, v: np.ndarray) -> np.ndarray:
    # each model's own projection onto v from its observed cells (least squares), times v
    num = np.where(observed, Z, 0.0) @ v
    den = observed.astype(float) @ (v * v)
    with np.errstate(invalid="ignore", divide="ignore"):
        t = np.where(den > 0, num / den, 0.0)
    return np.outer(t, v)


def leave_one_out(scores: pd.DataFrame) -> dict[str | None, pd.Series]:
    """Capability per model without each benchmark: {benchmark: axis without it} and
    {None: the axis from every benchmark}, for tasks that are not among them."""
    out: dict[str | None, pd.Series] = {None: capability_scores(scores)}
    for col in scores.columns:
        out[str(col)] = capability_scores(scores.drop(columns=[col]))
    return out


def axis_values(capability: pd.Series) -> pd.Series:
    """The capability as an x-axis: OFFSET - s (lower is better, like a loss)."""
    return OFFSET - capability
