"""The predictors: each fits the runs of a ladder and predicts every task's accuracy at
target (N, D), with a raw central interval that `analysis.predict.intervals` widens by
the evaluation noise and calibrates.

Every method has the signature ``method(ladder, N, D, settings, rng) -> Output``: point
predictions (T, m) for the ladder's T tasks at m targets, and the raw interval's lower and
upper half-widths (T, m) from a bootstrap over runs (resampled within each size, so every
rung stays in each resample), NaN where a task cannot be fitted. A method that does not
apply to the ladder (no task bits-per-byte, no validation loss) raises `NotApplicable`.
The fitting code is the project's own: `analysis.two_step` (step 1, step 2, single step),
`analysis.loss_laws` (loss laws), `analysis.downstream_laws` (exp and sigmoid laws).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis.config import FitConfig
from analysis.laws.downstream import (
    exp_law_acc,
    fit_exp_grid,
    fit_sigmoid_batch,
    refine_exp,
    sigmoid_acc,
)
from analysis.laws.loss import fit_loss_law, law_features, law_terms, logsumexp
from analysis.laws.two_step import (
    fit_chinchilla_many,
    fit_step2,
    paired_points,
    predict_many,
    trailing_mean,
)
from analysis.predict.ladder import Ladder
from analysis.predict.single_step import fit_many
from analysis.predict.single_step import predict as predict_single


class NotApplicable(ValueError):
    """The method cannot run on this ladder (the message says what is missing)."""


@dataclass
class Settings:
    """Fitting and interval settings of the predictors."""

    level: float = 0.8  # central interval
    n_boot: int = 4  # bootstrap resamples of runs for the nonlinear per-task fits
    n_boot_grid: int = 50  # resamples for the batched grid fits (sigmoid / exp)
    huber_delta: float = 1e-3  # step 1 (Huber on log residuals, as the OLMo ladder)
    step2_min_frac: float = 0.1  # step 2 skips each run's first 10% of checkpoints
    smooth: int = 5  # trailing moving average of step 2's points (both axes)
    last_n: int = 5  # final value = mean of the last n evaluations
    seed: int = 0


@dataclass
class Output:
    """Point predictions and raw interval half-widths, each (T, m)."""

    pred: np.ndarray
    lo: np.ndarray
    hi: np.ndarray


def resample_weights(ladder: Ladder, R: int, rng: np.random.Generator) -> np.ndarray:
    """Run weights (R + 1, n), row 0 all ones. Runs are drawn with replacement within
    their size, so every rung stays in each resample; a ladder with one run per size
    (Pythia) gets delete-one-run resamples instead (cycled), since resampling within a
    size of one run would repeat the same fit."""
    sizes = ladder.runs["size"].to_numpy()
    n = sizes.size
    W = np.ones((R + 1, n))
    if np.median(np.unique(sizes, return_counts=True)[1]) < 2:
        for r in range(R):
            W[r + 1, r % n] = 0.0
        return W
    for sz in np.unique(sizes):
        idx = np.flatnonzero(sizes == sz)
        W[1:, idx] = rng.multinomial(idx.size, np.full(idx.size, 1.0 / idx.size), R)
    return W


def _indices(w: np.ndarray) -> np.ndarray:
    """Run indices of one weight row (each run repeated by its weight)."""
    return np.repeat(np.arange(w.size), w.astype(int))


def _half_widths(pred: np.ndarray, boot: np.ndarray, level: float):
    """Half-widths of the central `level` interval of bootstrap predictions (R, T, m)
    around `pred`; NaN when fewer than 2 resamples are finite."""
    import warnings

    q = (50 * (1 - level), 50 * (1 + level))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        lo, hi = np.nanpercentile(boot, q, axis=0)
    ok = np.isfinite(boot).sum(0) >= 2
    return (
        np.where(ok, np.maximum(pred - lo, 0.0), np.nan),
        np.where(ok, np.maximum(hi - pred, 0.0), np.nan),
    )


def _step2_points(
    ladder: Ladder, task: str, x_metric: str, s: Settings, by_name: dict
) -> pd.DataFrame:
    """Step 2's points: every checkpoint after the first `step2_min_frac` of each run,
    both axes smoothed by a trailing moving average (one point per run without
    checkpoints). `by_name`: the ladder's checkpoint rows grouped by name."""
    ck = by_name.get(task, ladder.checkpoints.iloc[:0])
    acc = ck[(ck["kind"] == "task") & (ck["metric"] != "bpb")]
    if x_metric == "bpb":
        xr = ck[ck["metric"] == "bpb"]
    else:
        xr = by_name.get(ladder.val_set, ck.iloc[:0])
        xr = xr[xr["kind"] == "val_loss"]
    if acc["step"].isna().all():  # final values only
        fin = _final_x(ladder, x_metric)
        fin = fin[task] if x_metric == "bpb" else fin
        return pd.DataFrame(
            {"run_id": ladder.runs.index, "x": fin.to_numpy(), "y": ladder.acc[task].to_numpy()}
        )
    return paired_points(
        trailing_mean(xr.copy(), s.smooth), trailing_mean(acc.copy(), s.smooth), s.step2_min_frac
    )


