"""The report's first screen and its honest cells: findings in prose, each sentence with its
figure; `n/a` with the reason wherever a number could not be computed (too few models, a
flagged fit); a sensitivity table with nothing to show collapsed to one line."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.config import AnalysisConfig
from analysis.flips.detect import headline_flips
from analysis.groups.build import POOLED
from analysis.ingest.axes import axis_phrase
from analysis.report.figures import figure_name
from analysis.trends.classify import INSUFFICIENT, NOT_A_SCALE
from analysis.trends.within_groups import COLUMN
from analysis.trends.within_groups import COLUMN as WITHIN

Md = Callable[..., str]


def tasks(n: int) -> str:
    """'1 task', '5 tasks'."""
    return f"{n} task" if n == 1 else f"{n} tasks"


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval (95% for z = 1.96) for k successes in n trials: unlike the
    normal approximation it is never a single point, so 0 of 1 reads as 0%–79%, not 0%–0%."""
    if n <= 0:
        return float("nan"), float("nan")
    p = k / n
    den = 1 + z * z / n
    mid = (p + z * z / (2 * n)) / den
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return max(0.0, mid - half), min(1.0, mid + half)


def _share_sentence(k: int, n: int, frac: float, lo: float, hi: float, ci: float) -> str:
    """'3 of 5 tasks scale predictably (60%; over models ...; over tasks ...)': the bootstrap
    interval says how sure each task's verdict is, the Wilson one how far the share could
    move with other tasks, which a handful of tasks cannot pin down."""
    wlo, whi = wilson(k, n)
    verb = "scales" if n == 1 else "scale"
    return (
        f"{k} of {tasks(n)} {verb} predictably ({frac:.0%}; {ci:.0%} bootstrap interval over "
        f"models {lo:.0%}–{hi:.0%}; 95% Wilson interval over {tasks(n)} {wlo:.0%}–{whi:.0%})"
    )


def _fig(out_dir: Path, stem: str) -> str:
    """' ([stem.png](figures/stem.png))' when that figure was drawn, else ''."""
    f = out_dir / "figures" / f"{stem}.png"
    return f" ([figure](figures/{f.name}))" if f.exists() else ""


def insufficient_reason(
    trends: pd.DataFrame, val_set: str, corpus: str, cfg: AnalysisConfig
) -> str:
    """'' when some task was classified; else why the fraction predictable is n/a."""
    t = trends[(trends["val_set"] == val_set) & (trends["corpus"] == corpus)]
    if t.empty or (~t["category"].isin([INSUFFICIENT, NOT_A_SCALE])).any():
        return ""
    if (t["category"] == NOT_A_SCALE).any():
        return f"`{val_set}` does not fall with model size within every corpus: not a scale"
    sizes = int(t["n_sizes"].max()) if "n_sizes" in t else cfg.flips.min_sizes
    if sizes < cfg.flips.min_sizes:
        return f"too few sizes: {sizes} distinct, a trend needs {cfg.flips.min_sizes}"
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
    return s + "." + _fig(out_dir, figure_name("loss_vs_compute"))


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
    grid = _fig(out_dir, figure_name("task_grid", val_set=ref))
    p = pred[pred["val_set"] == ref] if not pred.empty else pred
    if p.empty:
        s.append(f"- No task could be classified on `{ref}`.\n")
    else:
        r = p.iloc[0]
        why = insufficient_reason(trends, ref, r["corpus"], cfg)
        if why:
            s.append(
                f"- Against {axis_phrase(ref)} no task could be classified — {why}; the fraction "
                f"predictable is n/a, not 0.{grid}\n"
            )
        else:
            t = trends[(trends["val_set"] == ref) & (trends["corpus"] == head)]
            counts = t["category"].value_counts()
            rest = ", ".join(f"{n} {c}" for c, n in counts.items() if c != "predictable")
            share = _share_sentence(
                int(r["n_predictable"]),
                int(r["n_tasks"]),
                r["frac"],
                r["ci_low"],
                r["ci_high"],
                cfg.bootstrap.ci,
            )
            s.append(
                f"- Against {axis_phrase(ref)}, {share}; {rest or 'no other category'}.{grid}\n"
            )
    for v in sorted(trends["val_set"].dropna().unique()) if WITHIN in trends else []:
        line = report_line(trends, v)
        if line:
            s.append(f"- {line.rstrip()}{_fig(out_dir, figure_name('task_grid', val_set=v))}\n")
    s.append(f"- {flip_count_sentence(flips, cfg.flips.alpha)}\n")
    s.append(f"- {_extrapolation_sentence(ext, out_dir)}\n")
    return "".join(s)


