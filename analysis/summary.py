"""Several testbeds in one run: each one's report under `<out>/<name>/`, then a summary.

`run_sources` analyses each source with its testbed settings (below) and writes
`<out>/summary.md`, `<out>/summary/*.csv` and one figure per testbed of its most-flipped
tasks. The summary's first screen answers: how often does a downstream law hold (fraction
of tasks predictable, per testbed, x-axis, evaluation setup and corpus, with intervals),
and what breaks it (flip counts by kind of change, with how many are significant).

Testbed settings replace the global defaults only where the configuration still holds the
default (an explicit `analysis.*` override that differs from it wins): the OLMo ladder's
x-axis is its C4 validation loss plus compute and parameters; Pythia has no validation
loss, so its x-axis is compute.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis import io
from analysis.config import AnalysisConfig

TESTBED_SETTINGS: dict[str, dict[str, Any]] = {
    "olmo_ladder": {
        "reference_val_set": "c4_en",
        "x_axes": ["compute", "params"],
        "extrapolate": {"val_set": "c4_en"},
        "plot": {"grid_val_sets": ["c4_en"], "flip_tasks": ["hellaswag_val", "mmlu_avg_test"]},
    },
    # every Pythia run sees the same tokens, so parameters would repeat the compute axis
    "pythia": {
        "reference_val_set": "compute",
        "x_axes": ["compute"],
        "plot": {"grid_val_sets": ["compute"], "flip_tasks": ["arc_easy", "lambada_openai"]},
    },
}
#: a flip counts as significant below this p-value (category: chance the two settings'
#: bootstrap classifications agree; gaps and slopes: their bootstrap / normal p)
SIGNIFICANT_P = 0.05


def settings_for(name: str, cfg: AnalysisConfig) -> AnalysisConfig:
    """`cfg` with testbed `name`'s settings where `cfg` still holds the global default."""
    return _merge(cfg, AnalysisConfig(), TESTBED_SETTINGS.get(name, {}))


def _merge(cfg, default, over: dict[str, Any]):
    changes = {}
    for key, value in over.items():
        cur, dflt = getattr(cfg, key), getattr(default, key)
        if dataclasses.is_dataclass(cur):
            changes[key] = _merge(cur, dflt, value)
        elif cur == dflt:
            changes[key] = value
    return dataclasses.replace(cfg, **changes)


def run_sources(
    names: list[str], cfg: AnalysisConfig, out: Path, path: str | None = None
) -> dict[str, Any]:
    """Analyse every testbed in `names` into `<out>/<name>/`; summary when several."""
    from analysis import testbeds
    from analysis.pipeline import analyze

    out = Path(out)
    beds = {name: testbeds.get(name) for name in names}  # unknown names fail before any work
    summaries = {}
    for name, bed in beds.items():
        t0 = time.time()
        table = bed.load(path if len(names) == 1 else None)
        sub = out / name if len(names) > 1 else out
        summaries[name] = analyze(table, sub, settings_for(name, cfg))
        summaries[name].seconds = time.time() - t0  # import + analysis
    if len(names) > 1:
        write_summary(out, summaries)
    return summaries


def _headline(name: str, d: Path) -> list[dict]:
    cfg = AnalysisConfig.from_dict(json.loads((d / "analysis_config.json").read_text()))
    pred = io.read_csv(d / "tables" / "predictable.csv")
    rows = []
    for r in pred.itertuples():
        rows.append(
            {
                "testbed": name,
                "breakdown": "x-axis",
                "value": r.val_set,
                "reference": r.val_set == cfg.reference_val_set,
                "frac": r.frac,
                "ci_low": r.ci_low,
                "ci_high": r.ci_high,
                "n_tasks": r.n_tasks,
            }
        )
    own = d / "tables" / "task_axis_predictable.csv"
    if own.exists():  # each task against its own bits-per-byte
        for r in io.read_csv(own).itertuples():
            rows.append(
                {
                    "testbed": name,
                    "breakdown": "x-axis",
                    "value": r.val_set,
                    "reference": False,
                    "frac": r.frac,
                    "ci_low": r.ci_low,
                    "ci_high": r.ci_high,
                    "n_tasks": r.n_tasks,
                }
            )
    trends = io.read_csv(d / "tables" / "trends.csv")
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
                    "frac": (g["category"] == "predictable").mean(),
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
                    "frac": (g["category"] == "predictable").mean(),
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
    f = io.read_csv(d / "tables" / "flips.csv")
    if f.empty:
        return pd.DataFrame(columns=["testbed", "setting", "kind", "flips", "significant"])
    f["sig"] = f["p_value"].astype(float) < SIGNIFICANT_P
    c = f.groupby(["setting", "kind"]).agg(flips=("task", "size"), significant=("sig", "sum"))
    return c.reset_index().assign(testbed=name)[
        ["testbed", "setting", "kind", "flips", "significant"]
    ]


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


