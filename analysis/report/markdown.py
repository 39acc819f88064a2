"""report.md, written from the tables (so it always agrees with them)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.output import files as io
from analysis.predict.stage import predictions_section
from analysis.report.calibration import calibration_section, corpus_section
from analysis.report.extras import axis_line, choices_line, extra_sections
from analysis.report.findings import (
    findings_section,
    lead_sentences,
    predictable_table,
    report_lines,
    sensitivity_block,
    with_na,
)
from analysis.report.flip_tables import level_counts, rates_block
from analysis.results import AnalysisResults
from analysis.trends import classify


def md_table(df: pd.DataFrame, floatfmt: str = ".3f") -> str:
    if df.empty:
        return "_(none)_\n"
    cols = list(df.columns)

    def fmt(v):
        if isinstance(v, str):
            try:  # mixed columns (flips.csv "effect") come back as strings
                v = float(v)
            except ValueError:
                return v.replace("|", "\\|")
        if isinstance(v, float | np.floating):
            return "n/a" if not np.isfinite(v) else format(v, floatfmt)
        return str(v)

    lines = ["| " + " | ".join(map(str, cols)) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n" + "\n".join(lines) + "\n\n"


def write_report(out_dir: Path, res: AnalysisResults, seconds: float) -> Path:
    """report.md of `res` (rendered from the tables in memory, the ones just written) into
    `out_dir`, whose figures/ it links: one function per section, in report order."""
    s = _overview(out_dir, res, seconds)
    s += _predictable_section(res)
    s += _rules_section(res)
    s += _flips_section(res)
    s.append(extra_sections(res, md_table))
    s += _laws_section(res)
    s += _extrapolation_section(res)
    s += _predictions_section(res)
    s += _closing(out_dir, res)
    return io.write_text(out_dir / "report.md", "".join(s))


def _overview(out_dir: Path, res: AnalysisResults, seconds: float) -> list[str]:
    """Title, lead sentences, what was analysed, the x-axis line and the findings."""
    cfg = res.cfg
    runs = res.runs_table()
    trends, flips = res.table("trends"), res.table("flips")
    ext = res.table("extrapolation")
    pred = res.table("predictable")
    fin = res.final_runs
    corpora = sorted(fin["corpus"].dropna().unique())
    head, ref = res.headline_corpus, res.reference_val_set
    vsets = sorted(fin.loc[fin["kind"] == "val_loss", "name"].unique())
    s = ["# Downstream scaling-law reliability report\n\n"]
    s.append(lead_sentences(out_dir, cfg, ref, head, trends, flips, runs) + "\n")
    s.append(
        f"{fin['run_id'].nunique()} runs ({', '.join(sorted(runs['source'].dropna().unique()))}), "
        f"corpora: {', '.join(corpora)}; sizes: {fin['size'].nunique()}; "
        f"validation sets: {', '.join(vsets)}; "
        f"task variants: {fin.loc[fin['kind'] == 'task', 'name'].nunique()}. "
        f"{'Final checkpoints' if cfg.points == 'final' else 'Every checkpoint'}; "
        f"{cfg.bootstrap.n_resamples} bootstrap resamples; "
        f"intervals are central {cfg.bootstrap.ci:.0%}. Runtime {seconds:.1f} s.\n"
    )
    s.append(axis_line(cfg))
    s.append(choices_line(res))
    s.append(rates_block(res, md_table))
    s.append(findings_section(out_dir, cfg, ref, head, pred, trends, flips, ext))
    return s


def _predictable_section(res: AnalysisResults) -> list[str]:
    """Fraction predictable per x-axis, within-mix check, category counts, agreement with labels."""
    cfg = res.cfg
    trends = res.table("trends")
    pred = res.table("predictable")
    head, ref = res.headline_corpus, res.reference_val_set
    s: list[str] = []
    s.append("\n## Fraction of tasks that scale predictably, per validation set\n\n")
    s.append(
        f"Corpus: `{head}` (pooled when several). Interval: bootstrap over models; "
        "n/a where no task has enough models to classify.\n"
    )
    if not pred.empty:
        s.append(predictable_table(pred, trends, cfg, md_table))
    within = report_lines(trends)
    if within:
        s.append("\n" + within)
    if not trends.empty:
        h = trends[trends["corpus"] == head]
        counts = pd.crosstab(h["val_set"], h["category"]).reindex(
            columns=[*classify.LABELS, classify.NOT_A_SCALE], fill_value=0
        )
        counts = counts.loc[:, (counts > 0).any()]
        s.append("\nCategory counts:\n\n" + md_table(counts.reset_index()))

    s.append(calibration_section(res, md_table))
    s.append(corpus_section(res, md_table, ref))
    return s


def _rules_section(res: AnalysisResults) -> list[str]:
    """The classification rules, their thresholds and the sensitivity to them."""
    cfg = res.cfg
    sens = res.table("sensitivity")
    ref = res.reference_val_set
    s: list[str] = []
    s.append("\n## Classification rules\n\n")
    s.append("```\n" + classify.__doc__.strip() + "\n```\n")
    s.append("Thresholds (`classify` in conf/analysis/default.yaml):\n\n")
    s.append(
        md_table(
            pd.DataFrame(
                [
                    {"threshold": f.name, "value": getattr(cfg.classify, f.name)}
                    for f in dataclasses.fields(cfg.classify)
                ]
            ),
            ".3g",
        )
    )
    s.append(sensitivity_block(sens, ref, md_table))
    return s


def _flips_section(res: AnalysisResults) -> list[str]:
    """Flip counts, the configured tasks' x-axis flips, the strongest ranking reversals."""
    cfg = res.cfg
    flips = res.table("flips")
    ref = res.reference_val_set
    s: list[str] = []
    s.append("\n## Flips (one setting changed, the rest held fixed)\n\n")
    if flips.empty:
        s.append("No flips detected (or too few settings to compare).\n")
    else:
        s.append(
            "Levels (flips.csv `level`): `verdict` (predictable <-> not, or the direction "
            "flips), `reversal` (two corpora change order at matched loss), "
            "`reclassification` (any other category change: never counted), `trajectory` "
            "(one run against another: not a scaling trend). q: Benjamini-Hochberg.\n"
        )
        s.append(md_table(level_counts(flips, cfg.flips.alpha)))
        want = flips[
            flips["task"].isin(cfg.plot.flip_tasks)
            & (
                ((flips["from"] == ref) & flips["to"].str.contains("code"))
                | ((flips["to"] == ref) & flips["from"].str.contains("code"))
            )
        ]
        if not want.empty:
            s.append(
                f"\nFlips of {', '.join(cfg.plot.flip_tasks)} between `{ref}` and the code "
                "validation set (effect = accuracy gap A - B at matched loss under `to`, "
                "effect_from under `from`):\n\n"
            )
            s.append(
                md_table(
                    want[
                        [
                            "task",
                            "kind",
                            "context",
                            "from",
                            "to",
                            "effect_from",
                            "effect",
                            "ci_low",
                            "ci_high",
                            "p_value",
                            "q_value",
                        ]
                    ]
                )
            )
        rev = flips[flips["level"] == "reversal"]
        rev = rev[rev["q_value"] < cfg.flips.alpha].sort_values("effect_size", ascending=False)
        if not rev.empty:
            s.append(f"\nLargest corpus reversals at q < {cfg.flips.alpha:g} (one per task):\n\n")
            s.append(
                md_table(
                    rev.head(15)[
                        [
                            "task",
                            "kind",
                            "context",
                            "from",
                            "to",
                            "effect_from",
                            "effect",
                            "q_value",
                        ]
                    ]
                )
            )

    return s


