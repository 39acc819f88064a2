"""What makes a flip worth reporting: its level, a valid p-value, a false-discovery-controlled
q-value, and a null rate measured on changes that should not matter.

Levels (flips.csv `level`):

* ``verdict``: the task's verdict changes: predictable <-> not predictable, or its direction
  flips (improving: predictable, breakthrough, noisy <-> declining: inverse).
* ``reversal``: two corpora change order at matched loss when the validation set changes
  (they swap, or one pulls ahead of a tie), by at least `min_gap` accuracy.
* ``reclassification``: any other change of category (noisy <-> trendless, inverse <->
  nonmonotonic ...): kept in flips.csv, never in a headline count.
* ``trajectory``: one run's checkpoints against another run's (seed, precision and batch-size
  variants): a training trajectory, not a scaling trend; reported apart.

p-values. A category comparison's p-value is two-sided over the bootstrap resamples that
both sides share (the same resampled models under both settings where the settings share
the models; independent resamples where they do not): p = 2 (1 + #resamples without the
flip) / (1 + R), capped at 1, where a resample in which either side is `insufficient`
counts as one without the flip (uncertain, never as evidence). Every comparison run is a
test, flip or not (a comparison whose point estimates agree has p = 1), and the q-values
are Benjamini-Hochberg over all of them (`with_q`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import false_discovery_control

from analysis.trends.classify import INSUFFICIENT, LABELS

VERDICT, REVERSAL, RECLASS, TRAJECTORY = "verdict", "reversal", "reclassification", "trajectory"
#: the levels that enter headline counts
HEADLINE_LEVELS = (VERDICT, REVERSAL)
_PRED = LABELS.index("predictable")
_INS = LABELS.index(INSUFFICIENT)
_UP = np.array([LABELS.index(c) for c in ("predictable", "breakthrough", "noisy")])
_DOWN = LABELS.index("inverse")


def _direction(codes: np.ndarray) -> np.ndarray:
    """+1 improving, -1 declining, 0 neither (trendless, nonmonotonic, insufficient)."""
    return np.where(np.isin(codes, _UP), 1, np.where(codes == _DOWN, -1, 0))


def verdict_flip(ca: np.ndarray, cb: np.ndarray) -> np.ndarray:
    """Elementwise: do two category codes differ in verdict (module doc)?"""
    ok = (ca != _INS) & (cb != _INS)
    pred = (ca == _PRED) != (cb == _PRED)
    direction = _direction(ca) * _direction(cb) < 0
    return ok & (pred | direction)


def category_test(ca: np.ndarray, cb: np.ndarray) -> tuple[str, float, float]:
    """(level, p, effect size) of one task's comparison; codes (R + 1,), row 0 the data.

    level is "" when the point categories agree (then p = 1, effect 0). The effect size of
    a verdict flip is the change in the bootstrap probability of the verdict that flipped
    (predictable, or improving/declining); of a reclassification, the share of resamples
    whose categories differ."""
    a, b = int(ca[0]), int(cb[0])
    if a == b or _INS in (a, b):
        return "", 1.0, 0.0
    R = min(ca.size, cb.size) - 1
    if R < 1:
        return (VERDICT if verdict_flip(ca[:1], cb[:1])[0] else RECLASS), 1.0, 0.0
    ba, bb = ca[1 : R + 1], cb[1 : R + 1]
    ok = (ba != _INS) & (bb != _INS)
    if verdict_flip(ca[:1], cb[:1])[0]:
        level, flipped = VERDICT, verdict_flip(ba, bb)
        if (a == _PRED) != (b == _PRED):
            effect = abs(np.mean(ba == _PRED) - np.mean(bb == _PRED))
        else:
            effect = abs(np.mean(_direction(ba)) - np.mean(_direction(bb))) / 2
    else:
        level, flipped = RECLASS, ok & (ba != bb)
        effect = float(np.mean(flipped))
    p = min(1.0, 2.0 * (1 + int((~flipped).sum())) / (1 + R))
    return level, p, float(effect)


def with_q(tests: pd.DataFrame) -> pd.DataFrame:
    """`tests` with `q_value`: Benjamini-Hochberg over the facts of the headline family (all
    levels but trajectory), and separately over the trajectory comparisons.

    A fact is one test: rows sharing a non-empty `fact` id (a corpus gap seen under several
    x-axes, each row's p already Bonferroni-adjusted within the fact) enter BH once, with
    their smallest p; each row's q is then max(the fact's q, its own p), so a row is
    reported at level alpha only when BH discovers its fact and the row holds within it."""
    out = tests.copy()
    out["q_value"] = np.nan
    if out.empty:
        return out
    fact = out["fact"].astype(str) if "fact" in out else pd.Series("", index=out.index)
    key = fact.where(fact != "", "row:" + out.index.astype(str))
    traj = out["level"].eq(TRAJECTORY)
    for mask in (~traj, traj):
        sub = out.loc[mask & out["p_value"].notna(), "p_value"].astype(float).clip(0.0, 1.0)
        if sub.empty:
            continue
        fp = sub.groupby(key[sub.index]).min()
        fq = pd.Series(false_discovery_control(fp.to_numpy(), method="bh"), index=fp.index)
        out.loc[sub.index, "q_value"] = np.maximum(key[sub.index].map(fq).to_numpy(), sub)
    return out


def n_facts(tests: pd.DataFrame) -> int:
    """Tests in the headline family, each fact counted once (`with_q`)."""
    t = tests[tests["family"] != "trajectory"]
    fact = t["fact"].astype(str) if "fact" in t else pd.Series("", index=t.index)
    return int((fact == "").sum() + fact[fact != ""].nunique())


def axis_falls(x: np.ndarray, n_params: np.ndarray, run_corpus: np.ndarray) -> bool:
    """Is a validation loss a scale: within every corpus with >= 2 sizes, does its mean over
    the runs of a size fall from the smallest size to the largest, and fall with size more
    often than it rises (Spearman rho < 0)? A loss the best models score worst on cannot
    order models from worse to better."""
    df = pd.DataFrame({"x": x, "n": n_params, "c": run_corpus})
    for _, sub in df.groupby("c"):
        m = sub.groupby("n")["x"].mean().sort_index()
        if len(m) < 2:
            continue
        if not m.iloc[-1] < m.iloc[0]:
            return False
        if (
            len(m) >= 3
            and not m.reset_index(drop=True).corr(
                pd.Series(np.arange(len(m), dtype=float)), method="spearman"
            )
            < 0
        ):
            return False
    return True


def n_sizes(n_params: np.ndarray) -> int:
    """Distinct model sizes (not runs): seeds and data mixes of one size add no size."""
    v = np.asarray(n_params, float)
    return int(np.unique(v[np.isfinite(v)]).size)
