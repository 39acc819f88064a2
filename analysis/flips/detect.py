"""Flip detection: change one setting, hold the rest fixed, and see what changes.

Every comparison is a test (analysis.flips.evidence: levels, p-values, q-values); the rows
of the comparisons whose point estimates differ are the flips. Settings, each counted once:

* ``val_set``: the reference x-axis against each other x-axis, on the headline group
  (pooled over corpora, or the only corpus) (category).
* ``corpus``: every pair of corpora on the reference x-axis (category).
* ``setup``: every pair of a task's evaluation setups, on the headline group of the
  reference x-axis (category).
* ranking (setting ``val_set``, level reversal): for corpora A, B the gap
  ``mean_L [acc_A(L) - acc_B(L)]`` of their fitted exp laws over the losses both cover
  (`corpus_gaps`). One test per task and pair of corpora however many x-axes show it: the
  change of the gap from the reference x-axis to x-axis v, d_v, with a normal p from its
  paired bootstrap spread, Bonferroni over the k x-axes compared (p = k p_v, so the fact
  holds at level alpha if any row of it does; counts name tasks and pairs, not rows). Kind
  ``ranking_reversal``: the gaps have opposite signs, each significant on its own (interval
  excludes 0, at least `min_gap`); kind ``ranking_change``: the corpora separate or
  converge (|d_v| and the larger gap >= `min_gap`).

Only groups whose x-axis is a scale (`evidence.axis_falls`) and that span at least
`min_sizes` distinct model sizes are compared; the report names the x-axes left out.
A slope-sign row is no longer written: a direction flip is a verdict flip of the category
comparison (counting it twice would count one fact twice).
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
from scipy.stats import norm

from analysis.config import FlipConfig
from analysis.flips.evidence import REVERSAL, category_test, n_sizes
from analysis.groups.build import POOLED, percentile_ci
from analysis.laws.downstream import exp_law_acc
from analysis.schemas import FLIP_COLUMNS
from analysis.trends.classify import INSUFFICIENT, LABELS, NOT_A_SCALE, GroupTrends

#: the test table: flips.csv's columns plus the test family (scaling | trajectory)
TEST_COLUMNS = FLIP_COLUMNS + ["family", "fact"]


def category_rows(
    a: GroupTrends,
    b: GroupTrends,
    setting: str,
    context: str,
    frm: str,
    to: str,
    cols_a: list[int],
    cols_b: list[int],
    family: str = "scaling",
) -> list[dict]:
    """One test row per task compared (level "" where the point categories agree)."""
    rows = []
    for ta, tb in zip(cols_a, cols_b, strict=True):
        ca, cb = a.codes[:, ta], b.codes[:, tb]
        if LABELS[ca[0]] == "insufficient" or LABELS[cb[0]] == "insufficient":
            continue  # not classified: no test ran
        level, p, size = category_test(ca, cb)
        rows.append(
            {
                "task": a.group.tasks[ta],
                "setup": a.group.setups[ta],
                "setting": setting,
                "context": context,
                "from": frm,
                "to": to,
                "kind": "category",
                "effect": f"{LABELS[ca[0]]}->{LABELS[cb[0]]}",
                "effect_from": np.nan,
                "ci_low": np.nan,
                "ci_high": np.nan,
                "p_value": p,
                "level": level,
                "effect_size": size,
                "q_value": np.nan,
                "family": family,
                "fact": "",
            }
        )
    return rows


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


def unclassified_reason(gt: GroupTrends, min_sizes: int, scale: dict[str, bool]) -> str:
    """Why a group may be neither classified nor compared ('' when it may): its x-axis is no
    scale (NOT_A_SCALE) or it spans fewer than `min_sizes` distinct sizes (INSUFFICIENT).
    The one check trends, fractions predictable and flips all apply."""
    if not scale.get(gt.group.val_set, True):
        return NOT_A_SCALE
    if n_sizes(gt.group.n_params) < min_sizes:
        return INSUFFICIENT
    return ""


def comparable(gt: GroupTrends, cfg: FlipConfig, scale: dict[str, bool]) -> bool:
    """May this group enter a flip: its x-axis is a scale and it spans enough sizes."""
    return not unclassified_reason(gt, cfg.min_sizes, scale)


def detect_flips(
    trends: dict[tuple[str, str], GroupTrends],
    weights: dict[tuple[str, str], np.ndarray] | None,
    cfg: FlipConfig,
    ref: str | None = None,
    head: str | None = None,
    scale: dict[str, bool] | None = None,
) -> pd.DataFrame:
    """Every test (TEST_COLUMNS) among classified groups keyed by (val_set, corpus): `ref`
    is the reference x-axis (default: the first), `head` the headline corpus (default:
    pooled when present), `scale` which x-axes are scales (default: all)."""
    del weights  # the groups carry their own resample weights
    scale = scale or {}
    val_sets = sorted({v for v, _ in trends})
    corpora = sorted({c for _, c in trends})
    ref = ref if ref in val_sets else val_sets[0]
    if head is None:
        head = POOLED if POOLED in corpora else corpora[0]
    ok = {k: comparable(gt, cfg, scale) for k, gt in trends.items()}
    rows: list[dict] = []

    def compare(ka, kb, setting, ctx, frm, to):
        if not (ka in trends and kb in trends and ok[ka] and ok[kb]):
            return
        a, b = trends[ka], trends[kb]
        names = [n for n in a.group.names if n in b.group.names]
        ia = [a.group.names.index(n) for n in names]
        ib = [b.group.names.index(n) for n in names]
        rows.extend(category_rows(a, b, setting, ctx, frm, to, ia, ib))

    # 1. validation set: the reference against each other x-axis, on the headline group (a
    # task's verdict is one fact; each corpus's own group would count it again)
    for v in val_sets:
        if v != ref:
            compare((ref, head), (v, head), "val_set", f"corpus={head}", ref, v)
    # 2. corpus: each pair on the reference x-axis
    for ca, cb in itertools.combinations([c for c in corpora if c != POOLED], 2):
        compare((ref, ca), (ref, cb), "corpus", f"val_set={ref}", ca, cb)
    # 3. evaluation setup: each pair of a task's setups on the headline group
    key = (ref, head)
    if key in trends and ok[key]:
        gt = trends[key]
        g = gt.group
        by_task: dict[str, list[int]] = {}
        for t, task in enumerate(g.tasks):
            by_task.setdefault(task, []).append(t)
        ctx = f"val_set={ref},corpus={head}"
        for idx in by_task.values():
            for ta, tb in itertools.combinations(idx, 2):
                sa, sb = g.setups[ta] or "default", g.setups[tb] or "default"
                rows += category_rows(gt, gt, "setup", ctx, sa, sb, [ta], [tb])
    comp = {k: gt for k, gt in trends.items() if ok[k]}
    rows += ranking_tests(comp, ref, corpora, cfg)
    return pd.DataFrame(rows, columns=TEST_COLUMNS)


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
                lo: float | np.ndarray  # a 0-d array from percentile_ci, or NaN
                hi: float | np.ndarray
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


def ranking_tests(
    trends: dict[tuple[str, str], GroupTrends], ref: str, corpora: list[str], cfg: FlipConfig
) -> list[dict]:
    """One test per task and pair of corpora: does their gap at matched loss change when
    the x-axis changes from `ref` (module doc)? Rows for every test; level "" unless the
    gaps at the most significant x-axis show a reversal or a separation."""
    val_sets = sorted({v for v, _ in trends})
    gaps = corpus_gaps(trends, val_sets, corpora, cfg)
    rows: list[dict] = []
    if gaps.empty or ref not in set(gaps["val_set"]):
        return rows
    for (name, ca, cb), sub in gaps.groupby(["name", "corpus_a", "corpus_b"]):
        recs = sub.set_index("val_set")
        if ref not in recs.index or len(recs) < 2:
            continue
        r0 = recs.loc[ref]
        others = [v for v in recs.index if v != ref]
        for v in others:
            rv = recs.loc[v]
            n = min(r0["boot"].size, rv["boot"].size)
            d = float(rv["gap"] - r0["gap"])
            sd = float(np.std(rv["boot"][:n] - r0["boot"][:n], ddof=1)) if n >= 3 else np.nan
            p = float(2 * norm.sf(abs(d) / sd)) if np.isfinite(sd) and sd > 0 else 1.0
            g0, g1 = float(r0["gap"]), float(rv["gap"])
            if np.sign(g0) != np.sign(g1) and bool(r0["significant"]) and bool(rv["significant"]):
                kind = "ranking_reversal"  # each gap's interval excludes 0, >= min_gap
            elif abs(d) >= cfg.min_gap and max(abs(g0), abs(g1)) >= cfg.min_gap:
                kind = "ranking_change"
            else:
                kind = ""
            rows.append(
                {
                    "task": rv["task"],
                    "setup": rv["setup"],
                    "setting": "val_set",
                    "context": f"{ca} vs {cb}",
                    "from": ref,
                    "to": v,
                    "kind": kind or "ranking_change",
                    "effect": g1,
                    "effect_from": g0,
                    "ci_low": rv["ci_low"],
                    "ci_high": rv["ci_high"],
                    # Bonferroni over the x-axes: one fact, however many x-axes show it
                    "p_value": min(1.0, len(others) * p),
                    "level": REVERSAL if kind else "",
                    "effect_size": abs(d),
                    "q_value": np.nan,
                    "family": "scaling",
                    "fact": f"gap|{name}|{ca}|{cb}",
                }
            )
    return rows


#: the order in which the report names flips: a change of evaluation setup or of validation set
#: is the study's "benign change"; then the data mix, the metric, and run-level variants
HEADLINE_SETTINGS = ("setup", "val_set", "corpus", "metric")


def headline_flips(
    flips: pd.DataFrame, ref: str, alpha: float, n: int = 4, per: int = 2
) -> pd.DataFrame:
    """At most `n` flips worth a figure: verdict flips and reversals with q < `alpha`, the
    largest effect first within each kind of setting and level, `per` per (setting, level),
    settings in HEADLINE_SETTINGS order. The task's own-loss axis (`task_bpb`) is not a
    setting a user chooses, and run-vs-run trajectories are not scaling trends: both left out.
    """
    if flips.empty or "level" not in flips:
        return flips.iloc[0:0]
    f = flips[
        flips["level"].isin(["verdict", "reversal"])
        & (flips["q_value"].astype(float) < alpha)
        & (flips["to"].astype(str) != "task_bpb")
        & ~flips["from"].astype(str).str.startswith("interp(")
    ].copy()
    if f.empty:
        return f
    order = {s: i for i, s in enumerate(HEADLINE_SETTINGS)}
    f["_setting"] = f["setting"].map(order).fillna(len(order))
    f = f.sort_values(["_setting", "effect_size"], ascending=[True, False], kind="stable")
    f = f[f.groupby(["setting", "level"]).cumcount() < per]
    return f.head(n).drop(columns=["_setting"])
