"""Downstream laws: task accuracy as a function of a loss, fitted for many tasks at once.

Three laws, each fitted in closed form over a grid of its nonlinear parameter(s) so that
every task and every bootstrap resample is fitted by batched numpy linear algebra
(differential evolution, as used in the paper, is ~1000x slower and not deterministic):

* ``exp``: Gadre et al. / Lourie et al. ``err = eps - k * exp(-gamma * L)``, acc = 1 - err,
  bounds eps in [0, 1], ln k in [0, ln_k_max], gamma in [0, gamma_max]. For fixed gamma the
  model is linear in (eps, k), so the bounded least-squares optimum is the best of the
  interior solution and the clipped optima on the four box edges; we take the best gamma
  on a grid and then refine gamma by a vectorised golden-section search (point fits only).
* ``sigmoid``: the second step of a two-step ladder (Bhagia et al. 2024),
  ``acc = a / (1 + exp(-s (x - x0))) + b``; (a, b) closed form over a grid of (|s|, x0),
  reported in the canonical branch a >= 0 (the direction is the sign of s).
* ``linear``: linear after a monotone transform, ``logit((acc - chance) / (1 - chance))
  = alpha + beta * L`` (normalised accuracy clipped to [0.01, 0.99]); R^2 in that space.

All batched functions take x (n,), Y (n, T) with NaN for missing, and weights W (R, n)
(row 0 = all ones for the point fit; other rows = bootstrap counts or hold-out masks).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from analysis.config import FitConfig

_TINY = 1e-300


def r_squared(sse: np.ndarray, sst: np.ndarray) -> np.ndarray:
    """1 - SSE/SST, NaN where the data have no variance."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(sst > 0, 1.0 - sse / sst, np.nan)


@dataclass
class ExpGrid:
    """Batched exp-law fits: arrays (R, T). ``acc(L) = 1 - eps + exp(ln_k - gamma * L)``.

    r2 = 1 - SSE / SST with both sums weighted by the resample's weights.
    """

    eps: np.ndarray
    ln_k: np.ndarray
    gamma: np.ndarray
    sse: np.ndarray
    sst: np.ndarray

    @property
    def r2(self) -> np.ndarray:
        return r_squared(self.sse, self.sst)


@dataclass
class ExpLawFit:
    """One exp-law fit: ``err(L) = eps - exp(ln_k) * exp(-gamma * L)``, acc = 1 - err."""

    eps: float
    ln_k: float
    gamma: float
    r2: float
    rmse: float
    n: int

    def predict(self, loss: np.ndarray) -> np.ndarray:
        return exp_law_acc(np.asarray(loss, float), self.eps, self.ln_k, self.gamma)


def exp_law_acc(loss: np.ndarray, eps, ln_k, gamma) -> np.ndarray:
    """Accuracy of the exp law: ``1 - eps + exp(ln_k - gamma * L)`` (broadcasting)."""
    return 1.0 - eps + np.exp(np.minimum(ln_k - gamma * loss, 50.0))


def stable_argmin(a: np.ndarray, axis: int, rtol: float = 1e-9) -> np.ndarray:
    """Index of the minimum along `axis`, the lowest index among values within `rtol` of it.

    Sums computed by BLAS differ in the last bits between thread counts and CPUs; a plain
    argmin would then pick between near-equal grid points by rounding noise, so the same
    data could give different fits on different machines.
    """
    a = np.where(np.isfinite(a), a, np.inf)
    m = np.min(a, axis=axis, keepdims=True)
    near = a <= m + rtol * np.abs(m) + 1e-300
    return np.argmax(near, axis=axis)


