"""Honest numbers and readable figures (issue 14): n/a with the reason for what could not be
computed, flagged fits never shown as results, the within-mix check, findings first, the
all-zero sensitivity table collapsed, `plot` options and formats, legend entries."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest

from analysis.config import AnalysisConfig, FitConfig
from analysis.errors import AnalysisError
from analysis.flips.detect import headline_flips
from analysis.laws.fit_quality import fit_flag
from analysis.pipeline import analyze, plot
from analysis.report.findings import lead_sentences, sensitivity_block
from analysis.report.markdown import md_table
from analysis.trends.within_groups import COLUMN, mark_within_mix
from tests.fixtures.analysis_make import sweep_table

FAST = {"bootstrap": {"n_resamples": 40, "loss_law_resamples": 10}, "plot": {"max_flip_figures": 1}}


def _analyze(out, **over):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        analyze(sweep_table(), out, AnalysisConfig.from_dict({**FAST, **over}))
    return (out / "report.md").read_text()


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    out = tmp_path_factory.mktemp("honest")
    return out, _analyze(out)


def test_fit_flags_name_bounds_and_r2():
    f = FitConfig()
    assert (
        fit_flag("exp", {"eps": 0.5, "ln_k": 0.0, "gamma": f.gamma_max}, -0.0, f)
        == "ln_k at bound 0; gamma at bound 20; R² ≤ 0"
    )
    assert fit_flag("exp", {"eps": 0.5, "ln_k": 2.0, "gamma": 3.0}, 0.8, f) == ""
    assert fit_flag("compute", {"E": 1.0}, -0.3, f) == "R² ≤ 0"


def test_flagged_fits_are_marked_and_never_a_result(sweep):
    out, report = sweep
    fits = pd.read_csv(out / "tables" / "fits.csv", keep_default_na=False)
    assert "flag" in fits
    err = fits[fits["kind"] == "error_law"]
    assert (err["flag"] != "").all()  # the fixture's error laws hit eps = 1
    ext = pd.read_csv(out / "tables" / "extrapolation.csv", keep_default_na=False)
    flagged = ext[ext["quantity"] == "top1_error_avg"]
    assert (flagged["flag"] != "").all()
    for r in flagged.itertuples():  # in the report: n/a with the reason, no error figure
        assert f"| {r.target} | top1_error_avg | {r.law} | n/a ({r.flag}) |" in report
    assert "rest on a degenerate fit" in report.split("## Fraction")[0]


def test_findings_come_first_with_figure_links(sweep):
    _, report = sweep
    findings = report.index("## Findings")
    assert findings < report.index("## Fraction of tasks") < report.index("## Classification rules")
    first = report[findings : report.index("## Fraction of tasks")]
    assert "(figures/task_grid_toy.png)" in first and "(figures/loss_vs_compute.png)" in first


def test_report_opens_with_law_others_and_flips(sweep):
    """Three sentences before any table: which tasks follow a law, which do not and in which
    category, what flipped under which change; all agree with the tables."""
    out, report = sweep
    lead = report.split("\n\n")[1]
    assert lead.index("scaling law") < lead.index("do not") < report.index("## Findings")
    trends = pd.read_csv(out / "tables" / "trends.csv")
    t = trends[(trends["val_set"] == "toy") & (trends["corpus"] == "all")]
    assert len(t) == 6
    for r in t.itertuples():
        assert f"`{r.name}`" in lead and r.category in lead
    assert "(figures/task_grid_toy.png)" in lead
    flips = pd.read_csv(out / "tables" / "flips.csv")
    assert headline_flips(flips, "toy", 0.05).empty  # this small sweep has none significant
    assert "No change of a single setting flips a task's verdict or reverses two corpora" in lead
    flips = pd.DataFrame([_flip("setup", "predictable->trendless", 0.004, "val_set=toy")])
    flips.loc[0, "setup"] = np.nan  # as read back from flips.csv
    lead = lead_sentences(out, AnalysisConfig(), "toy", "all", trends, flips)
    assert (
        "Changing one setting breaks a law: `t` goes from predictable to trendless when "
        "the setup changes from `toy` to `code` (q = 0.004)." in lead
    )


def _flip(
    setting,
    effect,
    q,
    context="corpus=all",
    frm="toy",
    to="code",
    task="t",
    level="verdict",
    size=0.5,
):
    return {
        "task": task,
        "setup": "",
        "setting": setting,
        "context": context,
        "from": frm,
        "to": to,
        "kind": "category",
        "effect": effect,
        "p_value": q,
        "q_value": q,
        "level": level,
        "effect_size": size,
    }


def test_headline_flips_rank_by_effect_among_discoveries():
    flips = pd.DataFrame(
        [
            _flip("corpus", "noisy->predictable", 0.0001, "val_set=toy", "a", "b"),
            _flip("val_set", "noisy->inverse", 0.001, task="small", size=0.3),
            _flip("val_set", "predictable->noisy", 0.01, task="large", size=0.9),
            _flip("val_set", "noisy->trendless", 0.0001, task="churn", level="reclassification"),
            _flip("setup", "predictable->trendless", 0.2, "val_set=toy,corpus=all", size=1.0),
            _flip("setup", "predictable->trendless", 0.04, "val_set=toy,corpus=all", task="s"),
            _flip("val_set", "trendless->predictable", 0.0, to="task_bpb", task="axis", size=1),
            _flip("seed", "noisy->predictable", 0.0, task="run", level="trajectory", size=1),
        ]
    )
    head = headline_flips(flips, "toy", 0.05, per=1)
    assert list(zip(head["setting"], head["task"], strict=True)) == [
        ("setup", "s"),
        ("val_set", "large"),
        ("corpus", "t"),
    ]
    head = headline_flips(flips, "toy", 0.05)
    assert list(head["task"]) == ["s", "large", "small", "t"]
    assert headline_flips(flips.assign(q_value=0.5), "toy", 0.05).empty


def test_unclassifiable_sweep_reports_na_not_zero(tmp_path):
    report = _analyze(tmp_path, classify={"min_models": 20})
    assert "0/6" not in report and "| 0.000 | 0.000 | 0.000" not in report
    assert "n/a (too few models: all 6 tasks have fewer than 20 (10 at most))" in report
    assert "the fraction predictable is n/a, not 0" in report


def test_all_zero_sensitivity_is_one_line():
    sens = pd.DataFrame(
        {
            "val_set": "v",
            "corpus": "all",
            "threshold": ["a", "a", "b", "b"],
            "factor": [0.5, 2.0, 0.5, 2.0],
            "value": 1.0,
            "frac_predictable": 0.0,
        }
    )
    text = sensitivity_block(sens, "v", md_table)
    assert text.strip().count("\n") == 0 and "is 0.00 under every threshold" in text
    sens.loc[0, "frac_predictable"] = 0.5
    assert "| threshold |" in sensitivity_block(sens, "v", md_table)


def _mix_points(within: bool) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Two mixes of 5 runs: mix b has lower loss and higher accuracy than mix a; accuracy
    inside each mix is flat (within=False) or rises as loss falls (within=True)."""
    rows = []
    for mix, base_loss, base_acc in (("a", 3.0, 0.3), ("b", 2.0, 0.7)):
        for i in range(5):
            rid, loss = f"{mix}{i}", base_loss - 0.1 * i
            acc = base_acc + (0.05 * i if within else 0.004 * (-1) ** i)
            common = {"run_id": rid, "source": "harness", "corpus": mix}
            rows.append(
                {**common, "kind": "val_loss", "name": "v", "metric": "loss", "value": loss}
            )
            rows.append({**common, "kind": "task", "name": "t", "metric": "acc", "value": acc})
    trends = pd.DataFrame(
        [
            {"val_set": "v", "corpus": c, "name": "t", "category": cat, "binomial_se": 0.01}
            for c, cat in (("all", "predictable"), ("a", "insufficient"), ("b", "insufficient"))
        ]
    )
    return pd.DataFrame(rows), trends


