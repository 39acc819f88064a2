"""The measured null and the per-change table: how often does a law break, per kind of change,
and how often does the same detector call a flip when nothing that matters changed?

Null changes (setting ``null_split`` / ``null_seed``), on the headline group of the
reference x-axis:

* random halves: the runs split at random into two halves, within each (corpus, size) so
  that both halves span the sizes where they can (whole runs when the points are
  checkpoints), each half classified on its own resamples and the two compared by the
  same tests, Benjamini-Hochberg within the split; repeated `null_splits` times.
* seeds: where the runs carry two seeds and each seed spans `min_sizes` sizes, the runs of
  one seed against the other's; where the seeds are reruns of single runs instead (seed
  variants, compared checkpoint by checkpoint), the share of tasks whose trajectory's
  verdict differs between the rerun and its original (`seed_rerun_rate`).

The null rate is the share of tasks with a verdict flip at q < alpha (mean over splits).

flip_rates.csv: per kind of change, the tests run, the tasks compared, the tasks with a
verdict flip or reversal at q < alpha and their share with a bootstrap interval over tasks,
and the null rates beside it.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from analysis.config import AnalysisConfig
from analysis.flips.detect import TEST_COLUMNS, category_rows
from analysis.flips.evidence import (
    HEADLINE_LEVELS,
    TRAJECTORY,
    n_facts,
    n_sizes,
    verdict_flip,
    with_q,
)
from analysis.groups.build import Group, percentile_ci
from analysis.ingest.axes import run_of
from analysis.trends.classify import LABELS, GroupTrends, classify

RATE_COLUMNS = [
    "setting",
    "n_tests",
    "n_tasks",
    "n_flipped",
    "share",
    "ci_low",
    "ci_high",
    "null_split_rate",
    "null_split_max",
    "null_seed_rate",
    "trajectory",
]


def _subgroup(g: Group, keep: np.ndarray) -> Group:
    """The group restricted to the points `keep` (boolean over points)."""
    return dataclasses.replace(
        g,
        run_ids=g.run_ids[keep],
        run_corpus=g.run_corpus[keep],
        size=g.size[keep],
        n_params=g.n_params[keep],
        x=g.x[keep],
        Y=g.Y[keep],
        S=g.S[keep],
        X_task=None if g.X_task is None else g.X_task[keep],
        cluster=None if g.cluster is None else g.cluster[keep],
    )


def _runs(g: Group) -> np.ndarray:
    """The run of each point (checkpoints of one run move together)."""
    return g.cluster if g.cluster is not None else g.run_ids


def random_halves(g: Group, rng: np.random.Generator) -> np.ndarray:
    """Boolean over points: half A of a random split of the runs within (corpus, size)."""
    runs = _runs(g)
    df = pd.DataFrame({"run": runs, "c": g.run_corpus, "n": g.n_params}).drop_duplicates("run")
    in_a: dict = {}
    offset = int(rng.integers(2))
    for _, sub in df.groupby(["c", "n"], sort=True):
        order = rng.permutation(len(sub))
        for i, j in enumerate(order):
            # alternate, carrying the parity across strata so single-run sizes alternate too
            in_a[sub["run"].iloc[j]] = (i + offset) % 2 == 0
        offset += len(sub)
    return np.array([in_a[r] for r in runs], dtype=bool)


def _null_rate(a: GroupTrends, b: GroupTrends, setting: str, alpha: float) -> tuple[float, int]:
    """Share of tasks with a verdict flip at q < alpha between two halves, and tasks tested."""
    idx = list(range(len(a.group.names)))
    tests = pd.DataFrame(category_rows(a, b, setting, "", "A", "B", idx, idx), columns=TEST_COLUMNS)
    if tests.empty:
        return np.nan, 0
    tests = with_q(tests)
    hit = tests["level"].eq("verdict") & (tests["q_value"] < alpha)
    return float(hit.sum() / len(tests)), len(tests)


def null_rates(
    gt: GroupTrends | None, points: pd.DataFrame, cfg: AnalysisConfig
) -> dict[str, float]:
    """Null flip rates of the headline group `gt` (module doc): split mean and max, seed."""
    out = {"null_split_rate": np.nan, "null_split_max": np.nan, "null_seed_rate": np.nan}
    if gt is None:
        return out
    g, fc = gt.group, cfg.flips
    rng = np.random.default_rng(cfg.bootstrap.seed + 7919)
    rates = []
    for i in range(fc.null_splits):
        keep = random_halves(g, rng)
        ga, gb = _subgroup(g, keep), _subgroup(g, ~keep)
        if min(n_sizes(ga.n_params), n_sizes(gb.n_params)) < fc.min_sizes:
            continue
        seed = cfg.bootstrap.seed + 101 * (i + 1)
        r, n = _null_rate(classify(ga, cfg, seed), classify(gb, cfg, seed + 1), "null", fc.alpha)
        if n:
            rates.append(r)
    if rates:
        out["null_split_rate"], out["null_split_max"] = float(np.mean(rates)), float(max(rates))
    seeds = pd.Series(dtype=float)
    if "seed" in points:
        # by run, not point: with checkpoints as points a point is `<run>#<step>` (cluster: run)
        by_run = points.assign(run_id=run_of(points["run_id"].to_numpy()))
        seeds = by_run.drop_duplicates("run_id").set_index("run_id")["seed"]
    run_seed = pd.Series(_runs(g)).map(seeds)
    common = run_seed.dropna().value_counts()
    if len(common) >= 2:
        s1, s2 = common.index[:2]
        ka, kb = (run_seed == s1).to_numpy(), (run_seed == s2).to_numpy()
        ga, gb = _subgroup(g, ka), _subgroup(g, kb)
        if min(n_sizes(ga.n_params), n_sizes(gb.n_params)) >= fc.min_sizes:
            seed = cfg.bootstrap.seed + 9001
            r, n = _null_rate(
                classify(ga, cfg, seed), classify(gb, cfg, seed + 1), "seed", fc.alpha
            )
            out["null_seed_rate"] = r if n else np.nan
    return out


def seed_rerun_rate(tests: pd.DataFrame, alpha: float) -> float:
    """The seed null where the seeds are reruns of single runs (the OLMo ladder's 1x
    reruns): the share of tasks whose category under one seed's trajectory differs in
    verdict from the other's at q < alpha. NaN without seed reruns."""
    cat = tests[
        (tests["setting"] == "seed")
        & (tests["family"] == "trajectory")
        & (tests["kind"] == "category")
    ]
    if cat.empty:
        return np.nan
    codes = cat["effect"].astype(str).str.split("->", expand=True)
    a = codes[0].map(LABELS.index).to_numpy()
    b = codes[1].map(LABELS.index).to_numpy()
    hit = verdict_flip(a, b) & (cat["q_value"].to_numpy(float) < alpha)
    return float(pd.Series(hit).groupby(cat["task"].astype(str).to_numpy()).any().mean())