def _edge_solutions(Sw, Su, Suu, Sy, Syy, Suy, klo, khi):
    """Best (eps, k, sse) of err = eps + k u over the box eps in [0,1], k in [klo, khi].

    Inputs are weighted sufficient statistics (any common broadcastable shape).
    """

    def sse(e, k):
        return Syy - 2 * e * Sy - 2 * k * Suy + e * e * Sw + 2 * e * k * Su + k * k * Suu

    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        det = Sw * Suu - Su * Su
        k_int = (Sw * Suy - Su * Sy) / det
        e_int = (Sy - k_int * Su) / Sw
        ok = (det > 1e-12 * np.maximum(Sw * Suu, _TINY)) & (k_int >= klo) & (k_int <= khi)
        ok &= (e_int >= 0) & (e_int <= 1)
        cands = []
        for k in (klo, khi):
            k = np.broadcast_to(k, np.broadcast(Sw, Su).shape)
            e = np.clip((Sy - k * Su) / Sw, 0.0, 1.0)
            cands.append((e, k))
        for e0 in (0.0, 1.0):
            k = np.clip((Suy - e0 * Su) / np.maximum(Suu, _TINY), klo, khi)
            cands.append((np.full_like(k, e0), k))
        best_e, best_k = cands[0]
        best = sse(best_e, best_k)
        for e, k in cands[1:] + [(np.where(ok, e_int, 0.0), np.where(ok, k_int, klo))]:
            s = sse(e, k)
            s = np.where(np.isfinite(s), s, np.inf)
            take = s < best
            best, best_e, best_k = (
                np.where(take, s, best),
                np.where(take, e, best_e),
                np.where(take, k, best_k),
            )
    return best_e, best_k, np.maximum(best, 0.0)


def _prep(x: np.ndarray, Y: np.ndarray):
    x = np.asarray(x, float)
    Y = np.asarray(Y, float)
    if Y.ndim == 1:
        Y = Y[:, None]
    M = np.isfinite(Y) & np.isfinite(x)[:, None]
    E = np.where(M, 1.0 - Y, 0.0)  # error = 1 - acc; masked cells contribute nothing
    x_ref = float(np.nanmin(x[np.isfinite(x)])) if np.isfinite(x).any() else 0.0
    xs = np.where(np.isfinite(x), x - x_ref, 0.0)
    return xs, x_ref, E, M.astype(float)


def fit_exp_grid(
    x: np.ndarray, Y: np.ndarray, W: np.ndarray, cfg: FitConfig | None = None, chunk: int = 200
) -> ExpGrid:
    """Grid fit of the exp law for every resample row of W and every task column of Y.

    u = -exp(-gamma (L - L_min)) keeps the design well scaled; k' = k exp(-gamma L_min).
    """
    cfg = cfg or FitConfig()
    xs, x_ref, E, M = _prep(x, Y)
    W = np.atleast_2d(np.asarray(W, float))
    n, T = E.shape
    gammas = np.linspace(0.0, cfg.gamma_max, cfg.gamma_steps)
    G = gammas.size
    U = -np.exp(-np.outer(xs, gammas))  # (n, G)
    klo = np.exp(-gammas * x_ref)  # bounds of k' from ln k in [0, ln_k_max]
    khi = np.exp(cfg.ln_k_max - gammas * x_ref)
    # per-cell products, flattened so one matmul gives every (task, gamma) statistic
    MU = (M[:, :, None] * U[:, None, :]).reshape(n, T * G)
    MUU = (M[:, :, None] * (U * U)[:, None, :]).reshape(n, T * G)
    EU = (E[:, :, None] * U[:, None, :]).reshape(n, T * G)
    out = {k: np.empty((W.shape[0], T)) for k in ("eps", "ln_k", "gamma", "sse", "sst")}
    for lo in range(0, W.shape[0], chunk):
        w = W[lo : lo + chunk]
        r = w.shape[0]
        Sw, Sy, Syy = w @ M, w @ E, w @ (E * E)
        Su = (w @ MU).reshape(r, T, G)
        Suu = (w @ MUU).reshape(r, T, G)
        Suy = (w @ EU).reshape(r, T, G)
        e, k, s = _edge_solutions(
            Sw[..., None], Su, Suu, Sy[..., None], Syy[..., None], Suy, klo, khi
        )
        g = stable_argmin(s, axis=2)

        def take(a, g=g):
            return np.take_along_axis(a, g[..., None], 2)[..., 0]

        kb = take(k)
        sl = slice(lo, lo + r)
        out["eps"][sl], out["sse"][sl], out["gamma"][sl] = take(e), take(s), gammas[g]
        out["ln_k"][sl] = np.log(np.maximum(kb, _TINY)) + gammas[g] * x_ref
        with np.errstate(invalid="ignore", divide="ignore"):
            out["sst"][sl] = np.maximum(Syy - Sy * Sy / Sw, 0.0)
    bad = (W @ M) < 3  # fewer than 3 points: no fit
    for key in out:
        out[key][bad] = np.nan
    return ExpGrid(**out)