def _laws_section(res: AnalysisResults) -> list[str]:
    """The downstream laws compared on the reference x-axis and headline corpus."""
    fits = res.table("fits")
    head, ref = res.headline_corpus, res.reference_val_set
    s: list[str] = []
    s.append("\n## Downstream laws compared\n\n")
    d = (
        fits[(fits["kind"] == "downstream") & (fits["val_set"] == ref) & (fits["corpus"] == head)]
        if not fits.empty
        else fits
    )
    if d.empty:
        s.append("No downstream law could be fitted.\n")
    else:
        d = d.assign(flagged=d["flag"].fillna("").astype(str) != "") if "flag" in d else d
        agg = d.groupby("law").agg(
            fitted=("fitted", "sum"),
            tasks=("fitted", "size"),
            flagged=("flagged", "sum"),
            median_r2=("r2", "median"),
            median_rmse=("rmse", "median"),
            median_llo_abs_error=("llo_abs_error", "median"),
        )
        s.append(
            f"On `{ref}`, corpus `{head}`; LLO = refit without the largest size and "
            "predict it (mean |error| in accuracy); flagged = fits with a parameter at "
            "its bound or R² ≤ 0 (fits.csv `flag`).\n\n" + md_table(agg.reset_index())
        )
        nf = d[~d["fitted"].astype(bool)]
        if not nf.empty:
            s.append(
                f"\nNot fitted (too few points or degenerate): "
                f"{', '.join(sorted(set(nf['law'] + ':' + nf['name'])))}\n"
            )

    return s


