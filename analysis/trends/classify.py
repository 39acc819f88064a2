"""Explicit, numeric trend classification (replacing the paper's by-eye labels).

Models (final checkpoints) are ordered from worst to best validation loss and split into
K = clamp(n // min_per_bin, 2, max_bins) equal-count bins, 0 = worst loss. From the bin
means m_0 .. m_{K-1} and the pooled within-bin standard deviation sd (the scatter of models
around a straight line fitted within each bin: the scatter around the curve, not the
curve's own slope inside a wide bin), each task gets these features, all relative so that
they read like a plot whose y-axis spans the task's own range (as the paper's figures do):

  range   R = max_b m_b - min_b m_b
  snr     R / sd - d2(K) / sqrt(n / K): how many scatter widths the curve spans, minus the
          range that K bin means of pure noise would show (d2(K) = expected range of K
          standard normals), so groups of different sizes are judged alike
  rise    max over a < b of (m_b - m_a) / R     (largest improvement, worst -> best loss)
  drop    max over a < b of (m_a - m_b) / R     (largest decline)
  net     (m_{K-1} - m_0) / R                   (where the curve ends against where it began)
  plateau gain over the last q = ceil(K/4) bins / the largest gain over any q adjacent bins
          (1 when the curve is still steepening at the best models, ~0 once it has levelled)

Rules, first match wins:

1. insufficient  fewer than min_models models (not one of the six categories).
2. nonmonotonic  snr >= snr_nm, rise >= nm_frac and drop >= nm_frac: it goes down and up
                 by most of its range.
3. trendless     snr < snr_min: the range is no larger than the scatter explains.
4. inverse       net <= -dir_frac: it ends clearly below where it started.
5. trendless     net < dir_frac: it ends about where it started (flat).
6. breakthrough  snr >= snr_pred, K >= 4 and plateau <= plateau_frac: a tight rise that
                 has levelled off (the best models gain little next to the steepest part).
7. predictable   snr >= snr_pred: a tight, rising curve.
8. noisy         otherwise: rising end to end, but with much scatter around the trend.

The thresholds were calibrated against the paper's labels for 24 of the 46 Gadre et al.
tasks (analysis.trends.calibrate: leave-one-out cross-validation of the whole tuning procedure;
the report prints the cross-validated agreement). The exponential law's R^2 is reported
beside each category but is not a rule: on the calibration tasks the scatter relative to
the curve's own range separated the paper's categories better than R^2 did.

Stability: the same rules run on every bootstrap resample of models (bins keep the
original loss order); p_<category> is the share of resamples in that category.
"""

from __future__ import annotations

import dataclasses
import functools
import zlib
from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis.config import AnalysisConfig, ClassifyConfig, FitConfig
from analysis.groups.build import POOLED, Group, bootstrap_weights
from analysis.laws.downstream import ExpGrid, fit_exp_grid, refine_exp

CATEGORIES = ("predictable", "inverse", "nonmonotonic", "noisy", "trendless", "breakthrough")
INSUFFICIENT = "insufficient"
#: trends.csv's category for a group whose x-axis does not fall with size within every corpus
#: (analysis.flips.detect.unclassified_reason): not classified, coded INSUFFICIENT inside
NOT_A_SCALE = "not_a_scale"
LABELS = CATEGORIES + (INSUFFICIENT,)
#: the rule inputs written to trends.csv beside each category
FEATURES = ("snr", "rise", "drop", "net", "plateau")
_SD_FLOOR = 1e-4  # accuracy units: a curve with no scatter at all is not infinitely tight


@dataclass
class TrendFeatures:
    """Rule inputs per (resample, task): arrays (R, T) unless noted (module doc)."""

    n_models: np.ndarray
    n_bins: int
    means: np.ndarray  # (R, K, T) bin mean accuracy, worst loss first
    snr: np.ndarray
    rise: np.ndarray
    drop: np.ndarray
    net: np.ndarray
    plateau: np.ndarray
    r2: np.ndarray  # R^2 of the exp law (reported, not a rule)