def _sigmoid_step(
    ladder: Ladder,
    task: str,
    x_metric: str,
    xt: np.ndarray,
    xb: np.ndarray,
    W: np.ndarray,
    s: Settings,
    by_name: dict,
):
    """Step 2 for one task: point prediction at xt (m,) and resample predictions at xb
    (R, m) with run weights W (R+1, n) (row 0 all ones). The OLMo ladder's added point
    (bpb 0, accuracy 1) joins the task-loss variant with weight 1 in every resample."""
    pts = _step2_points(ladder, task, x_metric, s, by_name)
    pts = pts[np.isfinite(pts["x"]) & np.isfinite(pts["y"])]
    x, y = pts["x"].to_numpy(float), pts["y"].to_numpy(float)
    pos = ladder.runs.index.get_indexer(pts["run_id"])
    Wp = W[:, pos]
    if x_metric == "bpb":
        x, y = np.append(x, 0.0), np.append(y, 1.0)
        Wp = np.hstack([Wp, np.ones((W.shape[0], 1))])
    p = fit_step2(x, y)
    if p is None:
        return None, None
    pred = sigmoid_acc(xt, **p)
    g = fit_sigmoid_batch(x, y[:, None], Wp)
    par = {k: getattr(g, k)[:, 0] for k in ("a", "b", "s", "x0")}
    grid0 = sigmoid_acc(xb, *(v[1:, None] for v in par.values()))
    # the resamples are grid fits: their spread around the grid point fit, moved to the
    # refined point fit, is the bootstrap of step 2
    base = sigmoid_acc(xt, *(v[0] for v in par.values()))
    return pred, np.clip(grid0 - base + pred, 0.0, 1.0)


def _fit_step1_many(N, D, Y, W, s):
    """Chinchilla law per row of Y (T, n): the point fit's parameters and one refit per
    resample row of W[1:]."""
    point = fit_chinchilla_many(N, D, Y, s.huber_delta, n_starts=2)
    boots = []
    for w in W[1:]:
        r = _indices(w)
        boots.append(fit_chinchilla_many(N[r], D[r], Y[:, r], s.huber_delta, n_starts=1))
    return point, boots


def two_step(ladder: Ladder, N, D, s: Settings, rng) -> Output:
    """Two-step chain on the task's bits-per-byte (Bhagia et al. 2024).

    Step 1: ``bpb(N, D) = E + A / N^alpha + B / D^beta`` on each run's final value (mean of
    its last evaluations), Huber (delta = 1e-3) on log residuals, L-BFGS from a grid, all
    parameters >= 0 in the log-space form (`analysis.laws.two_step.fit_chinchilla_many`).
    Step 2: ``acc = a / (1 + exp(-k (bpb - x0))) + b``, decreasing, bounded to [0, 1], on
    every checkpoint after the first 10% with a trailing 5-point moving average on both
    axes, plus the point (bpb = 0, acc = 1) (`analysis.laws.two_step.fit_step2`).
    Bootstrap: `n_boot` refits of step 1 and `n_boot_grid` grid refits of step 2 over runs
    resampled within each size.
    """
    if ladder.bpb is None:
        raise NotApplicable("no task bits-per-byte in these runs")
    return _chain(ladder, N, D, s, rng, "bpb")


