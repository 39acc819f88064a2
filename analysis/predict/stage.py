"""The prediction stage of `analyze`: backtests, tables, figures and the report's
"Predictions" section (and the summary's cross-testbed table).

Tables written under `<out>/tables/`: predictions.csv (every backtest prediction),
prediction_methods.csv (per split and method: median / mean absolute error, coverage),
prediction_categories.csv (the default method by trend category), prediction_olmo.csv
(OLMo 7B / 13B beside the published chain, when the ladder is analysed),
prediction_cutoff.csv (ObsScaling's compute-cutoff protocol per task, analysis.predict.cutoff,
whose rows are also in predictions.csv as testbed `obsscaling:cutoff`), prediction_pooling.csv
(the per-family backtests alone and with the other families' data, analysis.predict.families,
rows of testbed `obsscaling:with_others`); figures
`predictions_error_vs_ratio.png` and `predictions_by_category.png`.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from analysis import testbeds
from analysis.config import AnalysisConfig
from analysis.output import files as io
from analysis.predict import figures
from analysis.predict.backtest import rolling_origin
from analysis.predict.cutoff import cutoff_backtest, task_table
from analysis.predict.families import MIN_OWN_SIZES, with_others_backtest
from analysis.predict.ladder import build_ladder
from analysis.predict.methods import Settings
from analysis.predict.tables import (
    categories,
    category_table,
    ladder_rows,
    method_table,
    olmo_targets,
    pooling_table,
    predictable_vs_rest,
    summary_row,
    with_category,
)

TABLES = (
    "predictions",
    "prediction_methods",
    "prediction_categories",
    "prediction_olmo",
    "prediction_cutoff",
    "prediction_pooling",
)


def testbed_name(table: pd.DataFrame) -> str:
    """The table's source, or for harness records its sweep name(s)."""
    src = sorted(table["source"].dropna().astype(str).unique())
    if src and src != ["harness"]:
        return ",".join(src)
    sweeps = sorted(s for s in table["sweep"].dropna().astype(str).unique() if ":" not in s)
    return ",".join(sweeps) or "harness"


def settings_from(cfg: AnalysisConfig) -> Settings:
    two = cfg.extrapolate.two_step
    return Settings(
        huber_delta=cfg.fit.huber_delta,
        step2_min_frac=two.step2_min_frac,
        last_n=two.last_n,
        seed=cfg.bootstrap.seed,
    )


def loss_val_set(cfg: AnalysisConfig) -> str:
    return cfg.extrapolate.val_set or cfg.reference_val_set


def prediction_tables(table: pd.DataFrame, cfg: AnalysisConfig, trends: pd.DataFrame) -> dict:
    """Backtest every predictor on `table` (the whole table: every checkpoint) and tabulate."""
    t0 = time.process_time()
    name = testbed_name(table)
    s = settings_from(cfg)
    pred, info = rolling_origin(table, name, s, cfg.accuracy_metric, loss_val_set(cfg))
    bench = sorted({t for b in testbeds.of_table(table) for t in b.capability_tasks})
    # the pooled ladder of the observational protocols, built once for both
    lad = build_ladder(table, None, cfg.accuracy_metric, None, s.last_n) if bench else None
    for extra in (
        cutoff_backtest(table, name, bench, s, cfg.accuracy_metric, lad),
        with_others_backtest(table, name, bench, s, cfg.accuracy_metric, lad),
    ):
        if not extra.empty:
            pred = pd.concat([pred, extra], ignore_index=True) if not pred.empty else extra
    cats = categories(trends, cfg.reference_val_set)
    out = {
        "predictions": pred,
        "prediction_methods": method_table(pred),
        "prediction_categories": category_table(pred, cats),
        "prediction_olmo": olmo_targets(pred),
        "prediction_cutoff": task_table(pred),
        "prediction_pooling": pooling_table(pred),
        "_prediction_category": with_category(pred, cats) if not pred.empty else pd.Series(),
        "_prediction_info": {**info, "cpu_seconds": time.process_time() - t0, "testbed": name},
    }
    return out