@functools.lru_cache(maxsize=64)
def noise_range(k: int) -> float:
    """d2(k): expected range of k independent standard normal draws."""
    from scipy import integrate, stats

    if k < 2:
        return 0.0
    f = lambda t: 1.0 - stats.norm.cdf(t) ** k - stats.norm.sf(t) ** k  # noqa: E731
    return float(integrate.quad(f, -np.inf, np.inf)[0])


def bin_index(x: np.ndarray, cfg: ClassifyConfig) -> tuple[np.ndarray, int]:
    """Equal-count bin of each model, 0 = worst (highest) loss; returns (bins, K)."""
    n = x.size
    k = int(np.clip(n // max(cfg.min_per_bin, 1), 2, max(cfg.max_bins, 2)))
    order = np.argsort(-x, kind="stable")
    bins = np.empty(n, dtype=int)
    bins[order] = (np.arange(n) * k) // max(n, 1)
    return bins, k


def trend_features(
    x: np.ndarray, Y: np.ndarray, W: np.ndarray, r2: np.ndarray, cfg: ClassifyConfig
) -> TrendFeatures:
    """Compute the rule inputs for every resample row of W (R, n) and task column of Y."""
    bins, K = bin_index(x, cfg)
    B = np.eye(K)[bins]  # (n, K)
    M = np.isfinite(Y).astype(float)
    Yz = np.where(M > 0, Y, 0.0)
    WB = W[:, :, None] * B[None]  # (R, n, K)
    X = (x - x.mean())[:, None] * M  # loss, centred, where the task has a value
    cnt = np.einsum("rnk,nt->rkt", WB, M)
    sy = np.einsum("rnk,nt->rkt", WB, Yz)
    syy = np.einsum("rnk,nt->rkt", WB, Yz * Yz)
    sx = np.einsum("rnk,nt->rkt", WB, X)
    sxx = np.einsum("rnk,nt->rkt", WB, X * X)
    sxy = np.einsum("rnk,nt->rkt", WB, X * Yz)
    with np.errstate(divide="ignore", invalid="ignore"):
        c1 = np.where(cnt > 0, cnt, 1)
        m = np.where(cnt > 0, sy / cnt, np.nan)
        # scatter around a straight line within each bin: the curve's own slope inside a
        # wide bin (few models) is trend, not noise
        vxx, vxy = sxx - sx * sx / c1, sxy - sx * sy / c1
        ss = np.maximum(syy - sy * sy / c1 - np.where(vxx > 1e-12, vxy * vxy / vxx, 0.0), 0.0)
        dof = np.maximum(cnt - 2, 0).sum(1)
        sd = np.maximum(np.sqrt(ss.sum(1) / dof), _SD_FLOOR)
        hi = np.nanmax(np.where(np.isfinite(m), m, -np.inf), axis=1)
        lo = np.nanmin(np.where(np.isfinite(m), m, np.inf), axis=1)
        rng = np.where(np.isfinite(hi - lo), hi - lo, 0.0)
        per_bin = cnt.sum(1) / np.maximum((cnt > 0).sum(1), 1)
        snr = rng / sd - noise_range(K) / np.sqrt(np.maximum(per_bin, 1.0))
        a, b = np.triu_indices(K, 1)
        d = m[:, b] - m[:, a]  # (R, P, T): later (better loss) minus earlier
        scale = np.maximum(rng, 1e-12)
        rise = np.nanmax(np.where(np.isfinite(d), d, -np.inf), axis=1) / scale
        drop = np.nanmax(np.where(np.isfinite(d), -d, -np.inf), axis=1) / scale
        first, last = _edge_means(m)
        q = -(-K // 4)  # a quarter of the bins, rounded up
        gains = m[:, q:] - m[:, :-q]  # (R, K - q, T): rise over each window of q bins
        best_gain = np.nanmax(np.where(np.isfinite(gains), gains, -np.inf), axis=1)
        net = (last - first) / scale
        plateau = gains[:, -1] / np.maximum(best_gain, 1e-12)
    n_models = W @ (M > 0)
    return TrendFeatures(
        n_models,
        K,
        m,
        snr,
        np.maximum(rise, 0.0),
        np.maximum(drop, 0.0),
        np.nan_to_num(net),
        np.nan_to_num(plateau, nan=1.0),
        r2,
    )


def _edge_means(m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First and last non-empty bin means along axis 1 (a resample may empty a bin)."""
    ok = np.isfinite(m)
    i0 = np.argmax(ok, axis=1)
    i1 = m.shape[1] - 1 - np.argmax(ok[:, ::-1], axis=1)
    take = lambda i: np.take_along_axis(m, i[:, None], 1)[:, 0]  # noqa: E731
    return take(i0), take(i1)


def apply_rules(
    f: TrendFeatures, cfg: ClassifyConfig, n_distinct: np.ndarray | None = None
) -> np.ndarray:
    """Category index into LABELS for every (resample, task); the rule order of the module doc.

    Thresholds may be arrays that broadcast against the features (the calibration grid
    evaluates thousands of threshold sets at once this way).
    """
    shape = np.broadcast_shapes(
        f.snr.shape, *(np.shape(getattr(cfg, k.name)) for k in dataclasses.fields(cfg))
    )
    out = np.full(shape, -1)
    n = n_distinct if n_distinct is not None else f.n_models
    with np.errstate(invalid="ignore"):
        rules = [
            (INSUFFICIENT, n < cfg.min_models),
            (
                "nonmonotonic",
                (f.snr >= cfg.snr_nm) & (f.rise >= cfg.nm_frac) & (f.drop >= cfg.nm_frac),
            ),
            ("trendless", f.snr < cfg.snr_min),
            ("inverse", f.net <= -cfg.dir_frac),
            ("trendless", f.net < cfg.dir_frac),
            (
                "breakthrough",
                (f.snr >= cfg.snr_pred) & (f.plateau <= cfg.plateau_frac) & (f.n_bins >= 4),
            ),
            ("predictable", f.snr >= cfg.snr_pred),
            ("noisy", np.ones(shape, bool)),
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
    weights: np.ndarray  # (R + 1, n) resample weights: paired comparisons reuse them


def classify_group(g: Group, W: np.ndarray, ccfg: ClassifyConfig, fcfg: FitConfig) -> GroupTrends:
    """Fit the exp law and apply the rules on every resample of one group."""
    fit = fit_exp_grid(g.x, g.Y, W, fcfg)
    point = (
        refine_exp(g.x, g.Y, W[0], fit, 0, fcfg)
        if fcfg.refine
        else ExpGrid(*(a[:1] for a in dataclasses.astuple(fit)))
    )
    r2 = fit.r2.copy()
    r2[0] = point.r2[0]
    feats = trend_features(g.x, g.Y, W, r2, ccfg)
    # distinct models per resample decide "insufficient": duplicates add no information
    n_distinct = (W > 0).astype(float) @ np.isfinite(g.Y).astype(float)
    codes = apply_rules(feats, ccfg, n_distinct)
    return GroupTrends(g, codes, fit, point, feats, W)


def classify(
    g: Group, cfg: AnalysisConfig, seed: int, n_resamples: int | None = None
) -> GroupTrends:
    """Bootstrap, then classify: the one way every analysis resamples a group.

    Models are resampled within each corpus for a pooled group (every resample keeps each
    corpus's share) and whole runs at a time when the points are checkpoints (one long run
    is not many models); `n_resamples` defaults to `cfg.bootstrap.n_resamples`. The seed is
    the caller's: the main groups use `corpus_seed` (the same resamples of a corpus under
    every x-axis, so flips between x-axes are paired); the comparisons that reuse a
    headline's points use `cfg.bootstrap.seed` itself.
    """
    R = cfg.bootstrap.n_resamples if n_resamples is None else n_resamples
    W = bootstrap_weights(g.n, R, seed, g.run_corpus if g.corpus == POOLED else None, g.cluster)
    return classify_group(g, W, cfg.classify, cfg.fit)


def corpus_seed(cfg: AnalysisConfig, corpus: str) -> int:
    """The main groups' seed: one per corpus, shared by every x-axis (paired bootstrap)."""
    return cfg.bootstrap.seed + zlib.crc32(corpus.encode()) % 100_000


def unclassify(gt: GroupTrends) -> GroupTrends:
    """The group with every resample coded INSUFFICIENT: left out of every category count."""
    return dataclasses.replace(gt, codes=np.full_like(gt.codes, LABELS.index(INSUFFICIENT)))


def trend_rows(gt: GroupTrends, reason: str = "") -> pd.DataFrame:
    """trends.csv rows of one group (chosen category, its probability, fit parameters);
    `reason` (NOT_A_SCALE) replaces the category of a group left unclassified for it."""
    g, codes = gt.group, gt.codes
    boot = codes[1:] if codes.shape[0] > 1 else codes
    rows = []
    for t, name in enumerate(g.names):
        cat = reason if reason == NOT_A_SCALE else LABELS[codes[0, t]]
        probs = {f"p_{c}": float(np.mean(boot[:, t] == LABELS.index(c))) for c in CATEGORIES}
        valid = np.isfinite(g.Y[:, t])
        rho = (
            pd.Series(-g.x[valid]).corr(pd.Series(g.Y[valid, t]), method="spearman")
            if valid.sum() > 2
            else np.nan
        )
        rows.append(
            {
                "task": g.tasks[t],
                "setup": g.setups[t],
                "name": name,
                "val_set": g.val_set,
                "corpus": g.corpus,
                "category": cat,
                "p_category": probs.get(f"p_{cat}", float(np.mean(boot[:, t] == codes[0, t]))),
                **probs,
                "r2": float(gt.point.r2[0, t]),
                "n_models": int(valid.sum()),
                "n_sizes": int(np.unique(g.n_params[valid & np.isfinite(g.n_params)]).size),
                "spearman": float(rho),
                "eps": float(gt.point.eps[0, t]),
                "ln_k": float(gt.point.ln_k[0, t]),
                "gamma": float(gt.point.gamma[0, t]),
                "x_min": float(np.min(g.x[valid])) if valid.any() else np.nan,
                "x_max": float(np.max(g.x[valid])) if valid.any() else np.nan,
                "chance": float(g.chance[t]),
                "resid_rmse": float(np.sqrt(gt.point.sse[0, t] / max(valid.sum(), 1))),
                "binomial_se": float(np.sqrt(np.nanmean(g.S[valid, t] ** 2)))
                if np.isfinite(g.S[valid, t]).any()
                else np.nan,
                **{k: float(getattr(gt.features, k)[0, t]) for k in FEATURES},
            }
        )
    return pd.DataFrame(rows)


def fraction_predictable(gt: GroupTrends, ci: float) -> tuple[float, float, float]:
    """Share of tasks classified predictable, with a bootstrap interval over models."""
    from analysis.groups.build import percentile_ci

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
                value = type(base)(
                    max(1, round(base * fac)) if isinstance(base, int) else base * fac
                )
                c2 = dataclasses.replace(cfg, **{field.name: value})
                feats = trend_features(g.x, g.Y, W, gt.point.r2, c2)
                codes = apply_rules(feats, c2)
                rows.append(
                    {
                        "val_set": g.val_set,
                        "corpus": g.corpus,
                        "threshold": field.name,
                        "factor": fac,
                        "value": value,
                        "frac_predictable": float(np.mean(codes[0] == LABELS.index("predictable"))),
                    }
                )
    return pd.DataFrame(rows)
