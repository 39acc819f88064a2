"""report.md sections for the analyses of `analysis.testbed_extras` (from the tables in
`AnalysisResults`, the ones written); each section is empty when its table was not computed."""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd

from analysis import testbeds
from analysis.config import AnalysisConfig
from analysis.ingest.axes import AXES, axis_label, axis_phrase
from analysis.report.observational import capability_section
from analysis.results import AnalysisResults
from analysis.testbeds.olmo_ladder.loader import PUBLISHED_SOURCE


def axis_line(cfg: AnalysisConfig) -> str:
    """The sentence naming the x-axis and the points of the headline."""
    pts = (
        "final checkpoints (one point per run)"
        if cfg.points == "final"
        else f"every checkpoint past {cfg.checkpoint_min_frac:.0%} of each run's tokens, "
        "bootstrap over runs"
    )
    return f"x-axis: {axis_label(cfg.reference_val_set)}; points: {pts}.\n"


def _count(row) -> str:
    if row["frac"] != row["frac"]:
        return "n/a (too few sizes)"
    return f"{int(row['n_predictable'])} of {int(row['n_tasks'])} predictable"


def choices_line(res: AnalysisResults) -> str:
    """First screen: the two choices the headline rests on (points; validation loss vs
    compute) and the headline's count under the other choice of each ('' for neither)."""
    cfg, keys = res.cfg, res.reference_keys
    pred, pts, comp = (
        res.table("predictable"),
        res.table("predictable_points"),
        res.table("predictable_compute"),
    )
    if not keys or pred.empty:
        return ""
    v, c = keys[0]
    here = pred[(pred["val_set"] == v) & (pred["corpus"] == c)]
    if here.empty:
        return ""
    parts = []
    other = "all" if cfg.points == "final" else "final"
    alt = pts[(pts["points"] == other) & (pts["val_set"] == v)] if not pts.empty else pts
    name = "final checkpoints" if cfg.points == "final" else "every checkpoint"
    if not alt.empty:
        alt_name = "every checkpoint" if other == "all" else "final checkpoints only"
        parts.append(f"{name} (with {alt_name}: {_count(alt.iloc[0])})")
    else:
        parts.append(name)
    if v not in AXES:
        alt_axis = f" (against compute: {_count(comp.iloc[0])})" if not comp.empty else ""
        parts.append(f"{axis_phrase(v)} as the x-axis{alt_axis}")
    n = here.iloc[0]
    head = (
        f"{int(n['n_predictable'])} of {int(n['n_tasks'])} predictable"
        if n["frac"] == n["frac"]
        else "n/a"
    )
    return f"The headline ({head}) rests on {'; '.join(parts)}.\n"


def _final_na(piv: pd.DataFrame, trends: pd.DataFrame, cfg: AnalysisConfig) -> pd.DataFrame:
    """The final-checkpoint cells are n/a where the headline classified no task (too few
    models), as in the headline table: 0.000 would read as a result."""
    from analysis.report.findings import insufficient_reason

    cols = [c for c in piv.columns if c.startswith("final:")]
    if trends.empty or not cols:
        return piv
    piv = piv.astype(object)
    for val_set, corpus in piv.index:
        if insufficient_reason(trends, val_set, corpus, cfg):
            piv.loc[(val_set, corpus), cols] = "n/a"
    return piv