def write_predictions(out_dir: Path, res: dict) -> list[Path]:
    """Write the stage's tables and figures (nothing when the stage did not run); the names of
    the figures drawn go to `res["_prediction_figures"]` for the report."""
    if "predictions" not in res:
        return []
    tdir, fdir = Path(out_dir) / "tables", Path(out_dir) / "figures"
    files = [io.write_csv(tdir / f"{n}.csv", res[n]) for n in TABLES if n in res]
    info = {k: v for k, v in res["_prediction_info"].items() if k != "seconds"}
    files.append(io.write_text(tdir / "prediction_info.json", json.dumps(info, indent=2)))
    pred = res["predictions"]
    # the cutoff protocol has its own figure; its rows and the with-other-families rows have
    # their own naive and default, not the ladders'
    lad = ladder_rows(pred)
    if not pred.empty:
        for f in (
            figures.error_vs_ratio(lad, fdir / "predictions_error_vs_ratio.png"),
            figures.error_by_category(
                lad,
                res["_prediction_category"].loc[lad.index],
                fdir / "predictions_by_category.png",
            ),
            figures.cutoff_scatter(pred, fdir / "predictions_cutoff.png"),
        ):
            if f is not None:
                files.append(f)
                res.setdefault("_prediction_figures", []).append(Path(f).name)
    return files


def predictions_section(tables: dict, md) -> str:
    """The report's "Predictions" markdown, from the stage's tables in memory (as
    `prediction_tables` returned them; `md` renders a DataFrame as a markdown table)."""
    empty = pd.DataFrame()
    meth = tables.get("prediction_methods", empty)
    s = ["\n## Predictions\n\n"]
    if meth.empty:
        return "".join(s) + "No backtest could be run (too few sizes; see warnings).\n"
    info = tables.get("_prediction_info", {})
    s.append(
        "Rolling-origin backtests: each method is fitted on the rungs up to an origin and "
        "predicts every larger run; `internal` folds (targets within the testbed's internal "
        "limit) choose the default method and calibrate the 80% intervals (split-conformal "
        "scaling of bootstrap + evaluation-noise widths); `held_out` folds are only reported. "
        f"Default method: **{info.get('default', '?')}**"
        + (f" (ensemble of {', '.join(info['members'])})" if info.get("members") else "")
        + f"; stage CPU time {info.get('cpu_seconds', float('nan')):.1f} s. "
        "Full rows: tables/predictions.csv.\n\n"
    )
    s.append(md(meth, ".3f"))
    olmo = tables.get("prediction_olmo", empty)
    if not olmo.empty:
        s.append(
            "\nOLMo held-out targets, mean |error| over the 8 published tasks, beside the "
            "published chain (13B: the authors' per-task predictions; 7B: their reported "
            "~0.038):\n\n"
        )
        s.append(
            md(
                olmo[
                    ["fit_on", "target", "method", "default", "mean_abs_error"]
                    + ["coverage", "published_mean_abs_error"]
                ],
                ".3f",
            )
        )
    cut = tables.get("prediction_cutoff", empty)
    if not cut.empty:
        s.append(
            "\nCompute-cutoff protocol (Ruan et al.; `<testbed>:cutoff` rows): fitted on every "
            "family's models at or below Llama-2-7B's 8.4e22 FLOPs, pooled, predicting the "
            "larger models; intervals calibrated on the same split one decade lower. Held-out "
            "error and 80% coverage per task:\n\n"
        )
        wide = cut.pivot(index="task", columns="method", values=["mean_abs_error", "coverage"])
        wide.columns = [
            f"{m} {'|err|' if v == 'mean_abs_error' else 'cov'}" for v, m in wide.columns
        ]
        wide["n"] = cut.groupby("task")["n"].max()
        s.append(md(wide.reset_index(), ".3f"))
    s.append(_pooling_section(tables.get("prediction_pooling", empty), md))
    cat = tables.get("prediction_categories", empty)
    if not cat.empty:
        s.append("\nDoes the trend category predict the error? Default method by category:\n\n")
        s.append(md(cat, ".3f"))
        pv = predictable_vs_rest(cat)
        s.append("\n" + md(pv, ".3f"))
        beds = list(dict.fromkeys(pv["testbed"])) if not pv.empty else []
        for tb in beds or [None]:  # the cutoff protocol is its own testbed row
            one = pv if tb is None else pv[pv["testbed"] == tb]
            s.append((f"\n`{tb}`:" if len(beds) > 1 else "") + _category_sentence(one))
    for f in tables.get("_prediction_figures", []):  # those write_predictions drew
        s.append(f"\n![{f}](figures/{f})\n")
    return "".join(s)