def flip_count_sentence(flips: pd.DataFrame, alpha: float) -> str:
    """Verdict flips and reversals at q < alpha, by kind of change; the rest is named apart."""
    if flips.empty or "level" not in flips:
        return "No setting change flips a trend (or too few settings and sizes to compare)."
    sig = flips[flips["q_value"].astype(float) < alpha]
    head = sig[sig["level"].isin(["verdict", "reversal"])]
    # a fact once: a task's verdict, or a task and pair of corpora, however many rows show it
    facts = head.assign(
        _fact=head["task"].astype(str)
        + "|"
        + head["setup"].astype(str)
        + "|"
        + head["context"].astype(str).where(head["level"] == "reversal", "")
    )
    by = facts.groupby(["setting", "level"])["_fact"].nunique()
    parts = [f"{n} {lvl}(s) on changing the {st.replace('_', ' ')}" for (st, lvl), n in by.items()]
    traj = sig[sig["level"] == "trajectory"]
    rest = (flips["level"] == "reclassification").sum()
    out = (
        f"At q < {alpha:g}: " + ", ".join(parts) + "."
        if parts
        else f"No verdict flip or reversal at q < {alpha:g}."
    )
    out += f" {rest} reclassification(s) (category churn that leaves the verdict) are listed only"
    if not traj.empty:
        out += (
            f"; {len(traj)} difference(s) between one run's checkpoints and another run's are "
            "training trajectories, not scaling trends (flips.csv level `trajectory`)"
        )
    return out + "."


def _names(names: list[str], most: int = 5) -> str:
    """'a', 'a and b', 'a, b and c', or the first `most` and 'N more'."""
    shown = [f"`{n}`" for n in names[:most]]
    if len(names) > most:
        shown.append(f"{len(names) - most} more")
    return shown[0] if len(shown) == 1 else ", ".join(shown[:-1]) + " and " + shown[-1]


def _acc_span(runs: pd.DataFrame | None, name: str, metric: str) -> str:
    """'; acc 0.29 at the smallest size → 0.53 at the largest (chance 0.25)' from the
    final checkpoints (mean over runs of a size), or '' when the table cannot say."""
    if runs is None or runs.empty:
        return ""
    r = runs[(runs["kind"] == "task") & (runs["name"] == name) & (runs["metric"] == metric)]
    r = r[r["final"].fillna(False).astype(bool)].dropna(subset=["n_params", "value"])
    if r["n_params"].nunique() < 2:
        return ""
    by = r.groupby("n_params")["value"].mean()
    chance = r["chance"].dropna()
    at = f", chance {chance.iloc[0]:.2f}" if not chance.empty else ""
    lo, hi = by.iloc[0], by.iloc[-1]
    return f"; {metric} {lo:.2f} at the smallest size → {hi:.2f} at the largest{at}"