def extra_sections(res: AnalysisResults, md: Callable[..., str]) -> str:
    cfg = res.cfg
    s: list[str] = []
    pts = res.table("predictable_points")
    if not pts.empty:
        s.append("\n## Final checkpoints vs every checkpoint\n\n")
        s.append(
            "Fraction predictable under both points choices (every checkpoint: points "
            "past the first share of each run, bootstrap over runs, "
            f"{int(pts['resamples'].min())}+ resamples):\n"
        )
        piv = pts.pivot_table(
            index=["val_set", "corpus"], columns="points", values=["frac", "ci_low", "ci_high"]
        ).round(3)
        piv.columns = [f"{b}:{a}" for a, b in piv.columns]
        piv = _final_na(piv, res.table("trends"), cfg)
        s.append(
            md(
                piv.reset_index()[
                    sorted(
                        piv.reset_index().columns, key=lambda c: (c not in ("val_set", "corpus"), c)
                    )
                ]
            )
        )
    own = res.table("task_axis_predictable")
    if not own.empty:
        s.append("\n## Each task against its own bits-per-byte\n\n")
        s.append(
            "x = the task's bits-per-byte of the correct answer (one group per task, the "
            "same rules and resamples); per-task categories in task_axis_trends.csv:\n"
        )
        s.append(md(own))
    bt = res.table("two_step")
    if not bt.empty:
        s.append("\n## Two-step prediction of the targets (Bhagia et al. 2024 protocol)\n\n")
        s.append(
            "Step 1 (N, D) -> task bpb, step 2 bpb -> accuracy (sigmoid), fitted on the "
            "ladder; `c4_loss` uses the C4 loss as the intermediate, `single_step` fits "
            "accuracy from (N, D) directly. Errors in accuracy points (fraction); "
            f"published: {PUBLISHED_SOURCE} (13B only; 7B: not found).\n"
        )
        agg = bt.groupby(["method", "target"]).agg(
            tasks=("task", "size"),
            mean_abs_error=("abs_error", "mean"),
            median_abs_error=("abs_error", "median"),
            mean_rel_error=("rel_error", "mean"),
        )
        s.append(md(agg.reset_index(), ".4f"))
        two = bt[(bt["method"] == "two_step") & bt["published_abs_error"].notna()]
        if not two.empty:
            s.append("\nPer task, 13B target, beside the published chained prediction:\n")
            s.append(
                md(
                    two[
                        [
                            "task",
                            "predicted",
                            "actual",
                            "abs_error",
                            "published_predicted",
                            "published_actual",
                            "published_abs_error",
                        ]
                    ],
                    ".4f",
                )
            )
    s.append(spread_section(res.table("seed_spread"), md))
    emergent = tuple(t for b in testbeds.of_table(res.runs) for t in b.emergent_tasks)
    s.append(capability_section(res, md, emergent))
    var = res.table("variance")
    if not var.empty:
        s.append("\n## Variance over the last checkpoints vs prediction error\n\n")
        v = var.dropna(subset=["two_step_abs_error_13B"])
        if len(v) > 2:
            rho = v["acc_sd"].corr(v["two_step_abs_error_13B"], method="spearman")
            s.append(
                f"Spearman correlation of accuracy SD (last {int(var['last_n'].max())} "
                f"checkpoints of {var['run'].iloc[0]}) with the 13B two-step absolute "
                f"error over {len(v)} tasks: {rho:.2f}.\n"
            )
        s.append(md(var.sort_values("acc_sd", ascending=False), ".4f"))
    return "".join(s)


def spread_section(spread: pd.DataFrame, md) -> str:
    """The report's section: a sentence, then the table."""
    if spread.empty:
        return ""
    tasks = spread[spread["quantity"] == "task"]
    s = ["\n## Run-to-run spread over seeds\n\n"]
    r = spread.iloc[0]
    s.append(
        f"{int(r['n_configs'])} configuration(s) (corpus × size) were trained with "
        f"{int(r['n_seeds'])} seeds. `seed_sd` is the standard deviation between seeds of one "
        "configuration; `size_range` how far the seed-averaged value moves across sizes. "
    )
    if not tasks.empty:
        weak = tasks[tasks["range_over_sd"] < 3]
        s.append(
            f"For {len(weak)} of {len(tasks)} tasks the change across sizes is under three "
            "seed spreads: one seed per size cannot show their trend reliably.\n"
        )
    else:
        s.append("\n")
    return "".join(s) + md(spread)