def _closed_form_at(xs, x_ref, E, M, w, gamma, cfg):
    """Best (eps, k', sse) at per-task gamma (T,) for one weight vector w (n,)."""
    U = -np.exp(-xs[:, None] * gamma[None, :])  # (n, T)
    wm = w[:, None] * M
    Sw, Sy, Syy = wm.sum(0), (wm * E).sum(0), (wm * E * E).sum(0)
    Su, Suu, Suy = (wm * U).sum(0), (wm * U * U).sum(0), (wm * U * E).sum(0)
    klo, khi = np.exp(-gamma * x_ref), np.exp(cfg.ln_k_max - gamma * x_ref)
    return _edge_solutions(Sw, Su, Suu, Sy, Syy, Suy, klo, khi)


def refine_exp(
    x: np.ndarray,
    Y: np.ndarray,
    w: np.ndarray,
    grid: ExpGrid,
    row: int = 0,
    cfg: FitConfig | None = None,
    iters: int = 40,
) -> ExpGrid:
    """Golden-section refinement of gamma within one grid step, all tasks at once."""
    cfg = cfg or FitConfig()
    xs, x_ref, E, M = _prep(x, Y)
    step = cfg.gamma_max / max(cfg.gamma_steps - 1, 1)
    g0 = np.nan_to_num(grid.gamma[row])
    a, b = np.clip(g0 - step, 0, cfg.gamma_max), np.clip(g0 + step, 0, cfg.gamma_max)
    phi = (np.sqrt(5) - 1) / 2
    for _ in range(iters):
        c, d = b - phi * (b - a), a + phi * (b - a)
        fc = _closed_form_at(xs, x_ref, E, M, w, c, cfg)[2]
        fd = _closed_form_at(xs, x_ref, E, M, w, d, cfg)[2]
        left = fc < fd
        a, b = np.where(left, a, c), np.where(left, d, b)
    gam = 0.5 * (a + b)
    e, k, s = _closed_form_at(xs, x_ref, E, M, w, gam, cfg)
    keep = ~(s < grid.sse[row])  # never worse than the grid point
    eps = np.where(keep, grid.eps[row], e)
    ln_k = np.where(keep, grid.ln_k[row], np.log(np.maximum(k, _TINY)) + gam * x_ref)
    gamma = np.where(keep, grid.gamma[row], gam)
    sse = np.where(keep, grid.sse[row], s)
    return ExpGrid(eps[None], ln_k[None], gamma[None], sse[None], grid.sst[row][None])


def fit_exp_law(loss: np.ndarray, acc: np.ndarray, cfg: FitConfig | None = None) -> ExpLawFit:
    """Fit ``err = eps - k exp(-gamma L)`` to one task (grid + golden-section refinement)."""
    cfg = cfg or FitConfig()
    loss, acc = np.asarray(loss, float), np.asarray(acc, float)
    w = np.ones((1, loss.size))
    grid = fit_exp_grid(loss, acc, w, cfg)
    if cfg.refine:
        grid = refine_exp(loss, acc, w[0], grid, 0, cfg)
    n = int((np.isfinite(loss) & np.isfinite(acc)).sum())
    return ExpLawFit(
        float(grid.eps[0, 0]),
        float(grid.ln_k[0, 0]),
        float(grid.gamma[0, 0]),
        float(grid.r2[0, 0]),
        float(np.sqrt(grid.sse[0, 0] / max(n, 1))),
        n,
    )


