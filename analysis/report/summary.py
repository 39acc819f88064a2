"""The summary of several testbeds analysed in one run (`analysis.pipeline.run_sources`):
`<out>/summary.md`, `<out>/summary/*.csv` and one figure per testbed of its most-flipped
tasks, from each testbed's written tables. Its first screen answers: how often does a
downstream law hold (fraction of tasks predictable, per testbed, x-axis, evaluation setup
and corpus, with intervals), and what breaks it (per kind of change, the share of tasks
whose verdict flips at q < 0.05, with its interval and the null rate beside it).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.config import AnalysisConfig
from analysis.output import files as io
from analysis.predict.stage import predictions_summary
from analysis.trends.classify import INSUFFICIENT, NOT_A_SCALE

#: categories that say a task could not be classified (too few models or sizes; an x-axis
#: that is not a scale): a group of only these has no share predictable, n/a, not 0%
UNCLASSIFIED = (INSUFFICIENT, NOT_A_SCALE)

#: a flip counts when its Benjamini-Hochberg q-value is below this (analysis.flips.evidence)
SIGNIFICANT_Q = 0.05


def _share(category: pd.Series) -> float:
    """Share of tasks predictable; NaN (shown n/a) when no task could be classified at all
    (UNCLASSIFIED): 0 of 0 classified is no evidence of 0%."""
    if category.empty or category.isin(UNCLASSIFIED).all():
        return np.nan
    return float((category == "predictable").mean())


def _unclassified(trends: pd.DataFrame, val_set: str, corpus: str) -> bool:
    """Whether the group has trends rows and none could be classified (UNCLASSIFIED)."""
    if "category" not in trends:
        return False
    t = trends[(trends["val_set"] == val_set) & (trends["corpus"] == corpus)]
    return not t.empty and bool(t["category"].isin(UNCLASSIFIED).all())


def _axis_row(name: str, r, reference: bool, unclassified: bool = False) -> dict:
    """A summary row of one x-axis's fraction predictable (a predictable.csv row);
    `unclassified`: no task of the group could be classified, so no share (n/a)."""
    na = np.nan if unclassified else None
    return {
        "testbed": name,
        "breakdown": "x-axis",
        "value": r.val_set,
        "reference": reference,
        "frac": r.frac if na is None else na,
        "ci_low": r.ci_low if na is None else na,
        "ci_high": r.ci_high if na is None else na,
        "n_tasks": r.n_tasks,
    }


def _headline(name: str, d: Path) -> list[dict]:
    cfg = AnalysisConfig.from_dict(json.loads((d / "analysis_config.json").read_text()))
    pred = io.read_csv(d / "tables" / "predictable.csv")
    trends = io.read_csv(d / "tables" / "trends.csv")
    rows = [
        _axis_row(
            name,
            r,
            r.val_set == cfg.reference_val_set,
            _unclassified(trends, r.val_set, r.corpus),
        )
        for r in pred.itertuples()
    ]
    # each task against its own bits-per-byte; the leave-one-out capability axis, pooled
    for table, pooled_only in (("task_axis_predictable", False), ("capability_predictable", True)):
        extra = d / "tables" / f"{table}.csv"
        if extra.exists():
            rows += [
                _axis_row(name, r, False)
                for r in io.read_csv(extra).itertuples()
                if not pooled_only or r.corpus == "all"
            ]
    ref = trends[trends["val_set"] == cfg.reference_val_set]
    head_corpus = pred.loc[pred["val_set"] == cfg.reference_val_set, "corpus"]
    if not ref.empty and not head_corpus.empty:
        h = ref[ref["corpus"] == head_corpus.iloc[0]]
        for setup, g in h.groupby(h["setup"].replace("", "default")):
            rows.append(
                {
                    "testbed": name,
                    "breakdown": "setup",
                    "value": setup,
                    "reference": False,
                    "frac": _share(g["category"]),
                    "ci_low": np.nan,
                    "ci_high": np.nan,
                    "n_tasks": len(g),
                }
            )
        for corpus, g in ref.groupby("corpus"):
            if corpus == head_corpus.iloc[0] and ref["corpus"].nunique() > 1:
                continue
            rows.append(
                {
                    "testbed": name,
                    "breakdown": "corpus",
                    "value": corpus,
                    "reference": False,
                    "frac": _share(g["category"]),
                    "ci_low": np.nan,
                    "ci_high": np.nan,
                    "n_tasks": len(g),
                }
            )
    pts = d / "tables" / "predictable_points.csv"
    if pts.exists():
        p = io.read_csv(pts)
        for r in p[p["val_set"] == cfg.reference_val_set].itertuples():
            rows.append(
                {
                    "testbed": name,
                    "breakdown": "points",
                    "value": r.points,
                    "reference": False,
                    "frac": r.frac,
                    "ci_low": r.ci_low,
                    "ci_high": r.ci_high,
                    "n_tasks": r.n_tasks,
                }
            )
    return rows


def _flip_counts(name: str, d: Path) -> pd.DataFrame:
    """The testbed's flip_rates.csv (per kind of change: tests, share of tasks whose verdict
    flips or whose corpora reverse at q < 0.05, its interval, the null rates)."""
    f = io.read_csv(d / "tables" / "flip_rates.csv")
    return f.assign(testbed=name)[["testbed"] + [c for c in f.columns]]


def _extrapolation(name: str, d: Path) -> pd.DataFrame:
    e = io.read_csv(d / "tables" / "extrapolation.csv")
    if e.empty:
        return pd.DataFrame()
    pub = e[e["published_rel_error"].notna()].copy()
    two = e[e["backtest"] == "two_step_ladder"]
    cols = [
        "testbed",
        "backtest",
        "target",
        "quantity",
        "law",
        "rel_error",
        "published_rel_error",
    ] + [c for c in ("abs_error", "published_abs_error") if c in e]
    rows = [pub.assign(testbed=name)[cols]]
    if not two.empty:
        g = two.groupby(["law", "target"]).agg(
            rel_error=("rel_error", "mean"), abs_error=("abs_error", "mean")
        )
        both = (
            two[two["published_abs_error"].notna()]
            .groupby(["law", "target"])
            .agg(
                abs_error_published_tasks=("abs_error", "mean"),
                published_abs_error=("published_abs_error", "mean"),
            )
        )
        g = (
            g.join(both)
            .reset_index()
            .assign(testbed=name, backtest="two_step_ladder", quantity="acc: mean over tasks")
        )
        rows.append(g)
    return pd.concat(rows, ignore_index=True)


def write_summary(out: Path, summaries: dict, dest: Path | None = None) -> Path:
    """summary.md, summary/*.csv and summary figures from the testbeds' written tables."""
    dest = out if dest is None else dest  # a staging folder (analysis.output.folder)
    from analysis.report.markdown import md_table

    head, flips, ext, figs = [], [], [], []
    for name in summaries:
        d = out / name
        head += _headline(name, d)
        flips.append(_flip_counts(name, d))
        ext.append(_extrapolation(name, d))
        figs.append(_most_flipped_figure(dest, name, d))
    head_df, flip_df = pd.DataFrame(head), pd.concat(flips, ignore_index=True)
    ext_df = (
        pd.concat([e for e in ext if not e.empty], ignore_index=True)
        if any(not e.empty for e in ext)
        else pd.DataFrame()
    )
    sdir = dest / "summary"
    for nm, df in (("predictable", head_df), ("flip_counts", flip_df), ("extrapolation", ext_df)):
        io.write_csv(sdir / f"{nm}.csv", df)
    s = ["# How often does a downstream scaling law hold, and what breaks it?\n\n"]
    ref = head_df[head_df["reference"].astype(bool)]
    lines = []
    for name, sm in summaries.items():
        r = ref[ref["testbed"] == name]
        x = head_df[(head_df["testbed"] == name) & (head_df["breakdown"] == "x-axis")]
        f = flip_df[flip_df["testbed"] == name]
        scaling = f[~f["trajectory"].astype(bool)]  # trajectories are reported apart
        top = scaling.groupby("setting")["n_flipped"].sum().sort_values(ascending=False)
        null = f["null_split_rate"].iloc[0] if len(f) else np.nan
        lines.append(
            {
                "testbed": name,
                "runs": sm.n_runs,
                "tasks": sm.n_tasks,
                "x-axis": r["value"].iloc[0] if len(r) else "",
                "predictable": (
                    f"{r['frac'].iloc[0]:.2f} [{r['ci_low'].iloc[0]:.2f}, "
                    f"{r['ci_high'].iloc[0]:.2f}]"
                )
                if len(r)
                else "",
                "range over x-axes": f"{x['frac'].min():.2f}-{x['frac'].max():.2f}",
                "tasks flipped": int(scaling["n_flipped"].sum()),
                "most by": ", ".join(f"{k} ({int(v)})" for k, v in top.head(3).items() if v > 0),
                "null rate": "n/a" if pd.isna(null) else f"{null:.0%}",
                "seconds": round(sm.seconds, 1),
            }
        )
    s.append(md_table(pd.DataFrame(lines), ".2f"))
    s.append(
        "`predictable`: share of tasks classified predictable on the testbed's "
        "reference x-axis (90% bootstrap interval over models); `range over x-axes`: the "
        "same share on every other x-axis (validation sets, compute, parameters); "
        f"`tasks flipped`: tasks whose verdict flips or whose corpora reverse at q < "
        f"{SIGNIFICANT_Q} (Benjamini-Hochberg over every test of the testbed), summed over "
        "kinds of change (`most by`); `null rate`: the same detector on random halves of the "
        "same runs; `seconds`: import + analysis of that testbed. Reports: "
        + ", ".join(f"[{n}]({n}/report.md)" for n in summaries)
        + ".\n"
    )
    s.append(f"\n**What breaks a law** (share of tasks flipped at q < {SIGNIFICANT_Q}, interval ")
    s.append("over tasks, null rates beside; `trajectory`: one run against another):\n")
    s.append(md_table(_rates_view(flip_df)))
    s.append("\n## Fraction predictable by x-axis, evaluation setup, corpus and points\n\n")
    s.append(md_table(head_df.drop(columns=["reference"]), ".3f"))
    s.append("\n## Extrapolation errors beside the published ones\n\n")
    s.append(md_table(ext_df, ".4f") if not ext_df.empty else "_(none)_\n")
    s.append(predictions_summary(out, list(summaries), md_table, dest))
    s.append("\n## Most-flipped tasks\n\n")
    s += [f"![{p.stem}]({p.relative_to(dest)})\n" for p in figs if p is not None]
    return io.write_text(dest / "summary.md", "".join(s))


def _rates_view(f: pd.DataFrame) -> pd.DataFrame:
    def pct(v):
        return "n/a" if pd.isna(v) else f"{v:.0%}"

    return pd.DataFrame(
        [
            {
                "testbed": r.testbed,
                "change": r.setting + (" (trajectory)" if r.trajectory else ""),
                "tests": int(r.n_tests),
                "tasks flipped": f"{int(r.n_flipped)} of {int(r.n_tasks)}",
                "share": f"{pct(r.share)} [{pct(r.ci_low)}, {pct(r.ci_high)}]",
                "null (halves, max)": f"{pct(r.null_split_rate)}, {pct(r.null_split_max)}",
                "null (seeds)": pct(r.null_seed_rate),
            }
            for r in f.itertuples()
        ]
    )


def _most_flipped_figure(out: Path, name: str, d: Path) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from analysis.report import style

    style.use()
    f = io.read_csv(d / "tables" / "flips.csv")
    if f.empty:
        return None
    f = f[f["level"].isin(["verdict", "reversal"]) & (f["q_value"].astype(float) < SIGNIFICANT_Q)]
    if f.empty:
        return None
    label = f["task"] + np.where(f["setup"].astype(str) != "", "@" + f["setup"].astype(str), "")
    c = pd.crosstab(label, f["setting"])
    c = c.loc[c.sum(1).sort_values(ascending=False).index[:12]]
    fig, ax = plt.subplots(figsize=(7, 0.35 * len(c) + 1.5))
    c.iloc[::-1].plot.barh(stacked=True, ax=ax, width=0.8)
    ax.set_xlabel(f"verdict flips and reversals (q < {SIGNIFICANT_Q})")
    ax.set_ylabel("")
    ax.set_title(f"{name}: most-flipped tasks, by kind of change", fontsize=10)
    ax.legend(loc="best", title=None)
    fig.tight_layout()
    path = out / "summary" / f"most_flipped_{name}.png"
    io.atomic_write(path, lambda p: fig.savefig(p, dpi=style.DPI))
    plt.close(fig)
    return path