def lead_sentences(
    out_dir: Path,
    cfg: AnalysisConfig,
    ref: str,
    head: str,
    trends: pd.DataFrame,
    flips: pd.DataFrame,
    runs: pd.DataFrame | None = None,
) -> str:
    """The report's opening: which tasks follow a law, which do not and in which category,
    and what flipped under which change; one sentence each, each with its figure."""
    t = trends[(trends["val_set"] == ref) & (trends["corpus"] == head)]
    why = insufficient_reason(trends, ref, head, cfg)
    t = t[~t["category"].isin([INSUFFICIENT, NOT_A_SCALE])]
    if t.empty:
        reason = why or "no task has enough models"
        return f"No task is classified against {axis_phrase(ref)}: {reason}.\n"
    grid = _fig(out_dir, figure_name("task_grid", val_set=ref))
    pred = t[t["category"] == "predictable"].sort_values("p_predictable", ascending=False)
    against = f"Against {axis_phrase(ref)}"
    if pred.empty:
        law = (
            f"{against} the one classified task does not follow a scaling law"
            if len(t) == 1
            else f"{against} none of the {len(t)} classified tasks follows a scaling law"
        )
    else:
        top = pred.iloc[0]
        law = (
            f"{against} {len(pred)} of {tasks(len(t))} "
            f"{'follows' if len(pred) == 1 else 'follow'} a scaling law: "
            f"{_names(list(pred['name']))} (bootstrap probability of `predictable` "
            + (
                f"{top['p_predictable']:.2f}{_acc_span(runs, top['name'], cfg.accuracy_metric)}"
                if len(pred) == 1
                else f"{pred['p_predictable'].min():.2f}–{pred['p_predictable'].max():.2f}"
            )
            + ")"
        )
    rest = t[t["category"] != "predictable"]
    if rest.empty:
        other = "Every task does"
    else:
        parts = []
        for cat, g in sorted(rest.groupby("category"), key=lambda kv: (-len(kv[1]), kv[0])):
            verb = "is" if len(g) == 1 else "are"
            parts.append(f"{_names(sorted(g['name']))} {verb} {cat}")
        # with no predictable task the categories say why; else they are "the other" tasks
        lead = (
            ""
            if pred.empty
            else (
                "The other one does not: " if len(rest) == 1 else f"The other {len(rest)} do not: "
            )
        )
        other = lead + "; ".join(parts)
    out = [f"{law}{grid}.", f"{other}{grid}."]
    head_flips = headline_flips(flips, ref, cfg.flips.alpha)
    if head_flips.empty:
        out.append(
            f"No change of a single setting flips a task's verdict or reverses two corpora "
            f"at q < {cfg.flips.alpha:g} (Benjamini-Hochberg over every test)."
        )
    else:
        parts = []
        for r in head_flips.rename(columns={"from": "frm"}).itertuples():
            name = f"{r.task}@{r.setup}" if isinstance(r.setup, str) and r.setup else r.task
            fig = _flip_fig(out_dir, name, str(r.frm), str(r.to))
            q = f"q = {r.q_value:.3f}" if r.q_value >= 0.001 else "q < 0.001"
            if r.level == "reversal":
                parts.append(
                    f"`{name}`: the gap {r.context} at matched loss goes from "
                    f"{float(r.effect_from):+.3f} under `{r.frm}` to {float(r.effect):+.3f} "
                    f"under `{r.to}` (interval {float(r.ci_low):+.3f} to "
                    f"{float(r.ci_high):+.3f}; {q}{fig})"
                )
            else:
                frm, to = str(r.effect).split("->")  # a category flip: "<from>-><to>"
                parts.append(
                    f"`{name}` goes from {frm} to {to} when the "
                    f"{str(r.setting).replace('_', ' ')} changes from `{r.frm}` to `{r.to}` "
                    f"({q}{fig})"
                )
        out.append("Changing one setting breaks a law: " + "; ".join(parts) + ".")
    return " ".join(out) + "\n"


def _flip_figure(out_dir: Path, name: str, frm: str, to: str) -> Path | None:
    """The drawn figure of this flip (figure_name: flip_<i>_<name>_<from>_vs_<to>)."""
    stem = figure_name("flip", task=name, frm=frm, to=to) + ".png"
    figs = sorted((out_dir / "figures").glob("flip_*.png"))
    return next((f for f in figs if f.name.endswith(stem)), None)


def _flip_fig(out_dir: Path, name: str, frm: str, to: str) -> str:
    own = _flip_figure(out_dir, name, frm, to)
    return f"; [figure](figures/{own.name})" if own else ""


def _p(p: float) -> str:
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def report_line(trends: pd.DataFrame, val_set: str) -> str:
    """One sentence for the report: pooled-predictable tasks that trend between mixes only."""
    if COLUMN not in trends or trends.empty:
        return ""
    t = trends[
        (trends["val_set"] == val_set)
        & (trends["corpus"] == POOLED)
        & (trends[COLUMN].fillna("") != "")
    ]
    if t.empty:
        return ""
    between = sorted(t.loc[t[COLUMN] == "between mixes only", "name"])
    if not between:
        return (
            f"Within-mix check on `{val_set}`: every pooled-predictable task also trends "
            f"inside at least one data mix ({len(t)} checked).\n"
        )
    return (
        f"Within-mix check on `{val_set}`: {len(between)} of {len(t)} pooled-predictable "
        f"task(s) trend between data mixes only — inside each mix accuracy does not move "
        f"with loss beyond binomial noise, so the pooled law fits a difference between "
        f"clusters, not a scaling trend: {', '.join(between)}.\n"
    )


def report_lines(trends: pd.DataFrame) -> str:
    """`report_line` for every validation set that has checked rows."""
    if COLUMN not in trends or trends.empty:
        return ""
    return "".join(report_line(trends, v) for v in sorted(trends["val_set"].dropna().unique()))
