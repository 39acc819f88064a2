"""Explicit, numeric trend classification (replacing the paper's by-eye labels).

Models (final checkpoints) are ordered from worst to best validation loss and split into
K = clamp(n // min_per_bin, 2, max_bins) equal-count bins; each bin has a mean accuracy m_b
and a standard error se_b = sqrt(max(sample variance, mean binomial variance) / n_b), so
noise is judged against the measurement's own binomial error. For bins a < b (a = worse
loss) let d_ab = m_b - m_a and z_ab = d_ab / sqrt(se_a^2 + se_b^2). Rules, first match wins:

1. insufficient  n < min_models (not one of the six categories).
2. trendless     no pair with |d_ab| >= min_effect and |z_ab| >= z_trend, or the best bin
                 mean < chance + chance_margin (flat, or at chance throughout).
3. nonmonotonic  a significant rise (d_ab >= min_step and z_ab >= z_step for some a < b)
                 and a significant drop (-d_ab >= min_step and -z_ab >= z_step).
4. inverse       only significant drops (accuracy falls as loss improves).
5. breakthrough  increasing, K >= 4, with D = max_b m_b - m_0: m_1 - m_0 <= flat_frac D
                 (flat start), one adjacent step m_{j+1} - m_j >= jump_frac D with j >= 1
                 and j + 1 <= K - 2 (abrupt rise, not at the end), and
                 m_{K-1} - m_{K-2} <= plateau_frac D (plateau).
6. predictable   increasing and R^2 of the exp law err = eps - k exp(-gamma L) >= r2_min;
   noisy         increasing and R^2 < r2_min.

Stability: the same rules run on every bootstrap resample of models (bins keep the
original loss order); p_<category> is the share of resamples in that category.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis.config import ClassifyConfig, FitConfig
from analysis.downstream_laws import ExpGrid, fit_exp_grid, refine_exp
from analysis.matrix import Group

CATEGORIES = ("predictable", "inverse", "nonmonotonic", "noisy", "trendless", "breakthrough")
INSUFFICIENT = "insufficient"
LABELS = CATEGORIES + (INSUFFICIENT,)


@dataclass
class TrendFeatures:
    """Bin statistics per (resample, task): arrays (R, T) unless noted."""

    n_models: np.ndarray
    n_bins: int
    means: np.ndarray  # (R, K, T) bin mean accuracy, worst loss first
    rise: np.ndarray  # bool: some significant rise
    drop: np.ndarray  # bool: some significant drop
    trend: np.ndarray  # bool: some pair passes z_trend and min_effect
    best: np.ndarray  # best bin mean
    r2: np.ndarray  # R^2 of the exp law


def bin_index(x: np.ndarray, cfg: ClassifyConfig) -> tuple[np.ndarray, int]:
    """Equal-count bin of each model, 0 = worst (highest) loss; returns (bins, K)."""
    n = x.size
    k = int(np.clip(n // max(cfg.min_per_bin, 1), 2, max(cfg.max_bins, 2)))
    order = np.argsort(-x, kind="stable")
    bins = np.empty(n, dtype=int)
    bins[order] = (np.arange(n) * k) // max(n, 1)
    return bins, k


def trend_features(x: np.ndarray, Y: np.ndarray, S: np.ndarray, W: np.ndarray,
                   r2: np.ndarray, cfg: ClassifyConfig) -> TrendFeatures:
    """Compute the rule inputs for every resample row of W (R, n) and task column of Y."""
    bins, K = bin_index(x, cfg)
    B = np.eye(K)[bins]  # (n, K)
    M = np.isfinite(Y).astype(float)
    Yz, S2 = np.where(M > 0, Y, 0.0), np.where(np.isfinite(S) & (M > 0), S * S, 0.0)
    WB = W[:, :, None] * B[None]  # (R, n, K)
    cnt = np.einsum("rnk,nt->rkt", WB, M)
    sy = np.einsum("rnk,nt->rkt", WB, Yz)
    syy = np.einsum("rnk,nt->rkt", WB, Yz * Yz)
    ss2 = np.einsum("rnk,nt->rkt", WB, S2)
    with np.errstate(divide="ignore", invalid="ignore"):
        m = np.where(cnt > 0, sy / cnt, np.nan)
        var = np.where(cnt > 1, (syy - sy * sy / cnt) / (cnt - 1), 0.0)
        se = np.sqrt(np.maximum(np.maximum(var, ss2 / cnt), 1e-12) / cnt)
    a, b = np.triu_indices(K, 1)
    d = m[:, b] - m[:, a]  # (R, P, T)
    z = d / np.sqrt(se[:, a] ** 2 + se[:, b] ** 2)
    with np.errstate(invalid="ignore"):
        rise = ((d >= cfg.min_step) & (z >= cfg.z_step)).any(1)
        drop = ((-d >= cfg.min_step) & (-z >= cfg.z_step)).any(1)
        trend = ((np.abs(d) >= cfg.min_effect) & (np.abs(z) >= cfg.z_trend)).any(1)
    n_models = W @ (M > 0)
    return TrendFeatures(n_models, K, m, rise, drop, trend, np.nanmax(np.where(
        np.isfinite(m), m, -np.inf), axis=1), r2)


def apply_rules(f: TrendFeatures, chance: np.ndarray, cfg: ClassifyConfig,
                n_distinct: np.ndarray | None = None) -> np.ndarray:
    """Category index into LABELS for every (resample, task); the rule order of the module doc."""
    R, T = f.rise.shape
    out = np.full((R, T), -1)
    c = np.nan_to_num(chance, nan=0.0)[None, :]
    m = f.means
    m0 = m[:, 0]
    D = f.best - m0
    K = f.n_bins
    steps = np.diff(m, axis=1)  # (R, K-1, T)
    if K >= 4:
        j = np.nanargmax(np.where(np.isfinite(steps), steps, -np.inf), axis=1)  # (R, T)
        jump = np.take_along_axis(steps, j[:, None], 1)[:, 0]
        with np.errstate(invalid="ignore"):
            brk = ((m[:, 1] - m0 <= cfg.flat_frac * D) & (jump >= cfg.jump_frac * D)
                   & (j >= 1) & (j + 1 <= K - 2) & (steps[:, -1] <= cfg.plateau_frac * D))
    else:
        brk = np.zeros((R, T), bool)
    with np.errstate(invalid="ignore"):
        trendless = ~f.trend | ~(f.best >= c + cfg.chance_margin)
        predictable = f.r2 >= cfg.r2_min
    rules = [
        (INSUFFICIENT, (n_distinct if n_distinct is not None else f.n_models) < cfg.min_models),
        ("trendless", trendless),
        ("nonmonotonic", f.rise & f.drop),
        ("inverse", f.drop & ~f.rise),
        ("breakthrough", brk),
        ("predictable", predictable),
        ("noisy", np.ones((R, T), bool)),
    ]
    for label, cond in rules:
        out = np.where((out < 0) & cond, LABELS.index(label), out)
    return out


@dataclass
class GroupTrends:
    """Classification of one group: categories (R, T) (row 0 = the data) and its fits."""

    group: Group
    codes: np.ndarray
    fit: ExpGrid  # bootstrap exp-law fits, (R, T)
    point: ExpGrid  # refined point fit, (1, T)
    features: TrendFeatures


def classify_group(g: Group, W: np.ndarray, ccfg: ClassifyConfig,
                   fcfg: FitConfig) -> GroupTrends:
    """Fit the exp law and apply the rules on every resample of one group."""
    fit = fit_exp_grid(g.x, g.Y, W, fcfg)
    point = refine_exp(g.x, g.Y, W[0], fit, 0, fcfg) if fcfg.refine else ExpGrid(
        *(a[:1] for a in dataclasses.astuple(fit)))
    r2 = fit.r2.copy()
    r2[0] = point.r2[0]
    feats = trend_features(g.x, g.Y, g.S, W, r2, ccfg)
    # distinct models per resample decide "insufficient": duplicates add no information
    n_distinct = (W > 0).astype(float) @ np.isfinite(g.Y).astype(float)
    codes = apply_rules(feats, g.chance, ccfg, n_distinct)
    return GroupTrends(g, codes, fit, point, feats)


def trend_rows(gt: GroupTrends) -> pd.DataFrame:
    """trends.csv rows of one group (chosen category, its probability, fit parameters)."""
    g, codes = gt.group, gt.codes
    boot = codes[1:] if codes.shape[0] > 1 else codes
    rows = []
    for t, name in enumerate(g.names):
        cat = LABELS[codes[0, t]]
        probs = {f"p_{c}": float(np.mean(boot[:, t] == LABELS.index(c))) for c in CATEGORIES}
        valid = np.isfinite(g.Y[:, t])
        rho = pd.Series(-g.x[valid]).corr(pd.Series(g.Y[valid, t]), method="spearman") \
            if valid.sum() > 2 else np.nan
        rows.append({
            "task": g.tasks[t], "setup": g.setups[t], "name": name, "val_set": g.val_set,
            "corpus": g.corpus, "category": cat,
            "p_category": probs.get(f"p_{cat}", float(np.mean(boot[:, t] == codes[0, t]))),
            **probs, "r2": float(gt.point.r2[0, t]), "n_models": int(valid.sum()),
            "spearman": float(rho), "eps": float(gt.point.eps[0, t]),
            "ln_k": float(gt.point.ln_k[0, t]), "gamma": float(gt.point.gamma[0, t]),
            "x_min": float(np.min(g.x[valid])) if valid.any() else np.nan,
            "x_max": float(np.max(g.x[valid])) if valid.any() else np.nan,
            "chance": float(g.chance[t]),
            "resid_rmse": float(np.sqrt(gt.point.sse[0, t] / max(valid.sum(), 1))),
            "binomial_se": float(np.sqrt(np.nanmean(g.S[valid, t] ** 2)))
            if np.isfinite(g.S[valid, t]).any() else np.nan,
        })
    return pd.DataFrame(rows)


def fraction_predictable(gt: GroupTrends, ci: float) -> tuple[float, float, float]:
    """Share of tasks classified predictable, with a bootstrap interval over models."""
    from analysis.matrix import percentile_ci

    pred = (gt.codes == LABELS.index("predictable")).mean(axis=1)
    if gt.codes.shape[0] < 3:
        return float(pred[0]), np.nan, np.nan
    lo, hi = percentile_ci(pred[1:], ci)
    return float(pred[0]), float(lo), float(hi)


#: thresholds varied by the sensitivity table, with the multipliers applied to each
SENSITIVITY_FACTORS = (0.5, 0.75, 1.0, 1.5, 2.0)


def sensitivity(groups: list[GroupTrends], cfg: ClassifyConfig) -> pd.DataFrame:
    """Fraction predictable (data only, no bootstrap) as each threshold is scaled."""
    rows = []
    for gt in groups:
        g = gt.group
        W = np.ones((1, g.n))
        for field in dataclasses.fields(cfg):
            base = getattr(cfg, field.name)
            for fac in SENSITIVITY_FACTORS:
                value = type(base)(max(1, round(base * fac)) if isinstance(base, int) else base * fac)
                c2 = dataclasses.replace(cfg, **{field.name: value})
                feats = trend_features(g.x, g.Y, g.S, W, gt.point.r2, c2)
                codes = apply_rules(feats, g.chance, c2)
                rows.append({"val_set": g.val_set, "corpus": g.corpus, "threshold": field.name,
                             "factor": fac, "value": value,
                             "frac_predictable": float(np.mean(
                                 codes[0] == LABELS.index("predictable")))})
    return pd.DataFrame(rows)