@pytest.mark.parametrize("within, verdict", [(False, "between mixes only"), (True, "within mixes")])
def test_within_mix_check(within, verdict):
    points, trends = _mix_points(within)
    out = mark_within_mix(points, trends, "acc")
    assert out.loc[out["corpus"] == "all", COLUMN].item() == verdict
    assert (out.loc[out["corpus"] != "all", COLUMN] == "").all()  # only pooled rows
    assert list(out["category"]) == list(trends["category"])  # the rules' answer unchanged


def test_within_mix_leaves_testbeds_alone():
    points, trends = _mix_points(False)
    out = mark_within_mix(points.assign(source="gadre2024"), trends, "acc")
    assert (out[COLUMN] == "").all()


def test_plot_takes_dpi_and_formats_and_needs_tables(sweep, tmp_path):
    out, _ = sweep
    files = plot(out, {"dpi": 40, "formats": ["png", "pdf", "svg"]})
    assert {f.suffix for f in files} == {".png", ".pdf", ".svg"}
    from PIL import Image

    png = next(f for f in files if f.name == "task_grid_toy.png")
    assert round(Image.open(png).info["dpi"][0]) == 40
    assert next(f for f in files if f.suffix == ".pdf").read_bytes().startswith(b"%PDF")
    with pytest.raises(AnalysisError, match="run `harness analyze root=.*` first"):
        plot(tmp_path)
    with pytest.raises(AnalysisError, match="analysis.plot.formats: unknown format 'gif'"):
        plot(out, {"formats": ["gif"]})


