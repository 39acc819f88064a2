"""The report's section on agreement with published labels (the calibration tables)."""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd

from analysis.results import AnalysisResults
from analysis.trends.calibrate import CALIBRATION_GRID
from analysis.trends.classify import CATEGORIES, LABELS


def calibration_section(res: AnalysisResults, md: Callable[..., str]) -> str:
    """Cross-validated agreement, confusion matrix, per-task labels ('' without labels)."""
    cal, met = res.table("calibration"), res.table("calibration_metrics")
    if cal.empty or met.empty:
        return ""
    m = dict(zip(met["metric"], met["value"], strict=False))
    f = {k: float(m[k]) for k in m if k.startswith(("cv_", "configured_", "tuned_"))}
    n = int(f["cv_n"])
    s = [
        f"\n## Agreement with the paper's labels ({n} tasks)\n\n",
        f"Labels: `{m['labels_file']}`, checked on `{m['val_set']}`, corpus `{m['corpus']}` "
        "(the paper labelled each task looking at all corpora together against C4 loss). "
        "**Cross-validated** (leave-one-out: the whole threshold search of "
        "analysis.trends.calibrate "
        "is rerun without each task, which is then classified with the thresholds found):\n\n",
        f"- six-way agreement: **{f['cv_six_way']:.0%}** ({round(f['cv_six_way'] * n)}/{n})\n",
        f"- predictable vs not: **{f['cv_binary']:.0%}** agreement, Cohen's "
        f"κ = **{f['cv_kappa']:.2f}**\n",
        f"- with the configured thresholds (in-sample, tuned on all {n}): six-way "
        f"{f['configured_six_way']:.0%}, binary κ = {f['configured_kappa']:.2f}\n",
    ]
    tuned = {k[len("tuned_") :]: v for k, v in f.items() if k.startswith("tuned_")}
    s.append(
        "- thresholds the search picks on all labelled tasks: "
        + ", ".join(f"{k} = {v:g}" for k, v in tuned.items())
        + f" (grid: {', '.join(f'{k} in {list(v)}' for k, v in CALIBRATION_GRID.items())})\n"
    )
    conf = pd.crosstab(
        pd.Categorical(cal["label"], CATEGORIES), pd.Categorical(cal["cv"], LABELS), dropna=False
    )
    conf = conf.loc[:, (conf > 0).any() | conf.columns.isin(CATEGORIES)]
    conf.index.name, conf.columns.name = "paper \\ rules (cv)", None
    s.append(
        "\nConfusion matrix (rows: the paper's category; columns: the cross-validated "
        "rule):\n\n" + md(conf.reset_index(), ".0f")
    )
    s.append(
        "\nPer task (cv = classified with thresholds tuned without it; features at the "
        "configured binning):\n\n" + md(cal, ".3f")
    )
    return "".join(s)


def corpus_section(res: AnalysisResults, md: Callable[..., str], val_set: str) -> str:
    """Per-corpus and pooled categories side by side, disagreements first."""
    by = res.table("labels_by_corpus")
    if by.empty or "corpora_agree" not in by:
        return ""
    by = by.sort_values(["corpora_agree", "name"], key=lambda c: c.astype(str))
    n_dis = int((~by["corpora_agree"].astype(bool)).sum())
    return (
        f"\n## Categories per corpus and pooled (`{val_set}`)\n\n"
        f"{n_dis} of {len(by)} tasks get different categories in different corpora "
        "(listed first).\n\n" + md(by, ".3f")
    )
