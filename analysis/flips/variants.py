"""Flips between a run and its variant: another seed, another precision, another batch size.

A variant run is one whose sweep is ``<sweep>:<variant>`` (``olmo_ladder:seed``,
``pythia:bf16``, ``pythia:bs0.5M``); its reference is the main-suite run of the same source,
size, corpus and token budget, or, when there is none (Pythia has no fp16 1B on the Pile),
the two main-suite runs bracketing its size, interpolated in log N at each token count
(a stand-in: curvature in N shows up as a gap). One run has no scaling law of its own
across models, so the comparison is along training: each run's checkpoints are the points
(x = compute, log10(1e30 / 6ND)), classified by the same rules
(`analysis.trends.classify`, bootstrap over
checkpoints: the only resampling one run allows), and two rows per task may result:

* ``category``: the two runs' trend categories differ (p-value: analysis.flips.evidence).
* ``variant_gap``: the mean accuracy difference (variant - reference) over checkpoints at
  matched tokens is significant: its normal interval (level 1 - alpha) excludes 0 and
  |gap| >= min_gap. The standard error is that of the paired differences over checkpoints,
  or, with fewer than 3 matched checkpoints, the binomial errors (stderr columns).

Both are level ``trajectory`` (analysis.flips.evidence): one run's training against
another's, never a scaling trend, with q-values of their own family and reported apart.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import norm

from analysis.config import AnalysisConfig
from analysis.errors import warn
from analysis.flips.detect import TEST_COLUMNS, category_rows
from analysis.flips.evidence import TRAJECTORY
from analysis.groups.build import Group
from analysis.ingest.axes import AXES
from analysis.trends.classify import classify


def setting_of(sweep: str) -> str:
    """Kind of change a variant sweep makes: seed, precision or batch_size."""
    v = sweep.split(":", 1)[1]
    if v.startswith("seed"):
        return "seed"
    if v in ("bf16", "fp16", "fp32"):
        return "precision"
    if v.startswith("bs"):
        return "batch_size"
    return v


def _reference(runs: pd.DataFrame, rid: str) -> str | None:
    r = runs.loc[rid]
    main = runs[~runs["sweep"].astype(str).str.contains(":", regex=False)]
    same = main[
        (main["source"] == r["source"])
        & (main["size"] == r["size"])
        & (main["corpus"] == r["corpus"])
        & np.isclose(main["train_tokens"].astype(float), float(r["train_tokens"]), rtol=0.02)
    ]
    return str(same.index[0]) if len(same) else None


def _interpolated(tasks: pd.DataFrame, runs: pd.DataFrame, vid: str):
    """Stand-in reference for a variant without a twin: at each token count, the accuracy
    of the two main-suite runs of the same corpus and budget that bracket its size,
    interpolated linearly in log N (stderr likewise). None when no pair brackets it."""
    r = runs.loc[vid]
    main = runs[
        ~runs["sweep"].astype(str).str.contains(":", regex=False)
        & (runs["source"] == r["source"])
        & (runs["corpus"] == r["corpus"])
        & np.isclose(runs["train_tokens"].astype(float), float(r["train_tokens"]), rtol=0.02)
    ]
    n = float(r["n_params"])
    lo = main[main["n_params"] < n]["n_params"].astype(float)
    hi = main[main["n_params"] > n]["n_params"].astype(float)
    if lo.empty or hi.empty:
        return None, ""
    a, b = lo.idxmax(), hi.idxmin()
    w = (np.log(n) - np.log(lo.max())) / (np.log(hi.min()) - np.log(lo.max()))
    keys = ["name", "tokens"]
    ra = tasks[tasks["run_id"] == a].set_index(keys)
    rb = tasks[tasks["run_id"] == b].set_index(keys)
    both = ra.index.intersection(rb.index)
    out = ra.loc[both].copy()
    out["value"] = (1 - w) * ra.loc[both, "value"] + w * rb.loc[both, "value"]
    out["stderr"] = np.sqrt(
        ((1 - w) * ra.loc[both, "stderr"]) ** 2 + (w * rb.loc[both, "stderr"]) ** 2
    )
    out["n_params"] = n
    return out.reset_index(), f"interp({a},{b})"


def _trajectory_group(rows: pd.DataFrame, names: list[str], rid: str) -> Group:
    acc = rows.pivot_table(index="tokens", columns="name", values="value", aggfunc="mean")
    se = rows.pivot_table(index="tokens", columns="name", values="stderr", aggfunc="mean")
    acc, se = acc.reindex(columns=names), se.reindex(index=acc.index, columns=names)
    chance = rows.groupby("name")["chance"].median().reindex(names).to_numpy(float)
    n = float(rows["n_params"].iloc[0])
    x = np.log10(AXES["compute"][1] / (6.0 * n * acc.index.to_numpy(float)))
    meta = rows.drop_duplicates("name").set_index("name")
    ids = np.array([f"{rid}@{t:.0f}" for t in acc.index], dtype=object)
    return Group(
        val_set="compute",
        corpus=str(rows["corpus"].iloc[0]),
        run_ids=ids,
        run_corpus=np.full(len(ids), str(rows["corpus"].iloc[0]), dtype=object),
        size=np.full(len(ids), str(rows["size"].iloc[0]), dtype=object),
        n_params=np.full(len(ids), n),
        x=x,
        names=list(names),
        tasks=[str(meta.at[c, "task"]) for c in names],
        setups=[str(meta.at[c, "setup"]) for c in names],
        Y=acc.to_numpy(float),
        S=se.to_numpy(float),
        chance=chance,
    )


def variant_flips(table: pd.DataFrame, cfg: AnalysisConfig) -> pd.DataFrame:
    """FLIP_COLUMNS rows for every variant run against its reference run."""
    tasks = table[
        (table["kind"] == "task") & (table["metric"] == cfg.accuracy_metric) & table["step"].notna()
    ]
    runs = table.drop_duplicates("run_id").set_index("run_id")
    variants = [r for r in runs.index if ":" in str(runs.at[r, "sweep"])]
    rows: list[dict] = []
    for vid in variants:
        ref = _reference(runs, vid)
        setting = setting_of(str(runs.at[vid, "sweep"]))
        b = tasks[tasks["run_id"] == vid]
        if ref is not None:
            a = tasks[tasks["run_id"] == ref]
        else:
            a, ref = _interpolated(tasks, runs, vid)
            if a is None:
                warn(
                    f"{setting} variant {vid}: no main-suite run of the same size, corpus and "
                    "tokens, nor two that bracket its size; skipped"
                )
                continue
        names = sorted(set(a["name"]) & set(b["name"]))
        if not names:
            continue
        ga, gb = _trajectory_group(a, names, ref), _trajectory_group(b, names, vid)
        ctx = f"size={runs.at[vid, 'size']},corpus={runs.at[vid, 'corpus']}"
        ta = tb = None
        if min(ga.n, gb.n) >= cfg.classify.min_models:
            # independent resamples of the two runs (their points are not paired)
            ta = classify(ga, cfg, cfg.bootstrap.seed)
            tb = classify(gb, cfg, cfg.bootstrap.seed + 1)
            idx = list(range(len(names)))
            for r in category_rows(ta, tb, setting, ctx, ref, vid, idx, idx, "trajectory"):
                rows.append({**r, "level": TRAJECTORY if r["level"] else ""})
        rows += _gap_rows(ga, gb, names, setting, ctx, ref, vid, cfg)
    return pd.DataFrame(rows, columns=TEST_COLUMNS)


def _gap_rows(
    ga: Group,
    gb: Group,
    names: list[str],
    setting: str,
    ctx: str,
    ref: str,
    vid: str,
    cfg: AnalysisConfig,
) -> list[dict]:
    ta = {round(float(x), 6): i for i, x in enumerate(ga.x)}
    pairs = [(ta[round(float(x), 6)], j) for j, x in enumerate(gb.x) if round(float(x), 6) in ta]
    if not pairs:
        return []
    ia, ib = np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])
    z = norm.ppf(1 - cfg.flips.alpha / 2)
    rows = []
    for t in range(len(names)):
        d = gb.Y[ib, t] - ga.Y[ia, t]
        ok = np.isfinite(d)
        k = int(ok.sum())
        if k == 0:
            continue
        gap = float(d[ok].mean())
        if k >= 3:
            se = float(d[ok].std(ddof=1) / np.sqrt(k))
        else:
            s2 = ga.S[ia, t] ** 2 + gb.S[ib, t] ** 2
            se = float(np.sqrt(np.nanmean(s2) / k)) if np.isfinite(s2).any() else np.nan
        if not np.isfinite(se) or se <= 0:
            continue
        lo, hi = gap - z * se, gap + z * se
        flip = (lo > 0 or hi < 0) and abs(gap) >= cfg.flips.min_gap
        # every task compared is a test; the flips are the rows with a level
        rows.append(
            {
                "task": ga.tasks[t],
                "setup": ga.setups[t],
                "setting": setting,
                "context": ctx,
                "from": ref,
                "to": vid,
                "kind": "variant_gap",
                "effect": gap,
                "effect_from": np.nan,
                "ci_low": lo,
                "ci_high": hi,
                "p_value": float(2 * norm.sf(abs(gap) / se)),
                "level": TRAJECTORY if flip else "",
                "effect_size": abs(gap),
                "q_value": np.nan,
                "family": "trajectory",
                "fact": "",
            }
        )
    return rows
