"""Loss scaling laws, fitted as Chinchilla approach 3 (Hoffmann et al. 2022; Besiroglu et
al. 2024): Huber loss (delta = 1e-3) on log residuals, log L written as a logsumexp of
terms so every parameter is unconstrained, L-BFGS from the best points of an
initialisation grid. Bootstrap resamples of the runs are fitted together as one
block-separable L-BFGS problem (one vectorised objective; no Python loop per resample).

Laws (inputs: N params, D tokens, C = 6 N D FLOPs, M = D / N tokens per parameter):

* ``chinchilla``: ``L(N, D) = E + A / N^alpha + B / D^beta``
* ``gadre``:      ``L(C, M) = E + (a M^eta + b M^-eta) C^-eta``  (Gadre et al. 2024)
* ``compute``:    ``L(C) = E + A C^-alpha``
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import minimize

from analysis.errors import warn
from analysis.groups.build import percentile_ci

#: law -> (log-space parameter names, natural parameter names, inputs)
LAWS: dict[str, tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]] = {
    "chinchilla": (("e", "a", "b", "alpha", "beta"), ("E", "A", "B", "alpha", "beta"), ("N", "D")),
    "gadre": (("e", "a", "b", "eta"), ("E", "a", "b", "eta"), ("C", "M")),
    "compute": (("e", "a", "alpha"), ("E", "A", "alpha"), ("C",)),
}


def logsumexp(a: np.ndarray, axis: int = -1) -> np.ndarray:
    """log(sum(exp(a))) along `axis` (plain numpy: scipy's version costs more per call)."""
    m = np.max(a, axis=axis, keepdims=True)
    return np.squeeze(m, axis) + np.log(np.sum(np.exp(a - m), axis=axis))


def law_features(law: str, X: dict[str, np.ndarray], ref: dict[str, float]):
    """Centered logs of the inputs (centering keeps L-BFGS well conditioned)."""
    return {k: np.log(np.asarray(X[k], float)) - ref.get(k, 0.0) for k in LAWS[law][2]}


def law_terms(law: str, th: np.ndarray, f: dict[str, np.ndarray]):
    """Log-terms (R, n, J) for parameters th (R, P), and their Jacobian (n, J, P).

    Every term is linear in the log-space parameters, so the Jacobian does not depend on
    them and is shared by all resamples (the gradient is then one matrix product).
    """
    if law == "chinchilla":
        lN, lD = f["N"], f["D"]
        J = np.zeros((lN.size, 3, 5))
        J[:, 0, 0] = 1
        J[:, 1, 1], J[:, 1, 3] = 1, -lN
        J[:, 2, 2], J[:, 2, 4] = 1, -lD
    elif law == "gadre":
        lC, lM = f["C"], f["M"]
        J = np.zeros((lC.size, 3, 4))
        J[:, 0, 0] = 1
        J[:, 1, 1], J[:, 1, 3] = 1, lM - lC
        J[:, 2, 2], J[:, 2, 3] = 1, -(lM + lC)
    else:
        lC = f["C"]
        J = np.zeros((lC.size, 2, 3))
        J[:, 0, 0] = 1
        J[:, 1, 1], J[:, 1, 2] = 1, -lC
    return np.einsum("njp,rp->rnj", J, th), J


def _objective(law, f, logy, w, delta):
    R = w.shape[0]

    def fun(flat):
        th = flat.reshape(R, -1)
        T, J = law_terms(law, th, f)
        lse = logsumexp(T, axis=-1)
        r = lse - logy[None]
        ar = np.abs(r)
        h = np.where(ar <= delta, 0.5 * r * r, delta * (ar - 0.5 * delta))
        dh = np.clip(r, -delta, delta) * w
        soft = np.exp(T - lse[..., None])  # d lse / d term
        grad = (dh[..., None] * soft).reshape(R, -1) @ J.reshape(-1, J.shape[-1])
        return float((w * h).sum()), grad.ravel()

    return fun


def law_init_grid(law: str) -> np.ndarray:
    e = [-1.0, 0.0, 0.5, 1.0, 1.5]
    g: Iterable[tuple[float, ...]]
    if law == "chinchilla":
        g = itertools.product(
            e, [0, 5, 10, 15, 20], [0, 5, 10, 15, 20], [0, 0.5, 1, 2], [0, 0.5, 1, 2]
        )
    elif law == "gadre":
        g = itertools.product(e, [-2, 0, 2, 5], [-2, 0, 2, 5], [0.05, 0.1, 0.2, 0.4, 0.8])
    else:
        g = itertools.product(e, [-2, 0, 2, 5], [0.05, 0.1, 0.2, 0.4, 0.8])
    return np.array(list(g), float)


@dataclass
class LossLawFit:
    """A fitted loss law (formula in the module doc); natural parameters and intervals."""

    law: str
    params: dict[str, float]
    n: int
    rmse: float  # of L itself
    r2: float  # of L itself
    param_ci: dict[str, tuple[float, float]] = field(default_factory=dict)
    theta: np.ndarray | None = field(default=None, repr=False)  # log-space point (P,)
    boot: np.ndarray | None = field(default=None, repr=False)  # log-space resamples (R, P)
    ref: dict[str, float] = field(default_factory=dict, repr=False)

    def predict(self, X: dict[str, np.ndarray]) -> np.ndarray:
        if self.theta is None:
            raise ValueError(f"{self.law} law: no fitted parameters (theta) to predict with")
        f = law_features(self.law, X, self.ref)
        return np.exp(logsumexp(law_terms(self.law, self.theta[None], f)[0][0], axis=-1))

    def predict_ci(self, X: dict[str, np.ndarray], ci: float) -> tuple[np.ndarray, np.ndarray]:
        if self.boot is None or len(self.boot) < 3:
            nan = np.full(np.asarray(next(iter(X.values()))).shape, np.nan)
            return nan, nan
        f = law_features(self.law, X, self.ref)
        pred = np.exp(logsumexp(law_terms(self.law, self.boot, f)[0], axis=-1))
        return percentile_ci(pred, ci)


def _natural(law: str, th: np.ndarray, ref: dict[str, float]) -> np.ndarray:
    """Log-space centered parameters -> natural parameters (..., P)."""
    th = np.array(th, float)
    out = th.copy()
    if law == "chinchilla":
        out[..., 1] = th[..., 1] + th[..., 3] * ref["N"]
        out[..., 2] = th[..., 2] + th[..., 4] * ref["D"]
        out[..., :3] = np.exp(out[..., :3])
    elif law == "gadre":
        out[..., 1] = th[..., 1] + th[..., 3] * ref["C"]
        out[..., 2] = th[..., 2] + th[..., 3] * ref["C"]
        out[..., :3] = np.exp(out[..., :3])
    else:
        out[..., 1] = th[..., 1] + th[..., 2] * ref["C"]
        out[..., :2] = np.exp(out[..., :2])
    return out


def fit_loss_law(
    law: str,
    X: dict[str, np.ndarray],
    loss: np.ndarray,
    n_boot: int = 0,
    seed: int = 0,
    delta: float = 1e-3,
    ci: float = 0.9,
    n_starts: int = 6,
) -> LossLawFit | None:
    """Fit `law` to losses at inputs X; None (with a warning) when it cannot be fitted."""
    names_log, names, inputs = LAWS[law]
    missing = [k for k in inputs if k not in X]
    if missing:
        raise ValueError(f"law {law} needs inputs {missing}")
    loss = np.asarray(loss, float)
    ok = np.isfinite(loss) & (loss > 0)
    for k in inputs:
        ok &= np.isfinite(np.asarray(X[k], float)) & (np.asarray(X[k], float) > 0)
    n, P = int(ok.sum()), len(names)
    if n < P + 1:
        warn(f"loss law {law}: {n} usable points for {P} parameters; not fitted")
        return None
    Xo = {k: np.asarray(X[k], float)[ok] for k in inputs}
    ref = {k: float(np.median(np.log(v))) for k, v in Xo.items() if k != "M"}
    f, logy = law_features(law, Xo, ref), np.log(loss[ok])
    grid = law_init_grid(law)
    fun_grid = _objective(law, f, logy, np.ones((grid.shape[0], n)), delta)
    T, _ = law_terms(law, grid, f)
    r = logsumexp(T, axis=-1) - logy[None]
    per = np.where(np.abs(r) <= delta, 0.5 * r * r, delta * (np.abs(r) - 0.5 * delta)).sum(1)
    del fun_grid
    best, best_val = None, np.inf
    fun1 = _objective(law, f, logy, np.ones((1, n)), delta)
    for i in np.argsort(per)[:n_starts]:
        res = minimize(
            fun1,
            grid[i],
            jac=True,
            method="L-BFGS-B",
            options={"maxiter": 2000, "ftol": 1e-15, "gtol": 1e-12},
        )
        if res.fun < best_val and np.all(np.isfinite(res.x)):
            best, best_val = res.x, res.fun
    if best is None:
        warn(f"loss law {law}: optimiser failed")
        return None
    fit = LossLawFit(law, {}, n, np.nan, np.nan, theta=best, ref=ref)
    pred = fit.predict(Xo)
    sst = float(((loss[ok] - loss[ok].mean()) ** 2).sum())
    fit.rmse = float(np.sqrt(np.mean((pred - loss[ok]) ** 2)))
    fit.r2 = float(1 - ((pred - loss[ok]) ** 2).sum() / sst) if sst > 0 else np.nan
    fit.params = dict(zip(names, map(float, _natural(law, best, ref)), strict=True))
    if n_boot > 0:
        rng = np.random.default_rng(seed)
        W = rng.multinomial(n, np.full(n, 1.0 / n), n_boot).astype(float)
        funb = _objective(law, f, logy, W, delta)
        res = minimize(
            funb,
            np.tile(best, n_boot),
            jac=True,
            method="L-BFGS-B",
            options={"maxiter": 1500, "ftol": 1e-15, "gtol": 1e-10},
        )
        fit.boot = res.x.reshape(n_boot, P)
        lo, hi = percentile_ci(_natural(law, fit.boot, ref), ci)
        fit.param_ci = {k: (float(a), float(b)) for k, a, b in zip(names, lo, hi, strict=True)}
    return fit


def predict_natural(law: str, params: dict[str, float], X: dict[str, np.ndarray]) -> np.ndarray:
    """Evaluate a law from its natural parameters (as stored in fits.csv)."""
    p = params
    if law == "chinchilla":
        N, D = np.asarray(X["N"], float), np.asarray(X["D"], float)
        return p["E"] + p["A"] * N ** -p["alpha"] + p["B"] * D ** -p["beta"]
    if law == "gadre":
        C, M = np.asarray(X["C"], float), np.asarray(X["M"], float)
        return p["E"] + (p["a"] * M ** p["eta"] + p["b"] * M ** -p["eta"]) * C ** -p["eta"]
    if law == "compute":
        return p["E"] + p["A"] * np.asarray(X["C"], float) ** -p["alpha"]
    raise ValueError(f"unknown loss law {law!r}")


def law_inputs(n_params: np.ndarray, tokens: np.ndarray) -> dict[str, np.ndarray]:
    """All law inputs from parameters and tokens: N, D, C = 6 N D, M = D / N."""
    N, D = np.asarray(n_params, float), np.asarray(tokens, float)
    return {"N": N, "D": D, "C": 6.0 * N * D, "M": D / N}
