"""report.md section for a testbed with a capability axis (analysis.flips.capability_axis):
the fraction predictable per x-axis with its interval, how many tasks change category with
the model family on each axis, the tasks whose category changes from compute to capability,
the per-family vs pooled categories on the capability axis, and what the rules call the
testbed's emergent-capability tasks. Empty when the capability axis was not computed."""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd

from analysis.groups.build import POOLED
from analysis.ingest.capability import AXIS
from analysis.results import AnalysisResults


def family_changes(flips: pd.DataFrame, axis: str) -> list[str]:
    """Task variants whose category differs between two families on x-axis `axis`."""
    if flips.empty:
        return []
    f = flips[
        (flips["setting"] == "corpus")
        & (flips["kind"] == "category")
        & (flips["context"] == f"val_set={axis}")
    ]
    names = f["task"] + f["setup"].map(lambda s: f"@{s}" if s else "")
    return sorted(set(names))


def capability_section(
    res: AnalysisResults, md: Callable[..., str], emergent: tuple[str, ...] = ()
) -> str:
    cap = res.table("capability_predictable")
    if cap.empty:
        return ""
    pred, trends, flips = res.table("predictable"), res.table("trends"), res.table("flips")
    ctrends = res.table("capability_trends")
    s = ["\n## Capability axis (observational scaling)\n\n"]
    s.append(
        "x = 5 - capability, the capability being the first principal component of the "
        "standardised standard benchmarks, built without the task analysed (leave-one-out; "
        "analysis/ingest/capability.py). The same rules and resamples as compute; families "
        f"with at least {res.cfg.min_corpus_models} models also on their own.\n\n"
    )
    rows = []
    pooled = pd.concat(
        [pred[pred["corpus"] == res.headline_corpus], cap[cap["corpus"] == POOLED]],
        ignore_index=True,
    )
    for r in pooled.itertuples():
        rows.append(
            {
                "x-axis": r.val_set,
                "predictable": f"{r.frac:.2f} [{r.ci_low:.2f}, {r.ci_high:.2f}]",
                "tasks": int(r.n_tasks),
                "tasks changing category with the family": len(family_changes(flips, r.val_set)),
            }
        )
    s.append(md(pd.DataFrame(rows)))
    s.append(
        "\n`predictable`: share of tasks, pooled over families, with its bootstrap interval "
        "over models; a family change is a category flip between two families that are "
        "both classified (not insufficient).\n"
    )
    ref = res.reference_val_set
    if not flips.empty:
        ax = flips[
            (flips["setting"] == "val_set")
            & (flips["kind"] == "category")
            & (flips["to"] == AXIS)
            & (flips["context"] == f"corpus={POOLED}")
        ]
        if not ax.empty:
            s.append(f"\nCategory changes from {ref} to capability (pooled):\n\n")
            s.append(md(ax[["task", "setup", "effect", "p_value"]]))
    if not ctrends.empty:
        piv = ctrends.pivot_table(
            index="name", columns="corpus", values="category", aggfunc="first"
        )
        cols = [POOLED] + sorted(c for c in piv.columns if c != POOLED)
        s.append("\nCapability axis: category per family vs pooled:\n\n")
        s.append(md(piv.reindex(columns=cols).fillna("").reset_index()))
    if emergent:
        s.append(_emergent(trends, ctrends, emergent, res.headline_corpus, md))
    return "".join(s)


def _emergent(trends, ctrends, emergent, head: str, md) -> str:
    both = pd.concat([trends, ctrends], ignore_index=True)
    e = both[both["task"].isin(emergent) & (both["corpus"] == head)]
    if e.empty:
        return ""
    piv = e.pivot_table(index="name", columns="val_set", values="category", aggfunc="first")
    counts = e.groupby("val_set")["category"].value_counts().unstack(fill_value=0)
    s = ["\nEmergent-capability tasks (abrupt rises reported upstream), pooled:\n\n"]
    s.append(md(piv.reset_index()))
    s.append("\n" + md(counts.reset_index()))
    return "".join(s)