def _extrapolation_section(res: AnalysisResults) -> list[str]:
    """Extrapolation backtests, per-task errors and the fitted loss and error laws."""
    fits, ext = res.table("fits"), res.table("extrapolation")
    s: list[str] = []
    s.append("\n## Extrapolation backtests\n\n")
    if ext.empty:
        s.append("No extrapolation could be fitted (see warnings).\n")
    else:
        e = ext[~ext["quantity"].str.contains(r"top1_error:", regex=True)]
        s.append(
            "rel_error = |pred - actual| / actual; `published` = relative errors reported "
            "by Gadre et al. (2024) for the same targets (their headline fits are on "
            "RedPajama). `.from_actual_loss` rows feed the actual instead of the predicted "
            "loss into the error law.\n\n"
        )
        s.append(
            "Rows resting on a degenerate fit (a parameter at its bound, R² ≤ 0) show "
            "n/a with the reason instead of a prediction.\n\n"
        )
        s.append(
            md_table(
                with_na(e, ["predicted", "rel_error"])[
                    [
                        "backtest",
                        "target",
                        "quantity",
                        "law",
                        "predicted",
                        "ci_low",
                        "ci_high",
                        "actual",
                        "rel_error",
                        "published_rel_error",
                    ]
                ],
                ".4f",
            )
        )
        per = ext[
            ext["quantity"].str.startswith("top1_error:") & ~ext["quantity"].str.contains("actual")
        ]
        if "flag" in per:  # a degenerate per-task fit is no prediction: counted, not averaged
            bad = per["flag"].fillna("").astype(str) != ""
            per = per.assign(rel_error=per["rel_error"].where(~bad), flagged=bad)
        if not per.empty:
            agg = per.groupby(["backtest", "target"]).agg(
                median=("rel_error", "median"),
                max=("rel_error", "max"),
                flagged=("flagged", "sum") if "flagged" in per else ("rel_error", "size"),
            )
            s.append(
                "\nPer-task top-1 error (chained), relative error over the tasks whose "
                "error law is sound (flagged = tasks left out: a parameter at its bound "
                "or R² ≤ 0):\n\n"
            )
            s.append(md_table(agg.reset_index(), ".3f"))
    lf = fits[fits["kind"].isin(["loss_law", "error_law"])] if not fits.empty else fits
    if not lf.empty:
        s.append(
            "\nFitted laws (flag: a parameter at its bound or R² ≤ 0 — not a result):\n\n"
            + md_table(
                lf.reindex(
                    columns=[
                        "backtest",
                        "kind",
                        "law",
                        "corpus",
                        "n_points",
                        "r2",
                        "params",
                        "flag",
                    ]
                ).fillna({"flag": ""}),
                ".4f",
            )
        )

    return s


def _predictions_section(res: AnalysisResults) -> list[str]:
    """The prediction stage's section (analysis.predict), when it ran."""
    if not res.predictions:
        return []
    return [predictions_section(res.predictions, md_table)]


def _closing(out_dir: Path, res: AnalysisResults) -> list[str]:
    """The figures drawn and the warnings."""
    warnings = res.warnings
    s: list[str] = []
    s.append("\n## Figures\n\n")
    for f in sorted((out_dir / "figures").glob("*.png")):
        s.append(f"- [{f.name}](figures/{f.name})\n")
    s.append(f"\n## Warnings and quantities not fitted ({len(warnings)})\n\n")
    for w in warnings[:60]:
        s.append(f"- {w}\n")
    if len(warnings) > 60:
        s.append(f"- ... {len(warnings) - 60} more in tables/warnings.txt\n")
    return s
