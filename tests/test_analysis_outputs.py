"""Output contract (files, columns), config handling, and bad input tables."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from analysis.config import AnalysisConfig
from analysis.errors import AnalysisError, AnalysisWarning
from analysis.ingest.table import conform, empty_table, with_all_columns
from analysis.pipeline import analyze, plot
from analysis.testbeds.gadre2024.loader import load_testbed
from tests.fixtures.analysis_make import sweep_records, sweep_table
from tests.fixtures.gadre_make import make_testbed

ROOT = Path(__file__).resolve().parent.parent
FAST = {"bootstrap": {"n_resamples": 40, "loss_law_resamples": 10}, "plot": {"max_flip_figures": 2}}

CONTRACT = {
    "trends.csv": {"task", "val_set", "corpus", "category", "r2", "n_models", "p_category"},
    "flips.csv": {
        "task",
        "setting",
        "from",
        "to",
        "kind",
        "effect",
        "p_value",
        "ci_low",
        "ci_high",
    },
    "extrapolation.csv": {"target", "quantity", "predicted", "actual", "rel_error"},
    "fits.csv": {"law", "params", "r2"},
}


def _analyze(table, out, **over):
    cfg = AnalysisConfig.from_dict({**FAST, **over})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", AnalysisWarning)
        summary = analyze(table, out, cfg)
    return summary, [str(w.message) for w in caught]


@pytest.fixture(scope="module")
def sweep_out(tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep")
    summary, msgs = _analyze(sweep_table(), out)
    return out, summary, msgs


def test_outputs_follow_the_contract(sweep_out):
    out, summary, _ = sweep_out
    assert (out / "report.md").exists()
    for name in ("runs.parquet", "runs.csv", *CONTRACT):
        assert (out / "tables" / name).exists(), name
    for name, cols in CONTRACT.items():
        df = pd.read_csv(out / "tables" / name)
        assert cols <= set(df.columns), (name, cols - set(df.columns))
    trends = pd.read_csv(out / "tables" / "trends.csv")
    assert set(trends["corpus"]) == {"toy", "toy+code", "all"}
    pooled = trends[trends["corpus"] == "all"].set_index("task")
    assert pooled.loc["task_predictable", "category"] == "predictable"
    assert pooled.loc["task_inverse", "category"] == "inverse"
    figs = {p.name for p in (out / "figures").glob("*.png")}
    assert "loss_vs_compute.png" in figs and any(f.startswith("task_grid_") for f in figs)
    assert set(summary.frac_predictable) == {"toy"}


def test_plot_redraws_figures_from_tables(sweep_out):
    out = sweep_out[0]
    for f in (out / "figures").glob("*.png"):
        f.unlink()
    files = plot(out)
    assert files and all(f.exists() for f in files)


def test_every_checkpoint_as_points_with_metric_flips(tmp_path):
    """points=all with task bpb present: the metric-flip groups use the same points as the
    groups they are compared with (they once used the final ones and crashed on the weights)."""
    summary, _ = _analyze(sweep_table(), tmp_path, points="all")
    flips = pd.read_csv(tmp_path / "tables" / "flips.csv")
    assert summary.n_runs == 10 and not flips.empty


def test_seed_spread_is_measured_and_reported(tmp_path):
    """Two training seeds per configuration: the report shows how far seeds land apart next
    to how far sizes move each quantity; the numbers follow from the table by hand."""
    from analysis.ingest.records import record_rows
    from analysis.trends.seed_spread import seed_spread

    recs = []
    for seed in (0, 1):
        for r in sweep_records(seed=seed):
            r["run_id"], r["seed"] = f"{r['run_id']}s{seed}", seed
            recs.append(r)
    table = conform(with_all_columns(pd.DataFrame([x for r in recs for x in record_rows(r)])))
    _analyze(table, tmp_path)
    spread = pd.read_csv(tmp_path / "tables" / "seed_spread.csv")
    assert set(spread["name"]) == {"toy"} | {n for n in table["name"] if n.startswith("task_")}
    assert (spread["n_configs"] == 10).all() and (spread["n_seeds"] == 2).all()
    assert "## Run-to-run spread over seeds" in (tmp_path / "report.md").read_text()
    fin = table[table["final"]]
    one = fin[(fin["name"] == "task_trendless") & (fin["metric"] == "acc")]
    per = one.groupby(["corpus", "size"])["value"]
    assert spread.set_index("name").loc["task_trendless", "seed_sd"] == pytest.approx(
        np.sqrt(per.var(ddof=1).mean())
    )
    # one seed per configuration: nothing to say, no table
    assert seed_spread(fin[fin["seed"] == 0], "acc", ["toy"]).empty


def test_small_sweep_reports_unfittable_quantities(tmp_path):
    table = sweep_table(n_sizes=2, mixes=("toy",), n_ckpt=2, tasks=("predictable",))
    summary, msgs = _analyze(table, tmp_path)
    report = (tmp_path / "report.md").read_text()
    assert "not fitted" in report.lower()
    assert any("sizes; not fitted" in m for m in msgs)
    trends = pd.read_csv(tmp_path / "tables" / "trends.csv")
    assert trends["category"].tolist() == ["insufficient"]


def test_testbed_fixture_end_to_end(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AnalysisWarning)
        table = load_testbed(make_testbed(tmp_path / "exp_data"))
    summary, msgs = _analyze(
        table, tmp_path / "out", plot={"max_flip_figures": 1, "grid_val_sets": ["c4_val"]}
    )
    assert any("no held-out target runs" in m for m in msgs)
    ext = pd.read_csv(tmp_path / "out" / "tables" / "extrapolation.csv")
    assert (ext["backtest"] == "leave_largest_out").any()
    assert "paloma_code" in summary.frac_predictable


def _nan_scores(t):
    t = t.copy()
    t.loc[(t["kind"] == "task") & (t["run_id"] == "r00"), "value"] = np.nan
    return t


def _drop_task(t):
    return t[~((t["name"] == "task_inverse") & (t["run_id"].isin(["r00", "r01"])))]


@pytest.mark.parametrize(
    "mutate, expect",
    [
        (_nan_scores, "NaN value"),
        (_drop_task, None),
        (lambda t: t[t["run_id"].isin(["r00", "r01", "r02"])], "not fitted"),
    ],
)
def test_bad_input_is_warned_not_fatal(tmp_path, mutate, expect):
    table = mutate(
        sweep_table(n_sizes=5, mixes=("toy",), n_ckpt=2, tasks=("predictable", "inverse"))
    )
    summary, msgs = _analyze(table, tmp_path, plot={"max_flip_figures": 0})
    assert (tmp_path / "tables" / "trends.csv").exists()
    if expect:
        assert any(expect in m for m in msgs), msgs


@pytest.mark.parametrize(
    "table, match",
    [
        (empty_table(), "empty table"),
        (pd.DataFrame({"x": [1]}), "lacks columns"),
        (
            sweep_table(n_sizes=3, mixes=("toy",), n_ckpt=1, tasks=("predictable",)).query(
                "kind == 'val_loss'"
            ),
            "no final-checkpoint acc scores",
        ),
    ],
)
def test_unusable_table_raises_one_line_error(tmp_path, table, match):
    with pytest.raises(AnalysisError, match=match) as exc:
        analyze(table, tmp_path, AnalysisConfig.from_dict(FAST))
    assert "\n" not in str(exc.value)


def test_config_defaults_equal_yaml_and_reject_unknown_keys():
    data = yaml.safe_load((ROOT / "conf" / "analysis" / "default.yaml").read_text())
    assert AnalysisConfig.from_dict(data) == AnalysisConfig()
    assert AnalysisConfig().to_dict() == data
    with pytest.raises(AnalysisError, match="analysis.classify.r2_mn: unknown key"):
        AnalysisConfig.from_dict({"classify": {"r2_mn": 0.5}})
    with pytest.raises(AnalysisError, match="analysis.bogus: unknown key"):
        AnalysisConfig.from_dict({"bogus": 1})
