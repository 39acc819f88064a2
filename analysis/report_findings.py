"""The report's first screen and its honest cells: findings in prose, each sentence with its
figure; `n/a` with the reason wherever a number could not be computed (too few models, a
flagged fit); a sensitivity table with nothing to show collapsed to one line."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.classify import INSUFFICIENT
from analysis.config import AnalysisConfig
from analysis.within_groups import COLUMN as WITHIN
from analysis.within_groups import report_line

Md = Callable[..., str]


def _fig(out_dir: Path, stem: str) -> str:
    """' ([stem.png](figures/stem.png))' when that figure was drawn, else ''."""
    f = out_dir / "figures" / f"{stem}.png"
    return f" ([figure](figures/{f.name}))" if f.exists() else ""


def _safe(s: str) -> str:
    import re

    return re.sub(r"[^A-Za-z0-9_.-]+", "_", s)[:60]


def insufficient_reason(
    trends: pd.DataFrame, val_set: str, corpus: str, cfg: AnalysisConfig
) -> str:
    """'' when some task was classified; else why the fraction predictable is n/a."""
    t = trends[(trends["val_set"] == val_set) & (trends["corpus"] == corpus)]
    if t.empty or (t["category"] != INSUFFICIENT).any():
        return ""
    return (
        f"too few models: all {len(t)} tasks have fewer than "
        f"{cfg.classify.min_models} ({int(t['n_models'].max())} at most)"
    )


def predictable_table(pred: pd.DataFrame, trends: pd.DataFrame, cfg: AnalysisConfig, md: Md) -> str:
    rows = []
    for r in pred.itertuples():
        why = insufficient_reason(trends, r.val_set, r.corpus, cfg)
        na = f"n/a ({why})"
        rows.append(
            {
                "val_set": r.val_set,
                "corpus": r.corpus,
                "predictable": na if why else f"{r.n_predictable}/{r.n_tasks}",
                "frac": "n/a" if why else f"{r.frac:.3f}",
                "ci": "n/a" if why else f"{r.ci_low:.3f}–{r.ci_high:.3f}",
            }
        )
    return md(pd.DataFrame(rows))


def sensitivity_block(sens: pd.DataFrame, ref: str, md: Md) -> str:
    if sens.empty:
        return ""
    sr = sens[sens["val_set"] == ref]
    if sr.empty:
        return ""
    vals = sr["frac_predictable"].to_numpy(float)
    if np.allclose(vals, vals[0]):
        return (
            f"\nSensitivity: the fraction predictable on `{ref}` is {vals[0]:.2f} under "
            "every threshold multiplied by every factor (table omitted).\n"
        )
    piv = sr.pivot_table(index="threshold", columns="factor", values="frac_predictable")
    piv.columns = [f"x{c:g}" for c in piv.columns]
    return (
        f"\nSensitivity: fraction predictable on `{ref}` as each threshold is multiplied by "
        "a factor (others at their defaults):\n\n" + md(piv.reset_index(), ".2f")
    )


def with_na(df: pd.DataFrame, cols: list[str], flag: str = "flag") -> pd.DataFrame:
    """`cols` of flagged rows replaced by 'n/a (<flag>)': a degenerate fit has no result."""
    if flag not in df or df.empty:
        return df
    out = df.copy()
    bad = out[flag].fillna("").astype(str) != ""
    for c in cols:
        out[c] = out[c].astype(object)
        out.loc[bad, c] = "n/a (" + out.loc[bad, flag].astype(str) + ")"
    return out


def _extrapolation_sentence(ext: pd.DataFrame, out_dir: Path) -> str:
    if ext.empty:
        return "No extrapolation backtest could be fitted (too few sizes; see warnings)."
    e = ext[ext["quantity"].str.startswith("loss:") | (ext["quantity"] == "top1_error_avg")]
    flag = e["flag"].fillna("").astype(str) if "flag" in e else pd.Series("", index=e.index)
    ok, bad = e[flag == ""], e[flag != ""]
    parts = []
    loss = ok[ok["quantity"].str.startswith("loss:")]
    if not loss.empty:
        parts.append(
            f"the largest models' loss is predicted within {loss['rel_error'].max():.1%} "
            f"({len(loss)} prediction(s))"
        )
    err = ok[ok["quantity"] == "top1_error_avg"]
    if not err.empty:
        parts.append(f"their average task error within {err['rel_error'].max():.1%}")
    s = "Extrapolation backtest: " + ("; ".join(parts) if parts else "no sound prediction")
    if not bad.empty:
        reasons = sorted(set(bad["flag"].astype(str)))
        s += (
            f"; {len(bad)} prediction(s) rest on a degenerate fit ({'; '.join(reasons)}) and "
            "are reported as n/a, not as results"
        )
    return s + "." + _fig(out_dir, "loss_vs_compute")


def findings_section(
    out_dir: Path,
    cfg: AnalysisConfig,
    ref: str,
    head: str,
    pred: pd.DataFrame,
    trends: pd.DataFrame,
    flips: pd.DataFrame,
    ext: pd.DataFrame,
) -> str:
    """## Findings: a few sentences, each pointing to the figure that shows it."""
    s = ["\n## Findings\n\n"]
    grid = _fig(out_dir, f"task_grid_{_safe(ref)}")
    p = pred[pred["val_set"] == ref] if not pred.empty else pred
    if p.empty:
        s.append(f"- No task could be classified on `{ref}`.\n")
    else:
        r = p.iloc[0]
        why = insufficient_reason(trends, ref, r["corpus"], cfg)
        if why:
            s.append(
                f"- Against `{ref}` no task could be classified — {why}; the fraction "
                f"predictable is n/a, not 0.{grid}\n"
            )
        else:
            t = trends[(trends["val_set"] == ref) & (trends["corpus"] == head)]
            counts = t["category"].value_counts()
            rest = ", ".join(f"{n} {c}" for c, n in counts.items() if c != "predictable")
            s.append(
                f"- Against `{ref}`, {int(r['n_predictable'])} of {int(r['n_tasks'])} tasks "
                f"scale predictably ({r['frac']:.0%}, interval {r['ci_low']:.0%}–"
                f"{r['ci_high']:.0%}); {rest or 'no other category'}.{grid}\n"
            )
    for v in sorted(trends["val_set"].dropna().unique()) if WITHIN in trends else []:
        line = report_line(trends, v)
        if line:
            s.append(f"- {line.rstrip()}{_fig(out_dir, f'task_grid_{_safe(v)}')}\n")
    if flips.empty:
        s.append("- No setting change flips a trend (or too few settings to compare).\n")
    else:
        kinds = flips["kind"].value_counts()
        top = flips.sort_values("p_value").iloc[0]
        setup = top.get("setup")
        name = f"{top['task']}@{setup}" if pd.notna(setup) and str(setup) else str(top["task"])
        stem = f"_{_safe(name)}_{_safe(str(top['from']))}_vs_{_safe(str(top['to']))}.png"
        figs = sorted((out_dir / "figures").glob("flip_*.png"))
        own = next((f for f in figs if f.name.endswith(stem)), None)
        link = (
            f" ([figure](figures/{own.name}))"
            if own
            else f" (drawn examples: [figure](figures/{figs[0].name}))"
            if figs
            else ""
        )
        s.append(
            f"- {len(flips)} flip(s) when one setting changes ("
            + ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in kinds.items())
            + f"); the strongest: {top['task']} when {top['setting'].replace('_', ' ')} "
            f"goes {top['from']} → {top['to']}.{link}\n"
        )
    s.append(f"- {_extrapolation_sentence(ext, out_dir)}\n")
    return "".join(s)