def two_step_loss(ladder: Ladder, N, D, s: Settings, rng) -> Output:
    """Two-step chain through the validation loss (one law shared by every task).

    Step 1: ``L(N, D) = E + A / N^alpha + B / D^beta`` on the final validation loss
    (`analysis.loss_laws.fit_loss_law`, Huber on log residuals, its own bootstrap).
    Step 2: the bounded sigmoid of `two_step` with the loss as x, without the added
    (0, 1) point (a validation loss never reaches 0).
    """
    if ladder.loss is None:
        raise NotApplicable("no validation loss in these runs")
    return _chain(ladder, N, D, s, rng, "loss")


def _final_x(ladder: Ladder, x_metric: str) -> pd.DataFrame | pd.Series:
    """The ladder's final bits-per-byte (run x task) or validation loss (per run); the
    methods check that it has one before they chain on it."""
    fin = ladder.bpb if x_metric == "bpb" else ladder.loss
    if fin is None:
        raise NotApplicable(f"no final {x_metric} in these runs")
    return fin


def _chain(ladder: Ladder, N, D, s: Settings, rng, x_metric: str) -> Output:
    tasks = ladder.tasks
    Nr, Dr = ladder.runs["N"].to_numpy(), ladder.runs["D"].to_numpy()
    T, m = len(tasks), len(N)
    pred = np.full((T, m), np.nan)
    boot = np.full((s.n_boot_grid, T, m), np.nan)
    W = resample_weights(ladder, s.n_boot_grid, rng)
    by_name = dict(tuple(ladder.checkpoints.groupby("name", sort=False)))
    if x_metric == "bpb":
        bpb = _final_x(ladder, x_metric)
        ok = [i for i, t in enumerate(tasks) if bpb[t].notna().all()]
        if not ok:
            raise NotApplicable("no task has bits-per-byte on every run")
        Y = bpb[[tasks[i] for i in ok]].to_numpy(float).T
        (theta, ref), boots = _fit_step1_many(Nr, Dr, Y, W[: s.n_boot + 1], s)
        xt_all = predict_many(theta, ref, N, D)
        xb_all = np.stack([predict_many(th, rf, N, D) for th, rf in boots])  # (Rb, T', m)
    else:
        fit = loss_fit(ladder, s)
        ok = list(range(T))
        xt_all = np.tile(_law_at(fit, N, D), (T, 1))
        xb = _boot_law(fit, {"N": N, "D": D})
        xb_all = np.repeat(xb[:, None, :], T, axis=1)
    for j, i in enumerate(ok):
        # pair every step-2 resample with a step-1 resample (cycled)
        xb = xb_all[np.arange(s.n_boot_grid) % xb_all.shape[0], j]
        p, b = _sigmoid_step(ladder, tasks[i], x_metric, xt_all[j], xb, W, s, by_name)
        if p is not None:
            pred[i], boot[:, i] = p, b
    lo, hi = _half_widths(pred, boot, s.level)
    return Output(pred, lo, hi)


def loss_fit(ladder: Ladder, s: Settings):
    """The Chinchilla law of the ladder's validation loss, with its bootstrap."""
    X = {"N": ladder.runs["N"].to_numpy(), "D": ladder.runs["D"].to_numpy()}
    law = "chinchilla" if ladder.runs["D"].nunique() > 2 else "compute"
    if law == "compute":
        X = {"C": ladder.runs["C"].to_numpy()}
    fit = fit_loss_law(
        law,
        X,
        _final_x(ladder, "loss").to_numpy(float),
        max(s.n_boot * 5, 10),
        s.seed,
        s.huber_delta,
    )
    if fit is None:
        raise NotApplicable("the loss law could not be fitted")
    return fit


