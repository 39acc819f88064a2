"""The capability axis as an x-axis (analysis.ingest.capability): trends per task against a
capability measure built from the standard benchmarks without that task, pooled over model
families and within each family that has a group of its own (min_corpus_models), and the
category flips it brings:

* x-axis change: the reference x-axis (compute) -> capability, family held fixed;
* family change on the capability axis (a pair of families, both classified).

A task among the benchmarks gets its own leave-one-out axis; every other task (emergent
capabilities, leaderboard) the axis from all benchmarks. Each axis is one group of the tasks
that use it, classified by the same rules with the compute group's resamples (same seed,
same models: paired), so the fraction predictable has a bootstrap interval over models.
Outputs: capability_predictable.csv (pooled and per family), capability_trends.csv, and
capability_axis.csv (each model's x per task), the flips appended to flips.csv.
"""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pandas as pd

from analysis.config import AnalysisConfig
from analysis.flips.detect import TEST_COLUMNS, category_rows
from analysis.groups.build import POOLED, percentile_ci
from analysis.ingest.capability import AXIS, axis_values, leave_one_out
from analysis.trends.classify import LABELS, GroupTrends, classify, corpus_seed, trend_rows


def benchmark_matrix(points: pd.DataFrame, tasks: list[str], metric: str) -> pd.DataFrame:
    """(models x benchmarks) accuracies of the final checkpoints, default setup only."""
    fin = points[points["final"].fillna(False).astype(bool)]
    sel = (fin["kind"] == "task") & (fin["metric"] == metric) & fin["name"].isin(tasks)
    return fin[sel].pivot_table(index="run_id", columns="name", values="value", aggfunc="mean")


def axis_table(axes: dict[str | None, pd.Series]) -> pd.DataFrame:
    """capability_axis.csv: run_id, the benchmark left out ('' = none), capability, x."""
    rows = []
    for left_out, cap in axes.items():
        rows.append(
            pd.DataFrame(
                {
                    "run_id": cap.index.astype(str),
                    "left_out": left_out or "",
                    "capability": cap.to_numpy(float),
                    "x": axis_values(cap).to_numpy(float),
                }
            )
        )
    return pd.concat(rows, ignore_index=True)


def _by_axis(ref: GroupTrends, benchmarks: list[str]) -> dict[str | None, list[int]]:
    """Columns of `ref` per axis: a benchmark's own leave-one-out axis, else the full one."""
    out: dict[str | None, list[int]] = {}
    for t, task in enumerate(ref.group.tasks):
        key = task if task in benchmarks and not ref.group.setups[t] else None
        out.setdefault(key, []).append(t)
    return out


def _classify_family(
    ref: GroupTrends, axes: dict[str | None, pd.Series], benchmarks: list[str], cfg
) -> dict[str | None, tuple[list[int], GroupTrends]]:
    """axis -> (columns of ref, their classification on that axis), for one family."""
    g = ref.group
    out = {}
    for key, cols in _by_axis(ref, benchmarks).items():
        x = axis_values(axes[key].reindex(g.run_ids.astype(str))).to_numpy(float)
        ok = np.isfinite(x)
        sub = dataclasses.replace(
            g,
            val_set=AXIS,
            run_ids=g.run_ids[ok],
            run_corpus=g.run_corpus[ok],
            size=g.size[ok],
            n_params=g.n_params[ok],
            x=x[ok],
            names=[g.names[t] for t in cols],
            tasks=[g.tasks[t] for t in cols],
            setups=[g.setups[t] for t in cols],
            Y=g.Y[ok][:, cols],
            S=g.S[ok][:, cols],
            chance=g.chance[cols],
            X_task=None,
            cluster=None if g.cluster is None else g.cluster[ok],
        )
        # the compute group's seed and models: the same resamples, so flips are paired
        out[key] = (cols, classify(sub, cfg, corpus_seed(cfg, g.corpus)))
    return out


def _predictable(corpus: str, parts: list[GroupTrends], ci: float) -> dict:
    R = min(gt.codes.shape[0] for gt in parts)
    C = np.concatenate([gt.codes[:R] for gt in parts], axis=1)
    frac = (C == LABELS.index("predictable")).mean(1)
    lo, hi = percentile_ci(frac[1:], ci) if R > 2 else (np.nan, np.nan)
    return {
        "val_set": AXIS,
        "corpus": corpus,
        "frac": float(frac[0]),
        "ci_low": float(lo),
        "ci_high": float(hi),
        "n_tasks": C.shape[1],
        "n_predictable": int((C[0] == LABELS.index("predictable")).sum()),
    }


def capability_axis(
    cfg: AnalysisConfig,
    points: pd.DataFrame,
    groups: dict[tuple[str, str], GroupTrends],
    benchmarks: list[str],
) -> dict[str, pd.DataFrame] | None:
    """The capability-axis tables and flips (module doc) from the reference x-axis's groups;
    None when the table lacks two benchmarks or a reference group."""
    scores = benchmark_matrix(points, benchmarks, cfg.accuracy_metric)
    if scores.shape[1] < 2:
        return None
    present = list(scores.columns)
    axes = leave_one_out(scores)
    ref_set = cfg.reference_val_set
    # the reference axis's groups: pooled, and each family with a group of its own
    # (analysis.config min_corpus_models)
    fams = {c: gt for (v, c), gt in sorted(groups.items()) if v == ref_set}
    if not fams:
        return None
    parts = {c: _classify_family(gt, axes, present, cfg) for c, gt in fams.items()}
    trends, pred, flips = [], [], []
    for c, ps in parts.items():
        pred.append(_predictable(c, [gt for _, gt in ps.values()], cfg.bootstrap.ci))
        trends += [trend_rows(gt) for _, gt in ps.values()]
        for cols, gt in ps.values():  # x-axis change, family held fixed
            flips += category_rows(
                fams[c], gt, "val_set", f"corpus={c}", ref_set, AXIS, cols, list(range(len(cols)))
            )
    for a, b in itertools.combinations([c for c in parts if c != POOLED], 2):
        for key in parts[a].keys() & parts[b].keys():
            ga, gb = parts[a][key][1], parts[b][key][1]
            names = [n for n in ga.group.names if n in gb.group.names]
            ia = [ga.group.names.index(n) for n in names]
            ib = [gb.group.names.index(n) for n in names]
            flips += category_rows(ga, gb, "corpus", f"val_set={AXIS}", a, b, ia, ib)
    pred_df = pd.DataFrame(pred)
    pred_df = pd.concat(
        [pred_df[pred_df["corpus"] == POOLED], pred_df[pred_df["corpus"] != POOLED]],
        ignore_index=True,
    )
    return {
        "capability_predictable": pred_df,
        "capability_trends": pd.concat(trends, ignore_index=True),
        "capability_axis": axis_table(axes),
        "flips": pd.DataFrame(flips, columns=TEST_COLUMNS),
    }