def test_plot_cli_says_what_it_read(sweep, run_cli):
    out, _ = sweep
    code, stdout, err = run_cli("plot", f"out={out}", "analysis.plot.formats=[svg]")
    assert code == 0, err
    assert (
        stdout.splitlines()[0]
        == "read runs.parquet, trends.csv, flips.csv, fits.csv, extrapolation.csv from "
        f"{out / 'tables'}"
    )
    assert all(line.endswith(".svg") for line in stdout.splitlines()[1:])
    code, _, err = run_cli("plot", f"out={out / 'nothing'}")
    assert code == 2 and err.strip().count("\n") == 0 and "harness analyze" in err


def test_task_grid_legend_names_every_line_style(sweep, monkeypatch):
    from analysis.report import figures as plots

    out, _ = sweep
    figs = []
    monkeypatch.setattr(plots, "_save", lambda fig, path, pcfg: figs.append(fig) or [path])
    cfg = AnalysisConfig.from_dict(json.loads((out / "analysis_config.json").read_text()))
    plots.task_grids(out, plots._Data(out, cfg), cfg)
    labels = [t.get_text() for t in figs[0].legends[0].get_texts()]
    assert labels == [
        "toy",
        "toy+code",
        "fitted law, all runs pooled",
        "fitted law, one data mix (its colour)",
        "chance",
        "binomial 95% band around the pooled fit",
    ]
    ax = figs[0].axes[0]
    assert "(nats/token)" in figs[0].texts[0].get_text() if figs[0].texts else True
    titles = [a.get_title() for a in figs[0].axes]
    assert not any("-0.00" in t or "R²=" in t for t in titles)
    # the y-range holds the chance line and the binomial band, so noise looks like noise
    lo, hi = ax.get_ylim()
    assert lo <= 0.25 <= hi and np.isfinite([lo, hi]).all()


def test_within_mix_line_names_the_task_on_every_val_set():
    from analysis.report.findings import report_lines

    points, trends = _mix_points(False)
    text = report_lines(mark_within_mix(points, trends, "acc"))
    assert text.startswith(
        "Within-mix check on `v`: 1 of 1 pooled-predictable task(s) trend between data mixes only"
    ) and text.rstrip().endswith(": t.")
