"""Figures and words fit for a talk (issue 24, items 6 and 8): fitted laws drawn over their
fitted range plus the stated margin and only at plausible values, one y-scale for the panels
of a comparison, 200 dpi; sentences that count right for 0, 1 and n tasks, an interval that
is not a point for one task, the x-axis named by what it is, no local path in the outputs,
warnings as one line, n/a instead of 0.0 for unclassified groups."""

from __future__ import annotations

import json
import warnings

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from analysis.config import AnalysisConfig
from analysis.errors import AnalysisWarning, one_line_warnings, warn
from analysis.pipeline import analyze
from analysis.report import figures, style
from analysis.report.findings import findings_section, lead_sentences, wilson
from tests.fixtures.analysis_make import sweep_table

FAST = {"bootstrap": {"n_resamples": 40, "loss_law_resamples": 10}, "plot": {"max_flip_figures": 2}}
TASKS = ("predictable", "inverse", "trendless", "noisy")


@pytest.fixture(scope="module")
def drawn(tmp_path_factory):
    """One analysis of the fixture sweep, with a labels file named by its absolute path;
    every figure object kept (by stem) before it is saved and closed."""
    out = tmp_path_factory.mktemp("talk")
    labels = out.parent / f"{out.name}_labels.tsv"
    labels.write_text("task\tcategory\n" + "".join(f"task_{t}\t{t}\n" for t in TASKS))
    kept: dict[str, plt.Figure] = {}
    real = figures._save

    def keep(fig, path, pcfg):
        kept[path.stem] = fig
        fig.canvas.draw()  # limits and legends as saved
        return real(fig, path, pcfg)

    figures._save = keep
    close, plt.close = plt.close, lambda *a, **k: None  # keep them inspectable; restored below
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cfg = AnalysisConfig.from_dict({**FAST, "calibration": {"labels": str(labels)}})
            analyze(sweep_table(), out, cfg)
    finally:
        figures._save = real
        plt.close = close
    yield out, kept
    for fig in kept.values():
        plt.close(fig)


def _margin(lo: float, hi: float, log: bool) -> tuple[float, float]:
    if log:
        a, b = np.log10(lo), np.log10(hi)
        pad = style.FIT_MARGIN * (b - a)
        return 10 ** (a - pad), 10 ** (b + pad)
    pad = style.FIT_MARGIN * (hi - lo)
    return lo - pad, hi + pad


def test_fit_grid_spans_the_fitted_range_plus_the_margin():
    g = style.fit_grid(1e10, 1e12, log=True)
    assert np.allclose(np.log10([g[0], g[-1]]), [10 - 0.2, 12 + 0.2])
    g = style.fit_grid(2.0, 6.0, log=False)
    assert np.allclose([g[0], g[-1]], [1.6, 6.4])
    assert np.isnan(style.accuracy(np.array([-0.1, 0.5, 1.2]))[[0, 2]]).all()
    with pytest.raises(ValueError, match="positive"):
        style.fit_grid(0.0, 1.0, log=True)


def test_loss_law_stays_within_its_fitted_compute_and_plausible_losses(drawn):
    out, kept = drawn
    fig = kept["loss_vs_compute"]
    fits = pd.read_csv(out / "tables" / "fits.csv")
    laws = fits[(fits["kind"] == "loss_law") & (fits["law"] == "compute")]
    assert not laws.empty and laws[["x_min", "x_max"]].notna().all().all()
    axes = [ax for ax in fig.axes if ax.get_title()]
    assert len({ax.get_ylim() for ax in axes}) == 1  # one loss scale for every corpus
    n_curves = 0
    for ax in axes:
        row = laws[laws["corpus"] == ax.get_title()].iloc[0]
        lo, hi = _margin(row["x_min"], row["x_max"], log=True)
        assert ax.get_xscale() == "log"
        for line in ax.get_lines():
            if line.get_label() != "E + A C^-α":
                continue
            n_curves += 1
            x, y = np.asarray(line.get_xdata(), float), np.asarray(line.get_ydata(), float)
            assert x.min() >= lo * (1 - 1e-9) and x.max() <= hi * (1 + 1e-9)
            y = y[np.isfinite(y)]
            assert y.size and y.min() >= 0 and y.max() <= ax.get_ylim()[1]
    assert n_curves == len(axes)


def test_accuracy_laws_stay_in_their_loss_range_and_in_unit_interval(drawn):
    out, kept = drawn
    trends = pd.read_csv(out / "tables" / "trends.csv")
    t = trends[(trends["val_set"] == "toy") & (trends["corpus"] == "all")].set_index("name")
    grid = kept["task_grid_toy"]
    checked = 0
    for ax in grid.axes:
        name = ax.get_title().split("\n")[0]
        if name not in t.index:
            continue
        lo, hi = _margin(t.at[name, "x_min"], t.at[name, "x_max"], log=False)
        for line in ax.get_lines():
            x = np.asarray(line.get_xdata(), float)
            if x.size < 10:  # chance lines are two points across the axes
                continue
            y = np.asarray(line.get_ydata(), float)
            assert x.min() >= lo - 1e-9 and x.max() <= hi + 1e-9
            assert np.nanmin(y) >= 0 and np.nanmax(y) <= 1
            checked += 1
    assert checked >= 4