def flip_rates(tests: pd.DataFrame, null: dict[str, float], cfg: AnalysisConfig) -> pd.DataFrame:
    """flip_rates.csv (module doc) from every test (with q-values) and the null rates."""
    rows = []
    if tests.empty:
        return pd.DataFrame(columns=RATE_COLUMNS)
    rng = np.random.default_rng(cfg.bootstrap.seed)
    if np.isnan(null.get("null_seed_rate", np.nan)):
        null = {**null, "null_seed_rate": seed_rerun_rate(tests, cfg.flips.alpha)}
    for setting, sub in tests.groupby("setting", sort=True):
        traj = bool(sub["family"].eq("trajectory").all())
        levels = (TRAJECTORY,) if traj else HEADLINE_LEVELS
        hit = sub["level"].isin(levels) & (sub["q_value"] < cfg.flips.alpha)
        per_task = hit.groupby(sub["task"].astype(str)).any()
        k = per_task.to_numpy(float)
        share = float(k.mean()) if k.size else np.nan
        lo: float | np.ndarray = np.nan  # a 0-d array from percentile_ci when set
        hi: float | np.ndarray = np.nan
        if k.size >= 2:
            boot = k[rng.integers(0, k.size, (1000, k.size))].mean(1)
            lo, hi = percentile_ci(boot, cfg.bootstrap.ci)
        rows.append(
            {
                "setting": setting,
                "n_tests": len(sub) if traj else n_facts(sub),
                "n_tasks": int(k.size),
                "n_flipped": int(k.sum()),
                "share": share,
                "ci_low": float(lo),
                "ci_high": float(hi),
                **null,
                "trajectory": traj,
            }
        )
    return pd.DataFrame(rows, columns=RATE_COLUMNS)