def _law_at(fit, N, D) -> np.ndarray:
    """A fitted loss law's predictions at (N, D) (the compute law takes C = 6 N D)."""
    N, D = np.asarray(N, float), np.asarray(D, float)
    return fit.predict({"C": 6.0 * N * D} if fit.law == "compute" else {"N": N, "D": D})


def _boot_law(fit, X: dict) -> np.ndarray:
    """Per-resample predictions (R, m) of a bootstrapped loss law at X (N, D given)."""
    if fit.law == "compute":
        X = {"C": 6.0 * np.asarray(X["N"], float) * np.asarray(X["D"], float)}
    f = law_features(fit.law, X, fit.ref)
    return np.exp(logsumexp(law_terms(fit.law, fit.boot, f)[0], axis=-1))


def gadre_exp(ladder: Ladder, N, D, s: Settings, rng) -> Output:
    """Gadre et al. (2024): accuracy from the loss the loss law predicts.

    Loss law: ``L(N, D) = E + A / N^alpha + B / D^beta`` on the final validation loss
    (`two_step_loss`'s step 1). Error law: ``1 - acc = eps - k exp(-gamma L)`` on the runs'
    final (loss, accuracy), eps in [0, 1], ln k in [0, 20], gamma in [0, 20]: closed form
    over a grid of gamma, then a golden-section refinement (`analysis.downstream_laws`).
    Bootstrap: the loss law's own resamples paired with `n_boot_grid` resamples of runs.
    """
    if ladder.loss is None:
        raise NotApplicable("no validation loss in these runs")
    fit = loss_fit(ladder, s)
    x = ladder.loss.to_numpy(float)
    Y = ladder.acc.to_numpy(float)
    W = resample_weights(ladder, s.n_boot_grid, rng)
    g = fit_exp_grid(x, Y, W)
    point = refine_exp(x, Y, W[0], g, 0)
    lt = _law_at(fit, N, D)
    pred = exp_law_acc(
        lt[None, :], point.eps[0][:, None], point.ln_k[0][:, None], point.gamma[0][:, None]
    )
    lb = _boot_law(fit, {"N": N, "D": D})
    lb = lb[np.arange(s.n_boot_grid) % lb.shape[0]]  # (R, m)
    boot = exp_law_acc(
        lb[:, None, :], g.eps[1:, :, None], g.ln_k[1:, :, None], g.gamma[1:, :, None]
    )
    base = exp_law_acc(lt[None, :], g.eps[0][:, None], g.ln_k[0][:, None], g.gamma[0][:, None])
    boot = np.clip(boot - base[None] + pred[None], 0.0, 1.0)
    lo, hi = _half_widths(pred, boot, s.level)
    return Output(np.clip(pred, 0.0, 1.0), lo, hi)


def single_step(ladder: Ladder, N, D, s: Settings, rng) -> Output:
    """Single step: accuracy directly from (N, D),
    ``acc = b + (top - b) / (1 + exp(E + A' (N/1e9)^-alpha + B' (D/1e11)^-beta))``, b and
    top in [0, 1], least squares from two starts on the runs' final values (the form and
    bounds of `analysis.laws.two_step._single_step_many`, fitted for all tasks at once by
    `analysis.predict.single_step`).
    Interval: even batched, a refit costs ~0.5 s per 46 tasks, too much to bootstrap in
    every backtest fold, so the raw half-width is z x the task's in-sample RMSE, grown with
    the number of rungs extrapolated (`extrapolation_factor`); calibration scales it.
    """
    Y = ladder.acc.to_numpy(float).T
    Nr, Dr = ladder.runs["N"].to_numpy(), ladder.runs["D"].to_numpy()
    P = fit_many(Nr, Dr, Y, np.ones((1, Nr.size)))[0]
    pred = predict_single(P, N, D)
    with np.errstate(all="ignore"):
        rmse = np.sqrt(np.nanmean((predict_single(P, Nr, Dr) - Y) ** 2, axis=1))
    hw = z_value(s.level) * rmse[:, None] * extrapolation_factor(ladder, N, D)[None, :]
    return Output(pred, hw, hw)