def test_comparison_panels_share_their_accuracy_scale(drawn, tmp_path):
    """A corpus flip drawn as two panels (the fixture's own flips are metric and own-loss
    ones, which have no loss panels): one accuracy scale, chance at one height, legend off
    the axes."""
    out, _ = drawn
    flips = pd.read_csv(out / "tables" / "flips.csv", keep_default_na=False)
    row = flips.iloc[[0]].assign(
        task="task_noisy",
        setting="corpus",
        **{"from": "toy", "to": "toy+code"},
        context="val_set=toy",
        kind="category",
        effect="noisy->predictable",
    )
    pd.concat([row, flips]).to_csv(out / "tables" / "flips.csv", index=False)
    cfg = AnalysisConfig.from_dict(FAST)
    kept = {}
    real = figures._save
    figures._save = lambda fig, path, pcfg: kept.setdefault(path.stem, fig) and []
    try:
        figures.flip_figures(out, figures._Data(out, cfg), cfg)
    finally:
        figures._save = real
        flips.to_csv(out / "tables" / "flips.csv", index=False)
    fig = kept["flip_0_task_noisy_toy_vs_toy_code"]
    axes = [ax for ax in fig.axes if ax.get_title()]
    assert len(axes) == 2
    assert axes[0].get_ylim() == axes[1].get_ylim()
    chance = [
        {round(y, 9) for y in line.get_ydata()}
        for ax in axes
        for line in ax.get_lines()
        if line.get_linestyle() == ":"
    ]
    assert len(chance) == 2 and chance[0] == chance[1]
    assert all(ax.get_legend() is None for ax in axes) and fig.legends
    plt.close(fig)


def test_figures_are_saved_at_200_dpi_with_readable_text(drawn):
    out, kept = drawn
    assert AnalysisConfig().plot.dpi == style.DPI == 200
    for stem, fig in kept.items():
        png = Image.open(out / "figures" / f"{stem}.png")
        assert round(png.info["dpi"][0]) == 200
        w, h = fig.get_size_inches()
        assert png.size == (round(w * 200), round(h * 200))
        sizes = [t.get_fontsize() for t in fig.findobj(plt.Text) if t.get_text().strip()]
        assert min(sizes) >= style.MIN_FONT, stem
    for png in (out / "figures").glob("*.png"):  # the prediction figures too
        assert round(Image.open(png).info["dpi"][0]) == 200, png.name


def test_no_local_path_in_report_or_tables(drawn):
    out, _ = drawn
    report = (out / "report.md").read_text()
    assert str(out.parent) not in report
    metrics = pd.read_csv(out / "tables" / "calibration_metrics.csv")
    value = metrics.set_index("metric").at["labels_file", "value"]
    assert value == f"{out.name}_labels.tsv"
    for csv in (out / "tables").glob("*.csv"):
        assert str(out.parent) not in csv.read_text(), csv.name


def _trends(categories: dict[str, str], ref: str = "toy") -> pd.DataFrame:
    return pd.DataFrame(
        [
            {"val_set": ref, "corpus": "all", "name": n, "category": c, "p_predictable": 0.9}
            for n, c in categories.items()
        ]
    )


@pytest.mark.parametrize(
    "cats, has, lacks",
    [
        (
            {"a": "noisy", "b": "noisy", "c": "trendless"},
            ["none of the 3 classified tasks follows a scaling law", "`a` and `b` are noisy"],
            ["The other", "do not", "no task of"],
        ),
        (
            {"a": "noisy"},
            ["the one classified task does not follow a scaling law", "`a` is noisy"],
            ["The other", "1 tasks"],
        ),
        (
            {"a": "predictable"},
            ["1 of 1 task follows a scaling law", "Every task does"],
            ["1 tasks", "The other"],
        ),
        (
            {"a": "predictable", "b": "noisy"},
            ["1 of 2 tasks follows", "The other one does not: `b` is noisy"],
            ["The other 1 "],
        ),
        (
            {"a": "predictable", "b": "noisy", "c": "trendless"},
            ["1 of 3 tasks follows", "The other 2 do not:"],
            [],
        ),
    ],
)
def test_lead_counts_agree_for_zero_one_and_many(tmp_path, cats, has, lacks):
    text = lead_sentences(tmp_path, AnalysisConfig(), "toy", "all", _trends(cats), pd.DataFrame())
    for s in has:
        assert s in text, text
    for s in lacks:
        assert s not in text, text