def write_summary(out: Path, summaries: dict) -> Path:
    """summary.md, summary/*.csv and summary figures from the testbeds' written tables."""
    from analysis.report import _md

    head, flips, ext, figs = [], [], [], []
    for name in summaries:
        d = out / name
        head += _headline(name, d)
        flips.append(_flip_counts(name, d))
        ext.append(_extrapolation(name, d))
        figs.append(_most_flipped_figure(out, name, d))
    head_df, flip_df = pd.DataFrame(head), pd.concat(flips, ignore_index=True)
    ext_df = (
        pd.concat([e for e in ext if not e.empty], ignore_index=True)
        if any(not e.empty for e in ext)
        else pd.DataFrame()
    )
    sdir = out / "summary"
    for nm, df in (("predictable", head_df), ("flip_counts", flip_df), ("extrapolation", ext_df)):
        io.write_csv(sdir / f"{nm}.csv", df)
    s = ["# How often does a downstream scaling law hold, and what breaks it?\n\n"]
    ref = head_df[head_df["reference"].astype(bool)]
    lines = []
    for name, sm in summaries.items():
        r = ref[ref["testbed"] == name]
        x = head_df[(head_df["testbed"] == name) & (head_df["breakdown"] == "x-axis")]
        f = flip_df[flip_df["testbed"] == name]
        top = f.groupby("setting")["significant"].sum().sort_values(ascending=False)
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
                "significant flips": int(f["significant"].sum()),
                "most by": ", ".join(f"{k} ({int(v)})" for k, v in top.head(3).items() if v > 0),
                "seconds": round(sm.seconds, 1),
            }
        )
    s.append(_md(pd.DataFrame(lines), ".2f"))
    s.append(
        "`predictable`: share of tasks classified predictable on the testbed's "
        "reference x-axis (90% bootstrap interval over models); `range over x-axes`: the "
        "same share on every other x-axis (validation sets, compute, parameters); "
        f"`significant flips`: flips with p < {SIGNIFICANT_P} (kinds of change in "
        "`most by`); `seconds`: import + analysis of that testbed. Reports: "
        + ", ".join(f"[{n}]({n}/report.md)" for n in summaries)
        + ".\n"
    )
    s.append("\n## Fraction predictable by x-axis, evaluation setup, corpus and points\n\n")
    s.append(_md(head_df.drop(columns=["reference"]), ".3f"))
    s.append("\n## Flips by kind of change\n\n")
    s.append(_md(flip_df))
    s.append("\n## Extrapolation errors beside the published ones\n\n")
    s.append(_md(ext_df, ".4f") if not ext_df.empty else "_(none)_\n")
    from analysis.predict.stage import predictions_summary

    s.append(predictions_summary(out, list(summaries), _md))
    s.append("\n## Most-flipped tasks\n\n")
    s += [f"![{p.stem}]({p.relative_to(out)})\n" for p in figs if p is not None]
    return io.write_text(out / "summary.md", "".join(s))


def _most_flipped_figure(out: Path, name: str, d: Path) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    f = io.read_csv(d / "tables" / "flips.csv")
    if f.empty:
        return None
    f = f[f["p_value"].astype(float) < SIGNIFICANT_P]
    if f.empty:
        return None
    label = f["task"] + np.where(f["setup"].astype(str) != "", "@" + f["setup"].astype(str), "")
    c = pd.crosstab(label, f["setting"])
    c = c.loc[c.sum(1).sort_values(ascending=False).index[:12]]
    fig, ax = plt.subplots(figsize=(7, 0.35 * len(c) + 1.5))
    c.iloc[::-1].plot.barh(stacked=True, ax=ax, width=0.8)
    ax.set_xlabel(f"significant flips (p < {SIGNIFICANT_P})")
    ax.set_ylabel("")
    ax.set_title(f"{name}: most-flipped tasks, by kind of change", fontsize=10)
    ax.legend(fontsize=7, title=None)
    fig.tight_layout()
    path = out / "summary" / f"most_flipped_{name}.png"
    io.atomic_write(path, lambda p: fig.savefig(p, dpi=90))
    plt.close(fig)
    return path
