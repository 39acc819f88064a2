"""Flip detection: change one setting, hold the rest fixed, and see what changes.

Settings: the validation set on the x-axis (corpus held fixed), the pretraining corpus
(validation set fixed), and the evaluation-setup variant (validation set and corpus fixed).
Kinds of flip (one row each in flips.csv):

* ``category``: the trend category differs. p_value = sum_c p_from(c) p_to(c), the chance
  that independent bootstrap draws of the two classifications agree.
* ``ranking_reversal`` / ``ranking_change`` (setting val_set): for corpora A, B the gap
  ``mean_L [acc_A(L) - acc_B(L)]`` of their fitted exp laws over a grid of losses inside
  the loss range both corpora cover. A gap is significant when its bootstrap interval
  (level 1 - alpha) excludes 0 and |gap| >= min_gap. Reversal: significant with opposite
  signs under the two validation sets (p_value = share of resamples with equal signs);
  change: significant under exactly one (p_value = two-sided bootstrap p of that gap).
* ``slope_sign``: the least-squares slope d acc / d L is significant under both settings,
  with opposite signs (p_value = share of resamples with equal signs).
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd

from analysis.config import FlipConfig
from analysis.groups.build import POOLED, percentile_ci
from analysis.laws.downstream import exp_law_acc
from analysis.schemas import FLIP_COLUMNS
from analysis.trends.classify import CATEGORIES, INSUFFICIENT, LABELS, GroupTrends


def _probs(gt: GroupTrends) -> np.ndarray:
    """(T, 6) bootstrap category probabilities."""
    boot = gt.codes[1:] if gt.codes.shape[0] > 1 else gt.codes
    return np.stack([(boot == LABELS.index(c)).mean(0) for c in CATEGORIES], 1)


def category_rows(
    a: GroupTrends,
    b: GroupTrends,
    setting: str,
    context: str,
    frm: str,
    to: str,
    cols_a: list[int],
    cols_b: list[int],
) -> list[dict]:
    """FLIP_COLUMNS rows where task `cols_a[i]` of `a` and `cols_b[i]` of `b` get different
    categories on the data (neither insufficient); p_value: the bootstrap chance that the
    two classifications agree."""
    rows = []
    pa, pb = _probs(a), _probs(b)
    ins = LABELS.index(INSUFFICIENT)
    for ta, tb in zip(cols_a, cols_b, strict=True):
        ca, cb = a.codes[0, ta], b.codes[0, tb]
        if ca == cb or ins in (ca, cb):
            continue
        rows.append(
            {
                "task": a.group.tasks[ta],
                "setup": a.group.setups[ta],
                "setting": setting,
                "context": context,
                "from": frm,
                "to": to,
                "kind": "category",
                "effect": f"{LABELS[ca]}->{LABELS[cb]}",
                "effect_from": np.nan,
                "ci_low": np.nan,
                "ci_high": np.nan,
                "p_value": float(pa[ta] @ pb[tb]),
            }
        )
    return rows


def slopes(gt: GroupTrends, W: np.ndarray) -> np.ndarray:
    """Weighted least-squares slope of accuracy on loss, (R, T), per resample row of W."""
    g = gt.group
    M = np.isfinite(g.Y).astype(float)
    Y = np.where(M > 0, g.Y, 0.0)
    X = g.x[:, None] * M
    Sw, Sx, Sxx, Sy, Sxy = W @ M, W @ X, W @ (X * X), W @ Y, W @ (X * Y)
    with np.errstate(divide="ignore", invalid="ignore"):
        v = Sxx - Sx * Sx / Sw
        return np.where(v > 1e-12, (Sxy - Sx * Sy / Sw) / v, np.nan)


def _sig(samples: np.ndarray, point: np.ndarray, cfg: FlipConfig, min_abs: float):
    lo, hi = percentile_ci(samples, 1 - cfg.alpha)
    sig = ((lo > 0) | (hi < 0)) & (np.abs(point) >= min_abs)
    return sig, lo, hi


def _gap(a: GroupTrends, b: GroupTrends, t: int, n_grid: int):
    """Point and bootstrap gaps acc_A - acc_B over the shared loss range (None if no overlap)."""
    va, vb = np.isfinite(a.group.Y[:, t]), np.isfinite(b.group.Y[:, t])
    if va.sum() < 3 or vb.sum() < 3:
        return None
    lo = max(a.group.x[va].min(), b.group.x[vb].min())
    hi = min(a.group.x[va].max(), b.group.x[vb].max())
    if not hi > lo:
        return None
    L = np.linspace(lo, hi, n_grid)

    def curve(gt, fit, rows):
        return exp_law_acc(
            L[None, :],
            fit.eps[rows, t][:, None],
            fit.ln_k[rows, t][:, None],
            fit.gamma[rows, t][:, None],
        ).mean(1)

    point = curve(a, a.point, [0])[0] - curve(b, b.point, [0])[0]
    R = min(a.fit.eps.shape[0], b.fit.eps.shape[0])
    boot = curve(a, a.fit, np.arange(1, R)) - curve(b, b.fit, np.arange(1, R))
    return point, boot


def detect_flips(
    trends: dict[tuple[str, str], GroupTrends],
    weights: dict[tuple[str, str], np.ndarray],
    cfg: FlipConfig,
) -> pd.DataFrame:
    """All flips among classified groups keyed by (val_set, corpus): 1. the validation set
    changes, corpus fixed; 2. the corpus changes, validation set fixed; 3. evaluation-setup
    variants of a task within one group; then ranking reversals."""
    rows: list[dict] = []
    val_sets = sorted({v for v, _ in trends})
    corpora = sorted({c for _, c in trends})
    slope_cache = {k: slopes(gt, weights[k]) for k, gt in trends.items()}
    pairs = [  # (key a, key b, setting, context, from, to)
        ((va, c), (vb, c), "val_set", f"corpus={c}", va, vb)
        for c in corpora
        for va, vb in itertools.combinations(val_sets, 2)
    ] + [
        ((v, ca), (v, cb), "corpus", f"val_set={v}", ca, cb)
        for v in val_sets
        for ca, cb in itertools.combinations([c for c in corpora if c != POOLED], 2)
    ]
    for ka, kb, setting, ctx, frm, to in pairs:
        if ka in trends and kb in trends:
            rows += _pair_rows(trends, slope_cache, ka, kb, (setting, ctx, frm, to), cfg)
    for key, gt in trends.items():
        rows += _setup_rows(key, gt, slope_cache[key], cfg)
    rows += _ranking_rows(trends, val_sets, corpora, cfg)
    return pd.DataFrame(rows, columns=FLIP_COLUMNS)


def _pair_rows(
    trends: dict[tuple[str, str], GroupTrends],
    slope_cache: dict[tuple[str, str], np.ndarray],
    ka: tuple[str, str],
    kb: tuple[str, str],
    change: tuple[str, str, str, str],
    cfg: FlipConfig,
) -> list[dict]:
    """Category flips, then slope-sign flips, of the tasks two groups share; `change` is
    (setting, context, from, to)."""
    setting, context, frm, to = change
    a, b = trends[ka], trends[kb]
    names = [n for n in a.group.names if n in b.group.names]
    ia = [a.group.names.index(nm) for nm in names]
    ib = [b.group.names.index(nm) for nm in names]
    rows = category_rows(a, b, setting, context, frm, to, ia, ib)
    sa, sb = slope_cache[ka][:, ia], slope_cache[kb][:, ib]
    R = min(len(sa), len(sb))
    if R < 3:
        return rows
    sig_a, _, _ = _sig(sa[1:R], sa[0], cfg, 0.0)
    sig_b, lo_b, hi_b = _sig(sb[1:R], sb[0], cfg, 0.0)
    flip = sig_a & sig_b & (np.sign(sa[0]) != np.sign(sb[0]))
    same = (np.sign(sa[1:R]) == np.sign(sb[1:R])).mean(0)
    for j in np.flatnonzero(flip):
        rows.append(
            {
                "task": a.group.tasks[ia[j]],
                "setup": a.group.setups[ia[j]],
                "setting": setting,
                "context": context,
                "from": frm,
                "to": to,
                "kind": "slope_sign",
                "effect": float(sb[0, j]),
                "effect_from": float(sa[0, j]),
                "ci_low": float(lo_b[j]),
                "ci_high": float(hi_b[j]),
                "p_value": float(same[j]),
            }
        )
    return rows


def _setup_rows(
    key: tuple[str, str], gt: GroupTrends, sl: np.ndarray, cfg: FlipConfig
) -> list[dict]:
    """Flips between evaluation-setup variants of one task, x-axis and corpus fixed."""
    g = gt.group
    rows: list[dict] = []
    by_task: dict[str, list[int]] = {}
    for t, task in enumerate(g.tasks):
        by_task.setdefault(task, []).append(t)
    for idx in by_task.values():
        for ta, tb in itertools.combinations(idx, 2):
            sa, sb = g.setups[ta] or "default", g.setups[tb] or "default"
            ctx = f"val_set={key[0]},corpus={key[1]}"
            rows += category_rows(gt, gt, "setup", ctx, sa, sb, [ta], [tb])
            if sl.shape[0] < 3:
                continue
            pa, pb = sl[:, ta], sl[:, tb]
            siga, _, _ = _sig(pa[1:], pa[0], cfg, 0.0)
            sigb, lo, hi = _sig(pb[1:], pb[0], cfg, 0.0)
            if siga and sigb and np.sign(pa[0]) != np.sign(pb[0]):
                rows.append(
                    {
                        "task": g.tasks[ta],
                        "setup": "",
                        "setting": "setup",
                        "context": ctx,
                        "from": sa,
                        "to": sb,
                        "kind": "slope_sign",
                        "effect": float(pb[0]),
                        "effect_from": float(pa[0]),
                        "ci_low": float(lo),
                        "ci_high": float(hi),
                        "p_value": float((np.sign(pa[1:]) == np.sign(pb[1:])).mean()),
                    }
                )
    return rows


def corpus_gaps(
    trends: dict[tuple[str, str], GroupTrends],
    val_sets: list[str],
    corpora: list[str],
    cfg: FlipConfig,
) -> pd.DataFrame:
    """Gap acc_A - acc_B at matched loss for every task, val set and corpus pair."""
    out = []
    real = [c for c in corpora if c != POOLED]
    for v in val_sets:
        for ca, cb in itertools.combinations(real, 2):
            a, b = trends.get((v, ca)), trends.get((v, cb))
            if a is None or b is None:
                continue
            for t, name in enumerate(a.group.names):
                if name not in b.group.names or b.group.names.index(name) != t:
                    continue
                res = _gap(a, b, t, cfg.loss_grid_points)
                if res is None:
                    continue
                point, boot = res
                if boot.size >= 3:
                    lo, hi = percentile_ci(boot, 1 - cfg.alpha)
                    p_two = 2 * min((boot > 0).mean(), (boot < 0).mean())
                else:
                    lo = hi = p_two = np.nan
                out.append(
                    {
                        "task": a.group.tasks[t],
                        "setup": a.group.setups[t],
                        "name": name,
                        "val_set": v,
                        "corpus_a": ca,
                        "corpus_b": cb,
                        "gap": float(point),
                        "ci_low": float(lo),
                        "ci_high": float(hi),
                        "p_value": float(p_two),
                        "boot": boot,
                        "significant": bool((lo > 0 or hi < 0) and abs(point) >= cfg.min_gap),
                    }
                )
    return pd.DataFrame(out)


def _ranking_rows(trends, val_sets, corpora, cfg: FlipConfig) -> list[dict]:
    gaps = corpus_gaps(trends, val_sets, corpora, cfg)
    rows: list[dict] = []
    if gaps.empty:
        return rows
    for (_name, ca, cb), sub in gaps.groupby(["name", "corpus_a", "corpus_b"]):
        recs = sub.set_index("val_set")
        for va, vb in itertools.combinations(sorted(recs.index), 2):
            a, b = recs.loc[va], recs.loc[vb]
            if not (a["significant"] or b["significant"]):
                continue
            if a["significant"] and b["significant"]:
                if np.sign(a["gap"]) == np.sign(b["gap"]):
                    continue
                kind = "ranking_reversal"
                n = min(a["boot"].size, b["boot"].size)
                p = (
                    float((np.sign(a["boot"][:n]) == np.sign(b["boot"][:n])).mean())
                    if n
                    else np.nan
                )
            else:
                kind = "ranking_change"
                p = b["p_value"] if b["significant"] else a["p_value"]
            rows.append(
                {
                    "task": a["task"],
                    "setup": a["setup"],
                    "setting": "val_set",
                    "context": f"{ca} vs {cb}",
                    "from": va,
                    "to": vb,
                    "kind": kind,
                    "effect": b["gap"],
                    "effect_from": a["gap"],
                    "ci_low": b["ci_low"],
                    "ci_high": b["ci_high"],
                    "p_value": p,
                }
            )
    return rows


#: the order in which the report names flips: a change of evaluation setup or of validation set
#: is the study's "benign change"; then the data mix, the metric, and run-level variants
HEADLINE_SETTINGS = ("setup", "val_set", "corpus", "metric")


def headline_flips(flips: pd.DataFrame, ref: str, alpha: float, n: int = 2) -> pd.DataFrame:
    """The strongest significant category flip of each kind of setting, at most `n` settings.

    Preferred within a setting: a flip seen on all models pooled and on the reference x-axis
    `ref`, then one that moves a task into or out of `predictable`, then the smallest p-value.
    The task's own-loss axis (`task_bpb`) is not a setting a user chooses, so it is left out.
    """
    if flips.empty:
        return flips
    f = flips[
        (flips["kind"] == "category")
        & (flips["p_value"] < alpha)
        & (flips["to"].astype(str) != "task_bpb")
        & ~flips["from"].astype(str).str.startswith("interp(")
    ].copy()
    if f.empty:
        return f
    ctx = f["context"].astype(str)
    pooled = ctx.str.contains(f"corpus={POOLED}") | (f["setting"] == "corpus")
    on_ref = ctx.str.contains(f"val_set={ref}") | (f["from"] == ref) | (f["to"] == ref)
    f["_ctx"] = (~(pooled & on_ref)).astype(int)
    f["_pred"] = (~f["effect"].astype(str).str.contains("predictable")).astype(int)
    order = {s: i for i, s in enumerate(HEADLINE_SETTINGS)}
    f["_setting"] = f["setting"].map(order).fillna(len(order))
    f = f.sort_values(["_setting", "_ctx", "_pred", "p_value"], kind="stable")
    return f.drop_duplicates("setting").head(n).drop(columns=["_ctx", "_pred", "_setting"])