@pytest.mark.parametrize(
    "ref, phrase", [("compute", "Against compute "), ("params", "Against parameter count ")]
)
def test_pseudo_axes_are_not_called_validation_loss(tmp_path, ref, phrase):
    t = _trends({"a": "predictable", "b": "noisy"}, ref=ref)
    text = lead_sentences(tmp_path, AnalysisConfig(), ref, "all", t, pd.DataFrame())
    assert text.startswith(phrase) and "validation loss" not in text


def test_wilson_interval_is_never_a_point():
    lo, hi = wilson(0, 1)
    assert lo == 0 and hi == pytest.approx(0.7935, abs=1e-4)
    for k, n in [(0, 1), (1, 1), (0, 5), (3, 5), (18, 46)]:
        lo, hi = wilson(k, n)
        assert 0 <= lo <= k / n <= hi <= 1 and lo < hi


def test_findings_line_for_one_task_has_an_honest_interval(tmp_path):
    pred = pd.DataFrame(
        [
            {
                "val_set": "compute",
                "corpus": "all",
                "n_predictable": 0,
                "n_tasks": 1,
                "frac": 0.0,
                "ci_low": 0.0,
                "ci_high": 0.0,
            }
        ]
    )
    trends = _trends({"a": "noisy"}, ref="compute").assign(n_models=10)
    text = findings_section(
        tmp_path, AnalysisConfig(), "compute", "all", pred, trends, pd.DataFrame(), pd.DataFrame()
    )
    assert "Against compute, 0 of 1 task scales predictably (0%; 90% bootstrap interval" in text
    assert "95% Wilson interval over 1 task 0%–79%" in text
    assert "interval 0%–0%)" not in text and "1 tasks" not in text


def test_warnings_print_as_one_line(capsys):
    with one_line_warnings():
        warn("skipping runs/x/record.json: status is 'failed'")
        warnings.warn("mean of empty slice", RuntimeWarning, stacklevel=1)
    err = capsys.readouterr().err.splitlines()
    assert err == [
        "warning: skipping runs/x/record.json: status is 'failed'",
        "warning: mean of empty slice (RuntimeWarning)",
    ]
    with pytest.warns(AnalysisWarning):  # outside, warnings are ordinary again
        warn("x")


def test_summary_says_na_for_groups_with_no_classified_task(tmp_path):
    from analysis.report.summary import _headline

    d = tmp_path / "tb"
    (d / "tables").mkdir(parents=True)
    (d / "analysis_config.json").write_text(json.dumps({"reference_val_set": "v"}))
    pd.DataFrame(
        [
            {
                "val_set": "v",
                "corpus": "all",
                "frac": 0.0,
                "ci_low": 0.0,
                "ci_high": 0.0,
                "n_tasks": 2,
                "n_predictable": 0,
            }
        ]
    ).to_csv(d / "tables" / "predictable.csv", index=False)
    rows = [
        {"val_set": "v", "corpus": c, "name": n, "setup": "", "category": cat}
        for c, cat in (("all", "insufficient"), ("x", "insufficient"), ("y", "noisy"))
        for n in ("a", "b")
    ]
    pd.DataFrame(rows).to_csv(d / "tables" / "trends.csv", index=False)
    got = {(r["breakdown"], r["value"]): r["frac"] for r in _headline("tb", d)}
    assert np.isnan(got[("x-axis", "v")])
    assert np.isnan(got[("corpus", "x")])
    assert np.isnan(got[("setup", "default")])  # the headline group: all insufficient
    assert got[("corpus", "y")] == 0.0  # classified, none predictable: a real 0


def test_record_warnings_name_paths_inside_the_root(tmp_path):
    """What load_records warns about lands in report.md: runs/<id>/record.json and `runs`,
    never the local folder the sweep sits in."""
    from analysis.ingest.records import load_records
    from tests.fixtures.analysis_make import sweep_records, write_records

    recs = sweep_records(n_sizes=3, mixes=("toy",), n_ckpt=2, tasks=("predictable",))
    recs[0]["checkpoints"][0]["tasks"]["task_predictable"]["acc"] = 1.5  # impossible
    write_records(tmp_path, recs)
    (tmp_path / "runs" / "failed").mkdir()
    (tmp_path / "runs" / "failed" / "record.json").write_text(
        json.dumps({**recs[1], "run_id": "failed", "status": "failed", "failure": "x"})
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", AnalysisWarning)
        load_records(tmp_path)
    msgs = [str(w.message) for w in caught]
    assert any(m.startswith("skipping runs/failed/record.json: status") for m in msgs), msgs
    assert any(m.startswith("runs: ") and "= 1.5" in m for m in msgs), msgs
    assert not [m for m in msgs if str(tmp_path) in m]
