"""report.md, written from the tables (so it always agrees with them)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd

from analysis import classify, io
from analysis.config import AnalysisConfig
from analysis.matrix import POOLED
from analysis.report_calibration import calibration_section, corpus_section
from analysis.report_extras import axis_line, extra_sections
from analysis.report_findings import (
    findings_section,
    lead_sentences,
    predictable_table,
    sensitivity_block,
    with_na,
)
from analysis.within_groups import report_lines


def _md(df: pd.DataFrame, floatfmt: str = ".3f") -> str:
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


def write_report(out_dir: Path, cfg: AnalysisConfig, warnings: list[str], seconds: float) -> Path:
    t = out_dir / "tables"
    runs = pd.read_parquet(t / "runs.parquet")
    trends, flips = io.read_csv(t / "trends.csv"), io.read_csv(t / "flips.csv")
    fits, ext = io.read_csv(t / "fits.csv"), io.read_csv(t / "extrapolation.csv")
    pred, sens = io.read_csv(t / "predictable.csv"), io.read_csv(t / "sensitivity.csv")
    fin = runs[runs["final"].fillna(False).astype(bool)]
    corpora = sorted(fin["corpus"].dropna().unique())
    head = POOLED if len(corpora) > 1 else (corpora[0] if corpora else "")
    vsets = sorted(fin.loc[fin["kind"] == "val_loss", "name"].unique())
    ref = cfg.reference_val_set if cfg.reference_val_set in vsets else (vsets[0] if vsets else "")
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
    s.append(findings_section(out_dir, cfg, ref, head, pred, trends, flips, ext))

    s.append("\n## Fraction of tasks that scale predictably, per validation set\n\n")
    s.append(
        f"Corpus: `{head}` (pooled when several). Interval: bootstrap over models; "
        "n/a where no task has enough models to classify.\n"
    )
    if not pred.empty:
        s.append(predictable_table(pred, trends, cfg, _md))
    within = report_lines(trends)
    if within:
        s.append("\n" + within)
    if not trends.empty:
        h = trends[trends["corpus"] == head]
        counts = pd.crosstab(h["val_set"], h["category"]).reindex(
            columns=list(classify.LABELS), fill_value=0
        )
        counts = counts.loc[:, (counts > 0).any()]
        s.append("\nCategory counts:\n\n" + _md(counts.reset_index()))

    s.append(calibration_section(t, _md))
    s.append(corpus_section(t, _md, ref))
    s.append("\n## Classification rules\n\n")
    s.append("```\n" + classify.__doc__.strip() + "\n```\n")
    s.append("Thresholds (`classify` in conf/analysis/default.yaml):\n\n")
    s.append(
        _md(
            pd.DataFrame(
                [
                    {"threshold": f.name, "value": getattr(cfg.classify, f.name)}
                    for f in dataclasses.fields(cfg.classify)
                ]
            ),
            ".3g",
        )
    )
    s.append(sensitivity_block(sens, ref, _md))

    s.append("\n## Flips (one setting changed, the rest held fixed)\n\n")
    if flips.empty:
        s.append("No flips detected (or too few settings to compare).\n")
    else:
        c = flips.groupby(["setting", "kind"]).size().rename("count").reset_index()
        s.append(_md(c))
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
                _md(
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
                        ]
                    ]
                )
            )
        rev = flips[flips["kind"] == "ranking_reversal"].sort_values("p_value").head(15)
        if not rev.empty:
            s.append("\nStrongest ranking reversals:\n\n")
            s.append(
                _md(rev[["task", "context", "from", "to", "effect_from", "effect", "p_value"]])
            )

    s.append(extra_sections(out_dir, cfg, _md))
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
            "its bound or R² ≤ 0 (fits.csv `flag`).\n\n" + _md(agg.reset_index())
        )
        nf = d[~d["fitted"].astype(bool)]
        if not nf.empty:
            s.append(
                f"\nNot fitted (too few points or degenerate): "
                f"{', '.join(sorted(set(nf['law'] + ':' + nf['name'])))}\n"
            )

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
            _md(
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
            s.append(_md(agg.reset_index(), ".3f"))
    lf = fits[fits["kind"].isin(["loss_law", "error_law"])] if not fits.empty else fits
    if not lf.empty:
        s.append(
            "\nFitted laws (flag: a parameter at its bound or R² ≤ 0 — not a result):\n\n"
            + _md(
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

    from analysis.predict.stage import predictions_section

    s.append(predictions_section(t, _md))
    s.append("\n## Figures\n\n")
    for f in sorted((out_dir / "figures").glob("*.png")):
        s.append(f"- [{f.name}](figures/{f.name})\n")
    s.append(f"\n## Warnings and quantities not fitted ({len(warnings)})\n\n")
    for w in warnings[:60]:
        s.append(f"- {w}\n")
    if len(warnings) > 60:
        s.append(f"- ... {len(warnings) - 60} more in tables/warnings.txt\n")
    return io.write_text(out_dir / "report.md", "".join(s))