def _pooling_section(pool: pd.DataFrame, md) -> str:
    """The per-family backtests alone and with the other families' data, held out."""
    if pool.empty:
        return ""
    fam = {
        (p, m): (int(n), f)
        for p, m, n, f in pool[pool["targets"] != "alone's"][
            ["pooling", "method", "n_families", "families"]
        ].itertuples(index=False)
    }
    alone = next((v for (p, m), v in fam.items() if p == "alone" and m == "naive"), (0, ""))
    wo = next((v for (p, m), v in fam.items() if p != "alone" and m == "naive"), (0, ""))
    return (
        "\nPer family, alone and with the other families' data (`<testbed>:with_others` rows, "
        "analysis/predict/families.py): a sigmoid link from the capability axis to the task, "
        "fitted on every other family's models plus the family's smaller ones (`_offset`: plus "
        "a family intercept fitted on its own models), the target's capability measured from "
        "its other benchmarks (`capability_sigmoid*`) or extrapolated along the family's "
        "capability-compute line (`family_trend_sigmoid*`). The family-alone fits need 4 own "
        f"sizes: families with >= 5 sizes are predicted ({alone[0]}: {alone[1]}); with the "
        f"other families {MIN_OWN_SIZES} own sizes fit: >= {MIN_OWN_SIZES + 1} sizes "
        f"({wo[0]}: {wo[1]}). Held out; `alone's` = the with-others rows on the "
        "family-alone backtest's own targets and origins:\n\n"
        + md(pool.drop(columns=["testbed", "families"]), ".3f")
    )


def _category_sentence(pv: pd.DataFrame) -> str:
    h = pv[pv["split"] == "held_out"].set_index("group") if not pv.empty else pv
    if h.empty or not {"predictable", "other"} <= set(h.index):
        return "\nOnly one group has held-out predictions: the categories cannot be compared.\n"
    p, o = h.loc["predictable"], h.loc["other"]
    sep = p["mean_abs_error"] < o["mean_abs_error"]
    return (
        f"\nHeld out, `predictable` tasks err by {p['mean_abs_error']:.3f} on average "
        f"(coverage {p['coverage']:.0%}, n={int(p['n'])}) against {o['mean_abs_error']:.3f} "
        f"(coverage {o['coverage']:.0%}, n={int(o['n'])}) for the others: "
        + (
            "the category separates the errors.\n"
            if sep
            else "the categories do NOT separate the errors here.\n"
        )
    )


def predictions_summary(out: Path, names: list[str], md, dest: Path | None = None) -> str:
    """summary.md's table: each testbed's methods on held-out folds (error, coverage), read
    from each testbed's written predictions.csv under `out`; its CSV goes to `dest` (the
    summary's staging folder; default `out`)."""
    rows = []
    for name in names:
        pred_p = Path(out) / name / "tables" / "predictions.csv"
        if pred_p.exists():
            rows.append(summary_row(io.read_csv(pred_p)))
    s = ["\n## Predictions: held-out error and 80% coverage per testbed and method\n\n"]
    if not rows:
        return "".join(s) + "_(none)_\n"
    df = pd.concat(rows, ignore_index=True)
    io.write_csv(Path(dest or out) / "summary" / "predictions.csv", df)
    s.append(md(df, ".3f"))
    pooled = df.loc[df["default"].astype(bool)]
    if not pooled.empty:
        cov = float(np.average(pooled["coverage"], weights=pooled["n"]))
        s.append(f"\nPooled coverage of the default methods' held-out intervals: {cov:.0%}.\n")
    return "".join(s)