#: the exp law's bounds for `log_acc_compute`: slopes in compute are small, so a finer
#: gamma grid over [0, 2] and a wider amplitude range than the loss-based law's
LOG_ACC_FIT = FitConfig(gamma_max=2.0, gamma_steps=81, ln_k_max=80.0)


def log_acc_compute(ladder: Ladder, N, D, s: Settings, rng) -> Output:
    """Log-accuracy power law in compute (Krajewski et al. 2025):
    ``-ln acc = E + A C^-alpha``, C = 6 N D, least squares on ln acc, E in [0, 1],
    A >= 0, alpha in [0, 2]. It is the exp law of `analysis.downstream_laws` with x = ln C
    and ``1 - y = eps - k exp(-gamma x)`` for y = -ln acc (E = 1 - eps, A = k,
    alpha = gamma): closed form over a grid of alpha, then a golden-section refinement.
    Fitted on every run at once (all token-to-parameter ratios). Bootstrap: `n_boot_grid`
    resamples of runs.
    """
    x = np.log(ladder.runs["C"].to_numpy())
    A = ladder.acc.to_numpy(float)
    y = -np.log(np.where((A > 0) & (A <= 1), A, np.nan))
    W = resample_weights(ladder, s.n_boot_grid, rng)
    g = fit_exp_grid(x, y, W, LOG_ACC_FIT)
    point = refine_exp(x, y, W[0], g, 0, LOG_ACC_FIT)
    xt = np.log(6.0 * np.asarray(N, float) * np.asarray(D, float))

    def acc(eps, ln_k, gamma):  # exp_law_acc gives 1 - err = y; acc = exp(-y)
        return np.exp(-exp_law_acc(xt, eps[..., None], ln_k[..., None], gamma[..., None]))

    pred = acc(point.eps[0], point.ln_k[0], point.gamma[0])
    base = acc(g.eps[0], g.ln_k[0], g.gamma[0])
    boot = np.clip(acc(g.eps[1:], g.ln_k[1:], g.gamma[1:]) - base[None] + pred[None], 0, 1)
    lo, hi = _half_widths(pred, boot, s.level)
    return Output(pred, lo, hi)


def naive(ladder: Ladder, N, D, s: Settings, rng) -> Output:
    """Naive baseline: every target scores what the training run with the most compute
    scored. Raw half-width: that run's gain over the largest run of the size below,
    times the number of such steps to the target (`extrapolation_factor`)."""
    runs = ladder.runs
    top = runs["C"].idxmax()
    pred = np.tile(ladder.acc.loc[top].to_numpy(float)[:, None], (1, len(N)))
    below = runs[runs["N"] < runs.at[top, "N"]]
    if below.empty:
        gain = np.full(len(ladder.tasks), np.nan)
    else:
        prev = below["C"].idxmax()
        gain = np.abs(ladder.acc.loc[top] - ladder.acc.loc[prev]).to_numpy(float)
    hw = gain[:, None] * extrapolation_factor(ladder, N, D)[None, :]
    return Output(pred, hw, hw)


def extrapolation_factor(ladder: Ladder, N, D) -> np.ndarray:
    """Rungs to the target: log(C_target / C_max) / log(C_max / C_max of the size below),
    at least 1."""
    runs = ladder.runs
    cmax = runs["C"].max()
    below = runs.loc[runs["N"] < runs.loc[runs["C"].idxmax(), "N"], "C"]
    step = np.log(cmax / below.max()) if len(below) and below.max() < cmax else 1.0
    ct = 6.0 * np.asarray(N, float) * np.asarray(D, float)
    return np.maximum(1.0, np.log(np.maximum(ct, cmax) / cmax) / max(step, 1e-9))


def z_value(level: float) -> float:
    from scipy.stats import norm

    return float(norm.ppf(0.5 + level / 2))


#: name -> predictor (the order is the tie-break when two methods err alike)
METHODS = {
    "two_step": two_step,
    "two_step_loss": two_step_loss,
    "single_step": single_step,
    "gadre_exp": gadre_exp,
    "log_acc_compute": log_acc_compute,
    "naive": naive,
}
