"""The observational testbed's compute-cutoff protocol (Ruan et al. 2024, sec. 5): fit on
every model family's models below Llama-2-7B's training compute (CUTOFF_FLOPS) and predict
the larger models, pooled over families.

Methods, per task (each fitted on the training models with a score for it):

* `capability_sigmoid`: accuracy = c + (1 - c) sigmoid(w s + b), s the model's capability
  (analysis.ingest.capability: first principal component of the standard benchmarks, the
  task itself left out when it is one of them). The component's loadings and standardisation
  are fitted on the training models only; a target's s is its projection from its own
  (other) benchmark scores, as in the paper.
* `compute_sigmoid`: the same law of log10 training compute (6 N D).
* `naive`: the score of the training model with the most compute; raw half-width the
  standard deviation of the scores of the BOOT_TOP training models with the most compute.

c is the task's chance accuracy (0 where unknown); ceiling 1. Intervals: percentiles of a
bootstrap over training models (BOOTSTRAPS resamples), in quadrature with the binomial
noise, then scaled by split conformal calibration (analysis.predict.intervals) on the
*internal* fold: the same protocol one decade lower (fit at or below CUTOFF_FLOPS /
INNER_RATIO, predict the models up to CUTOFF_FLOPS). Models above CUTOFF_FLOPS are *held
out*: never fitted on, never used for a scale or for choosing the default method.

Rows carry testbed `<source>:cutoff` and corpus `all` (pooled), so the tables keep them
beside the per-family rolling-origin rows without mixing them.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from analysis.groups.build import POOLED
from analysis.ingest.capability import first_component
from analysis.predict.intervals import calibrate, noise_sd, with_noise
from analysis.predict.ladder import Ladder, build_ladder
from analysis.predict.methods import Settings, z_value

#: source -> training-compute cutoff (FLOPs): Llama-2-7B's 84 x 1E21 in Ruan et al.
CUTOFF_FLOPS = {"obsscaling": 8.4e22}
INNER_RATIO = 10.0  # the internal fold's cutoff is this many times lower
BOOTSTRAPS = 200
BOOT_TOP = 5
LM_ROUNDS = 60  # Levenberg-Marquardt iterations of the sigmoid fits
METHODS = ("capability_sigmoid", "compute_sigmoid", "naive")


def capability_fit(scores: pd.DataFrame, fit: pd.Index) -> pd.Series:
    """Capability of every model (rows of `scores`) with the standardisation and first
    component fitted on the rows in `fit` only; a model's missing benchmarks are skipped
    (least-squares projection on its observed ones). NaN: no benchmark observed."""
    A = scores.to_numpy(float)
    out = capability_of(A, scores.index.get_indexer(fit))
    return pd.Series(out, index=scores.index, dtype=float)


def capability_of(A: np.ndarray, fit: np.ndarray) -> np.ndarray:
    """`capability_fit` on arrays: A (models, benchmarks), `fit` the positions of the rows the
    standardisation and first component are fitted on."""
    F = A[fit]
    mu, sd = np.nanmean(F, axis=0), np.nanstd(F, axis=0)
    keep = np.isfinite(sd) & (sd > 0)
    A, F, mu, sd = A[:, keep], F[:, keep], mu[keep], sd[keep]
    if A.shape[1] == 0:
        return np.full(len(A), np.nan)
    Fo = np.isfinite(F)
    v = first_component(np.where(Fo, (np.where(Fo, F, 0.0) - mu) / sd, 0.0), Fo)
    obs = np.isfinite(A)
    Z = np.where(obs, (np.where(obs, A, 0.0) - mu) / sd, 0.0)
    den = obs.astype(float) @ (v * v)
    with np.errstate(invalid="ignore", divide="ignore"):
        t = np.where(den > 0, (Z @ v) / den, np.nan)
    # t is the capability_scores numerator (rank-1 filled cells included): same scale
    return t / np.sqrt(A.shape[1])


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-np.clip(z, -50, 50)))


def fit_sigmoids(
    x: np.ndarray,
    y: np.ndarray,
    c: float | np.ndarray,
    weight: np.ndarray | None = None,
    shift: np.ndarray | float = 0.0,
    init: np.ndarray | None = None,
    rounds: int = LM_ROUNDS,
) -> np.ndarray:
    """(B, 2) least-squares (w, b) of y = c + (1 - c) sigmoid(w x + b + shift) for each row of
    the (B, n) samples x, y, by vectorised Levenberg-Marquardt (`rounds` iterations) from `init`
    (B, 2), by default the logit-linear fit. `c`: one chance level or one per row (B, 1);
    `weight` (B, n): each point's weight (0 = left out, its x and y may then be NaN), all ones
    when None; `shift` (B, n): a known offset of each point's logit (analysis.predict.families:
    family intercepts)."""
    W: float | np.ndarray
    sw: float | np.ndarray
    if weight is None:  # a scalar weight: the unweighted fit at no extra cost
        W, sw = 1.0, float(x.shape[1])
    else:
        W = np.asarray(weight, float)
        x, y = np.where(W > 0, x, 0.0), np.where(W > 0, y, 0.0)
        sw = np.maximum(W.sum(1, keepdims=True), 1e-300)
    span = 1.0 - c
    p = np.clip((y - c) / span, 0.02, 0.98)
    lg = np.log(p / (1 - p)) - shift
    xm, lm = (W * x).sum(1, keepdims=True) / sw, (W * lg).sum(1, keepdims=True) / sw
    vx = (W * (x - xm) ** 2).sum(1)
    w = np.where(vx > 0, (W * (x - xm) * (lg - lm)).sum(1) / np.where(vx > 0, vx, 1), 0.0)
    b = lm[:, 0] - w * xm[:, 0]
    if init is not None:
        w, b = init[:, 0].copy(), init[:, 1].copy()
    lam = np.full(len(w), 1e-2)

    def cost(w, b):
        return (W * (y - c - span * _sigmoid(w[:, None] * x + b[:, None] + shift)) ** 2).sum(1)

    cur = cost(w, b)
    for _ in range(rounds):
        sg = _sigmoid(w[:, None] * x + b[:, None] + shift)
        r = y - c - span * sg
        d = span * sg * (1 - sg)
        ja, jb = d * x, d
        wja, wjb = W * ja, W * jb
        aa, ab, bb = (wja * ja).sum(1), (wja * jb).sum(1), (wjb * jb).sum(1)
        ga, gb = (wja * r).sum(1), (wjb * r).sum(1)
        a11, a22 = aa * (1 + lam) + 1e-12, bb * (1 + lam) + 1e-12
        det = a11 * a22 - ab * ab
        dw = np.where(det > 0, (a22 * ga - ab * gb) / np.where(det > 0, det, 1), 0.0)
        db = np.where(det > 0, (a11 * gb - ab * ga) / np.where(det > 0, det, 1), 0.0)
        new = cost(w + dw, b + db)
        ok = new < cur
        w, b, cur = np.where(ok, w + dw, w), np.where(ok, b + db, b), np.where(ok, new, cur)
        lam = np.where(ok, lam / 3, lam * 4)
    return np.stack([w, b], axis=1)


def _sigmoid_method(x_tr, y_tr, x_tg, c, rng, level):
    """Prediction and raw (lo, hi) half-widths at x_tg from a bootstrap over training models."""
    n = len(x_tr)
    idx = np.vstack([np.arange(n)[None, :], rng.integers(0, n, (BOOTSTRAPS, n))])
    wb = fit_sigmoids(x_tr[idx], y_tr[idx], c)
    preds = c + (1 - c) * _sigmoid(wb[:, :1] * x_tg[None, :] + wb[:, 1:])
    q = (1 - level) / 2
    lo_q, hi_q = np.quantile(preds[1:], [q, 1 - q], axis=0)
    return preds[0], np.maximum(preds[0] - lo_q, 0.0), np.maximum(hi_q - preds[0], 0.0)


def _fixed_axis(axis: Callable, left_out: str | None) -> Callable:
    """`cap`'s entry for `left_out`: the axis built without that task, whatever the fold's
    training runs (the axis was fitted on them already)."""
    return lambda _tr: axis(left_out)


def _fold(lad: Ladder, cap: dict, train_max: float, target_max: float, split, s, rng, level):
    """Rows (RAW_COLUMNS) of one fold: train at or below `train_max`, targets above it (and
    at or below `target_max`)."""
    runs = lad.runs
    tr = runs.index[runs["C"] <= train_max]
    tg = runs.index[(runs["C"] > train_max) & (runs["C"] <= target_max)]
    if len(tr) < 4 or len(tg) == 0:
        return []
    sd = noise_sd(lad.noise.loc[tr], s.last_n, False)
    z = z_value(level)
    logc = np.log10(runs["C"])
    rows = []
    for i, task in enumerate(lad.tasks):
        y = lad.acc[task]
        chance = lad.chance.get(task, np.nan)
        c = float(chance) if np.isfinite(chance) else 0.0
        axis = cap.get(task, cap[None])(tr)
        xs = {"capability_sigmoid": axis, "compute_sigmoid": logc}
        for method in METHODS:
            if method == "naive":
                ok_tr = [r for r in tr if np.isfinite(y[r])]
                ok_tg = [r for r in tg if np.isfinite(y[r])]
                if len(ok_tr) < 4 or not ok_tg:
                    continue
                top = runs.loc[ok_tr, "C"].sort_values().index[-BOOT_TOP:]
                pr = np.full(len(ok_tg), y[top[-1]])
                lo = hi = np.full(len(ok_tg), float(np.std(y[top])))
            else:
                x = xs[method]
                ok_tr = [r for r in tr if np.isfinite(y[r]) and np.isfinite(x[r])]
                ok_tg = [r for r in tg if np.isfinite(y[r]) and np.isfinite(x[r])]
                if len(ok_tr) < 4 or not ok_tg:
                    continue
                pr, lo, hi = _sigmoid_method(
                    x[ok_tr].to_numpy(float),
                    y[ok_tr].to_numpy(float),
                    x[ok_tg].to_numpy(float),
                    c,
                    rng,
                    level,
                )
            lo, hi = with_noise(lo[None, :], hi[None, :], sd[i : i + 1], z)
            cmax = runs.loc[ok_tr, "C"].max()
            origin = f"C<={train_max:.3g}"
            for j, rid in enumerate(ok_tg):
                rows.append(
                    (POOLED, origin, rid, task, method, pr[j], lo[0, j], hi[0, j], y[rid])
                    + (runs.at[rid, "C"] / cmax, len(ok_tr), split)
                )
    return rows


def choose_default(internal: pd.DataFrame, methods: tuple[str, ...] = METHODS) -> str:
    """The fitted method with the lowest median absolute error on the internal fold
    (`methods` order breaks ties and is the fallback without internal actuals)."""
    ok = internal[np.isfinite(internal["actual"].astype(float)) & (internal["method"] != "naive")]
    med = (ok["predicted"] - ok["actual"]).abs().groupby(ok["method"]).median()
    if med.empty:
        return methods[0]
    return min(med.index, key=lambda m: (round(float(med[m]), 6), methods.index(m)))


def cutoff_backtest(
    table: pd.DataFrame,
    testbed: str,
    benchmarks: list[str],
    s: Settings,
    accuracy_metric: str = "acc",
    lad: Ladder | None = None,
) -> pd.DataFrame:
    """Calibrated rows (backtest.PREDICTION_COLUMNS) of the cutoff protocol, testbed
    `<testbed>:cutoff`; empty when the table's source has no cutoff. `lad`: the table's pooled
    ladder when already built (`build_ladder(table, None, ...)`)."""
    from analysis.predict.backtest import PREDICTION_COLUMNS, RAW_COLUMNS

    source = str(table["source"].dropna().iloc[0]) if table["source"].notna().any() else ""
    if source not in CUTOFF_FLOPS:
        return pd.DataFrame(columns=PREDICTION_COLUMNS)
    cut = CUTOFF_FLOPS[source]
    lad = lad if lad is not None else build_ladder(table, None, accuracy_metric, None, s.last_n)
    bench = lad.acc[[b for b in benchmarks if b in lad.acc.columns]]
    rng = np.random.default_rng(s.seed)
    level = s.level
    rows = []
    for train_max, target_max, split in (
        (cut / INNER_RATIO, cut, "internal"),
        (cut, np.inf, "held_out"),
    ):
        fit = lad.runs.index[lad.runs["C"] <= train_max]
        cache: dict = {}

        def axis(left_out, fit=fit, cache=cache):
            if left_out not in cache:
                sc = bench.drop(columns=[left_out]) if left_out else bench
                cache[left_out] = capability_fit(sc, fit)
            return cache[left_out]

        cap = {b: _fixed_axis(axis, b) for b in [None, *bench.columns]}
        rows += _fold(lad, cap, train_max, target_max, split, s, rng, level)
    df = pd.DataFrame(rows, columns=RAW_COLUMNS[1:])
    if df.empty:
        return pd.DataFrame(columns=PREDICTION_COLUMNS)
    df.insert(0, "testbed", f"{testbed}:cutoff")
    df = df[np.isfinite(df["predicted"].astype(float))]
    df = calibrate(df, level, df["split"] == "internal")
    df["abs_error"] = (df["predicted"] - df["actual"]).abs()
    df["default"] = df["method"] == choose_default(df[df["split"] == "internal"])
    return df[PREDICTION_COLUMNS].reset_index(drop=True)


def task_table(pred: pd.DataFrame) -> pd.DataFrame:
    """prediction_cutoff.csv: per task and method, the cutoff protocol's held-out median and
    mean absolute error, 80% coverage and count (empty without cutoff rows)."""
    cols = ["testbed", "task", "method", "default", "median_abs_error", "mean_abs_error"]
    cols += ["coverage", "n"]
    if pred.empty:
        return pd.DataFrame(columns=cols)
    p = pred[pred["testbed"].astype(str).str.endswith(":cutoff") & (pred["split"] == "held_out")]
    p = p[np.isfinite(p["actual"].astype(float))]
    if p.empty:
        return pd.DataFrame(columns=cols)
    out = (
        p.groupby(["testbed", "task", "method"])
        .agg(
            default=("default", "max"),
            median_abs_error=("abs_error", "median"),
            mean_abs_error=("abs_error", "mean"),
            coverage=("covered", "mean"),
            n=("abs_error", "size"),
        )
        .reset_index()
    )
    return out[cols].sort_values(["testbed", "task", "method"]).reset_index(drop=True)
