"""fits.csv rows for the downstream laws of one classified group.

For every task: the exp law (point fit from the classification), the sigmoid (x = the
task's continuous metric, bpb/logprob, when the runs have one, else the validation
loss) and the logit-linear law, each with R^2, residual spread (RMSE) and the
leave-largest-out error: refit without the largest model size, mean |acc_pred - acc| on it.
"""

from __future__ import annotations

import json

import numpy as np

from analysis.config import FitConfig
from analysis.laws.downstream import (
    exp_law_acc,
    fit_exp_grid,
    fit_linear_batch,
    fit_sigmoid_batch,
    linear_acc,
    sigmoid_acc,
)
from analysis.trends.classify import GroupTrends


def _llo_mask(g) -> np.ndarray | None:
    big = g.n_params == np.nanmax(g.n_params)
    if big.all() or np.unique(g.n_params).size < 3:
        return None
    return big


def downstream_fit_rows(gt: GroupTrends, fcfg: FitConfig) -> list[dict]:
    g = gt.group
    big = _llo_mask(g)
    Wl = np.ones((1, g.n)) if big is None else (~big).astype(float)[None]
    M = np.isfinite(g.Y)
    nval = M.sum(0)
    rows: list[dict] = []

    def llo_err(pred_big: np.ndarray, t: int) -> float:
        if big is None:
            return np.nan
        sel = big & M[:, t]
        return float(np.nanmean(np.abs(pred_big[sel] - g.Y[sel, t]))) if sel.any() else np.nan

    # exp law
    llo = fit_exp_grid(g.x, g.Y, Wl, fcfg) if big is not None else None
    for t in range(len(g.names)):
        pred = (
            None
            if llo is None
            else exp_law_acc(g.x, llo.eps[0, t], llo.ln_k[0, t], llo.gamma[0, t])
        )
        rows.append(
            _row(
                g,
                t,
                "exp",
                "loss",
                {
                    "eps": gt.point.eps[0, t],
                    "ln_k": gt.point.ln_k[0, t],
                    "gamma": gt.point.gamma[0, t],
                },
                gt.point.r2[0, t],
                np.sqrt(gt.point.sse[0, t] / max(nval[t], 1)),
                np.nan if pred is None else llo_err(pred, t),
            )
        )
    # sigmoid: shared x (the val loss) is one batched fit; per-task metrics fit per column
    W2 = np.vstack([np.ones((1, g.n)), Wl])
    if g.X_task is None:
        cols = [(g.x, list(range(len(g.names))))]
        xname = "loss"
    else:
        cols = [(g.X_task[:, t], [t]) for t in range(len(g.names))]
        xname = g.task_metric
    for x, ts in cols:
        sf = fit_sigmoid_batch(x, g.Y[:, ts], W2)
        for j, t in enumerate(ts):
            p = {"a": sf.a[0, j], "b": sf.b[0, j], "s": sf.s[0, j], "x0": sf.x0[0, j]}
            resid = sigmoid_acc(x, **p) - g.Y[:, t]
            predb = sigmoid_acc(x, sf.a[1, j], sf.b[1, j], sf.s[1, j], sf.x0[1, j])
            rows.append(
                _row(
                    g,
                    t,
                    "sigmoid",
                    xname,
                    p,
                    sf.r2[0, j],
                    np.sqrt(np.nanmean(resid**2)),
                    llo_err(predb, t),
                )
            )
    lf = fit_linear_batch(g.x, g.Y, g.chance, W2)
    for t in range(len(g.names)):
        p = {"alpha": lf.alpha[0, t], "beta": lf.beta[0, t], "chance": g.chance[t]}
        resid = linear_acc(g.x, lf.alpha[0, t], lf.beta[0, t], g.chance[t]) - g.Y[:, t]
        predb = linear_acc(g.x, lf.alpha[1, t], lf.beta[1, t], g.chance[t])
        rows.append(
            _row(
                g,
                t,
                "linear",
                "loss",
                p,
                lf.r2[0, t],
                np.sqrt(np.nanmean(resid**2)),
                llo_err(predb, t),
            )
        )
    return rows


def _row(g, t, law, xname, params, r2, rmse, llo) -> dict:
    ok = bool(np.all(np.isfinite(list(params.values()))))
    return {
        "kind": "downstream",
        "backtest": "",
        "law": law,
        "corpus": g.corpus,
        "val_set": g.val_set,
        "task": g.tasks[t],
        "setup": g.setups[t],
        "name": g.names[t],
        "x_metric": xname,
        "n_points": int(np.isfinite(g.Y[:, t]).sum()),
        "r2": float(r2) if ok else np.nan,
        "rmse": float(rmse) if ok else np.nan,
        "llo_abs_error": float(llo) if ok else np.nan,
        "params": json.dumps({k: float(v) for k, v in params.items()}) if ok else "{}",
        "param_ci": "{}",
        "fitted": ok,
    }
