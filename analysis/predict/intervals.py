"""Prediction intervals: bootstrap spread plus evaluation noise, calibrated by split
conformal scaling on internal backtests.

Raw half-widths (below and above the prediction) are the bootstrap's (`methods`), each
combined in quadrature with z x the target's evaluation noise: the checkpoint-to-checkpoint
standard deviation of the training runs' last evaluations (median over runs) divided by
sqrt(last_n), since an actual is itself the mean of its last evaluations.

Calibration (normalised split conformal): on the internal folds of a backtest, the score
of a prediction is its error divided by the raw half-width on the side it fell; the scale
is the ceil((n + 1) level) / n empirical quantile of the scores, so that, on exchangeable
held-out predictions, ``pred - scale * lo .. pred + scale * hi`` covers `level` of the
outcomes. Scales are fitted per method on internal folds only, never on held-out targets.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

MIN_HALF_WIDTH = 1e-4  # keeps the conformal score finite for a zero-width raw interval
MIN_CALIBRATION_ROWS = 10  # fewer internal predictions: the scale below is used instead
#: method -> median over the three shipped testbeds of its conformal scale on their internal
#: folds (measured with bench/analysis_speed.py's analyses): the scale of a sweep too small
#: to calibrate itself (its rows say calibrated = False)
FALLBACK_SCALES = {
    "two_step": 2.37,
    "two_step_loss": 1.46,
    "single_step": 4.85,
    "gadre_exp": 1.70,
    "log_acc_compute": 3.19,
    "naive": 1.27,
    "ensemble": 1.32,
}


def noise_sd(noise: pd.DataFrame, last_n: int, has_checkpoints: bool) -> np.ndarray:
    """Per task: sd of a target's measured accuracy (median over the training runs)."""
    sd = noise.median(axis=0, skipna=True).to_numpy(float)
    sd = np.where(np.isfinite(sd), sd, 0.0)
    return sd / np.sqrt(last_n) if has_checkpoints else sd


def with_noise(lo: np.ndarray, hi: np.ndarray, sd: np.ndarray, z: float):
    """Raw half-widths (T, m) combined in quadrature with z x the noise sd (T,)."""
    n = (z * sd)[:, None]
    return (
        np.maximum(np.sqrt(np.square(lo) + n * n), MIN_HALF_WIDTH),
        np.maximum(np.sqrt(np.square(hi) + n * n), MIN_HALF_WIDTH),
    )


def conformal_scores(pred, lo_hw, hi_hw, actual) -> np.ndarray:
    """Error over the raw half-width on the side the actual fell."""
    pred, actual = np.asarray(pred, float), np.asarray(actual, float)
    below = actual < pred
    return np.where(below, (pred - actual) / lo_hw, (actual - pred) / hi_hw)


def conformal_scale(scores: np.ndarray, level: float) -> float:
    """The split-conformal quantile of `scores` (NaN with too few of them)."""
    s = np.sort(np.asarray(scores, float)[np.isfinite(scores)])
    n = s.size
    if n < MIN_CALIBRATION_ROWS:
        return float("nan")
    k = min(int(np.ceil((n + 1) * level)), n)
    return float(s[k - 1])


def calibrate(df: pd.DataFrame, level: float, internal: pd.Series) -> pd.DataFrame:
    """`df` (predictions with raw half-widths `lo_hw`, `hi_hw`) with `scale`, `lo`, `hi`,
    `calibrated`, `covered`; scales fitted per method on the rows where `internal` holds
    (a method with too few internal rows gets its FALLBACK_SCALES value, `calibrated` False)."""
    out = df.copy()
    out["scale"] = out["method"].map(FALLBACK_SCALES).fillna(1.0)
    out["calibrated"] = False
    for method, sub in out[internal].groupby("method"):
        sub = sub[np.isfinite(sub["actual"]) & np.isfinite(sub["predicted"])]
        sc = conformal_scale(
            conformal_scores(sub["predicted"], sub["lo_hw"], sub["hi_hw"], sub["actual"]), level
        )
        if np.isfinite(sc):
            m = out["method"] == method
            out.loc[m, "scale"] = sc
            out.loc[m, "calibrated"] = True
    out["lo"] = np.clip(out["predicted"] - out["scale"] * out["lo_hw"], 0.0, 1.0)
    out["hi"] = np.clip(out["predicted"] + out["scale"] * out["hi_hw"], 0.0, 1.0)
    inside = (out["actual"] >= out["lo"]) & (out["actual"] <= out["hi"])
    out["covered"] = inside.astype(float).where(np.isfinite(out["actual"]))  # NaN: no actual
    return out