@dataclass
class SigmoidFits:
    """Batched sigmoid fits (arrays (R, T)): ``acc = a / (1 + exp(-s (x - x0))) + b``."""

    a: np.ndarray
    b: np.ndarray
    s: np.ndarray
    x0: np.ndarray
    sse: np.ndarray
    sst: np.ndarray

    @property
    def r2(self) -> np.ndarray:
        return r_squared(self.sse, self.sst)


def sigmoid_acc(x: np.ndarray, a, b, s, x0) -> np.ndarray:
    """``a / (1 + exp(-s (x - x0))) + b`` (broadcasting)."""
    return a / (1.0 + np.exp(np.clip(-s * (x - x0), -50, 50))) + b


def fit_sigmoid_batch(
    x: np.ndarray, Y: np.ndarray, W: np.ndarray, n_s: int = 24, n_x0: int = 32
) -> SigmoidFits:
    """Grid over slope magnitude (log-spaced) and midpoint x0; (a, b) in closed form.

    Canonical form: the law is symmetric under (a, b, s) -> (-a, b + a, -s), so without a
    convention two machines can return either mirror image of one curve. The grid uses
    positive slopes only (the closed-form a carries the direction) and the result is then
    mapped to a >= 0, s of either sign: a is the amplitude, sign(s) the direction.
    """
    x = np.asarray(x, float)
    Y = np.atleast_2d(np.asarray(Y, float).T).T
    W = np.atleast_2d(np.asarray(W, float))
    M = (np.isfinite(Y) & np.isfinite(x)[:, None]).astype(float)
    Yz = np.where(M > 0, Y, 0.0)
    xf = x[np.isfinite(x)]
    R, T = W.shape[0], Y.shape[1]
    nan = np.full((R, T), np.nan)
    if xf.size < 4 or np.ptp(xf) <= 0:
        return SigmoidFits(nan, nan, nan, nan, nan, nan)
    span, lo = np.ptp(xf), xf.min()
    slopes = np.geomspace(1.0, 60.0, n_s // 2) / span
    x0s = np.linspace(lo - 0.25 * span, lo + 1.25 * span, n_x0)
    S = 1.0 / (
        1.0
        + np.exp(
            np.clip(
                -slopes[None, :, None]
                * (np.where(np.isfinite(x), x, lo)[:, None, None] - x0s[None, None, :]),
                -50,
                50,
            )
        )
    )
    S = S.reshape(x.size, -1)  # (n, P)
    P = S.shape[1]
    best = {k: np.full((R, T), np.nan) for k in ("a", "b", "s", "x0", "sse")}
    best["sse"][:] = np.inf
    Sw, Sy, Syy = W @ M, W @ Yz, W @ (Yz * Yz)
    for p0 in range(0, P, 64):
        Sp = S[:, p0 : p0 + 64]
        q = Sp.shape[1]
        Ss = np.einsum("rn,np,nt->rpt", W, Sp, M, optimize=True)
        Sss = np.einsum("rn,np,nt->rpt", W, Sp * Sp, M, optimize=True)
        Ssy = np.einsum("rn,np,nt->rpt", W, Sp, Yz, optimize=True)
        with np.errstate(divide="ignore", invalid="ignore"):
            det = Sw[:, None] * Sss - Ss * Ss
            a = (Sw[:, None] * Ssy - Ss * Sy[:, None]) / det
            b = (Sy[:, None] - a * Ss) / Sw[:, None]
            sse = (
                Syy[:, None]
                - 2 * a * Ssy
                - 2 * b * Sy[:, None]
                + a * a * Sss
                + 2 * a * b * Ss
                + b * b * Sw[:, None]
            )
        sse = np.where(np.isfinite(sse) & (det > 1e-12), sse, np.inf)
        j = stable_argmin(sse, axis=1)  # (R, T)
        sj = np.take_along_axis(sse, j[:, None], 1)[:, 0]
        take = sj < best["sse"] * (1 - 1e-9)  # an earlier chunk wins near-ties
        idx = p0 + j
        for key, val in (
            ("a", np.take_along_axis(a, j[:, None], 1)[:, 0]),
            ("b", np.take_along_axis(b, j[:, None], 1)[:, 0]),
            ("s", slopes[idx // n_x0]),
            ("x0", x0s[idx % n_x0]),
            ("sse", sj),
        ):
            best[key] = np.where(take, val, best[key])
        del q
    flip = best["a"] < 0  # canonical mirror image: a >= 0
    best["b"] = np.where(flip, best["b"] + best["a"], best["b"])
    best["a"], best["s"] = np.abs(best["a"]), np.where(flip, -best["s"], best["s"])
    with np.errstate(divide="ignore", invalid="ignore"):
        sst = np.maximum(Syy - Sy * Sy / Sw, 0.0)
    bad = Sw < 5  # 4 parameters: need at least 5 points
    for key in best:
        best[key] = np.where(bad | ~np.isfinite(best["sse"]), np.nan, best[key])
    return SigmoidFits(sst=np.where(bad, np.nan, sst), **best)


@dataclass
class LinearFits:
    """Batched fits ``logit((acc - c) / (1 - c)) = alpha + beta * L`` (arrays (R, T))."""

    alpha: np.ndarray
    beta: np.ndarray
    r2: np.ndarray


def _logit_norm(Y: np.ndarray, chance: np.ndarray) -> np.ndarray:
    c = np.nan_to_num(np.asarray(chance, float), nan=0.0)
    z = np.clip((Y - c) / np.maximum(1.0 - c, 1e-9), 0.01, 0.99)
    return np.log(z / (1 - z))


def linear_acc(loss: np.ndarray, alpha, beta, chance) -> np.ndarray:
    """Back-transform of the linear law: ``c + (1 - c) * sigmoid(alpha + beta L)``."""
    c = np.nan_to_num(np.asarray(chance, float), nan=0.0)
    return c + (1 - c) / (1 + np.exp(-(alpha + beta * loss)))


def fit_linear_batch(x: np.ndarray, Y: np.ndarray, chance: np.ndarray, W: np.ndarray) -> LinearFits:
    """Weighted least squares of the logit-normalised accuracy on the loss."""
    x = np.asarray(x, float)
    Y = np.atleast_2d(np.asarray(Y, float).T).T
    W = np.atleast_2d(np.asarray(W, float))
    M = (np.isfinite(Y) & np.isfinite(x)[:, None]).astype(float)
    Z = np.where(M > 0, _logit_norm(np.nan_to_num(Y), chance), 0.0)
    X = np.where(np.isfinite(x), x, 0.0)[:, None] * M
    Sw, Sx, Sxx = W @ M, W @ X, W @ (X * X)
    Sz, Szz, Sxz = W @ Z, W @ (Z * Z), W @ (X * Z)
    with np.errstate(divide="ignore", invalid="ignore"):
        vxx = Sxx - Sx * Sx / Sw
        beta = (Sxz - Sx * Sz / Sw) / vxx
        alpha = (Sz - beta * Sx) / Sw
        szz = Szz - Sz * Sz / Sw
        r2 = np.where(szz > 1e-12, (beta * (Sxz - Sx * Sz / Sw)) / szz, np.nan)
    bad = (Sw < 3) | ~(vxx > 1e-15)
    return LinearFits(
        np.where(bad, np.nan, alpha), np.where(bad, np.nan, beta), np.where(bad, np.nan, r2)
    )


def predict(law: str, params: dict, x: np.ndarray) -> np.ndarray:
    """Evaluate a stored downstream fit (as written to fits.csv / trends.csv)."""
    x = np.asarray(x, float)
    if law == "exp":
        return exp_law_acc(x, params["eps"], params["ln_k"], params["gamma"])
    if law == "sigmoid":
        return sigmoid_acc(x, params["a"], params["b"], params["s"], params["x0"])
    if law == "linear":
        return linear_acc(x, params["alpha"], params["beta"], params.get("chance", 0.0))
    raise ValueError(f"unknown downstream law {law!r}")
