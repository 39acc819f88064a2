"""ObsScaling importer and its capability axis: raw layout, shipped compact form, the
leave-one-out axis, bad input as one line, and `harness analyze source=obsscaling`."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis import testbeds
from analysis.errors import AnalysisError, AnalysisWarning
from analysis.ingest.capability import axis_values, capability_scores, leave_one_out
from analysis.testbeds.convert import convert
from analysis.testbeds.obsscaling.loader import (
    BASE,
    EMERGENT_FILE,
    LEADERBOARD_FILE,
    STANDARD_TASKS,
    load_testbed,
    read_raw,
)
from tests.fixtures.obsscaling_make import FAMILIES, NO_FLOPS, base_frame, write_obsscaling

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def raw(tmp_path):
    return write_obsscaling(tmp_path / "obs")


def test_runs_families_sizes_and_tasks(raw):
    t = read_raw(raw)
    runs = t.drop_duplicates("run_id").set_index("run_id")
    assert len(runs) == sum(len(s) for s, _, _ in FAMILIES.values()) + 1
    r = runs.loc["org/Beta-2.5B"]
    assert r["corpus"] == "Beta" and r["size"] == "2.5B"
    assert r["n_params"] == 2.5e9 and r["train_tokens"] == 2e12 == r["tokens"]
    assert r["flops"] == pytest.approx(6 * 2.5e9 * 2e12)
    assert bool(r["final"]) and pd.isna(r["step"])
    names = set(t["name"])
    assert set(STANDARD_TASKS) <= names
    assert {"word_unscrambling@2shot", "arithmetic_2da@2shot", "bbh", "mmlu_pro"} <= names
    assert not t["name"].str.contains("bleu").any()  # BLEU is not an accuracy
    assert set(t["metric"]) == {"acc"}
    # a score upstream leaves out is no row (NaN, never zero)
    assert t[(t["run_id"] == "org/Alpha-0.1B") & (t["name"] == "humaneval")].empty


def test_models_without_flops_are_left_out_in_one_line(raw):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", AnalysisWarning)
        t = load_testbed(raw)
    assert NO_FLOPS not in set(t["run_id"])
    msgs = [str(w.message) for w in caught if "left out" in str(w.message)]
    assert len(msgs) == 1 and "1 of 21 models left out" in msgs[0], msgs


def test_compact_equals_raw_and_registry(raw, tmp_path):
    dest = tmp_path / "shipped"
    convert("obsscaling", raw, dest)
    pd.testing.assert_frame_equal(read_raw(raw), pd.read_parquet(dest / "obsscaling.parquet"))
    assert (dest / "LICENSE").read_text() == (raw / "LICENSE").read_text()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AnalysisWarning)
        pd.testing.assert_frame_equal(load_testbed(raw), load_testbed(dest))
        shipped = testbeds.get("obsscaling").load()
    bed = testbeds.get("obsscaling")
    assert ROOT in bed.shipped.parents
    assert {"obsscaling.parquet", "LICENSE", "PROVENANCE.md"} <= {
        f.name for f in bed.shipped.iterdir()
    }
    full = pd.read_parquet(bed.shipped / "obsscaling.parquet")
    assert full["run_id"].nunique() == 148 and full["corpus"].nunique() == 47
    assert shipped["run_id"].nunique() == 123  # 25 lack tokens and FLOPs upstream


def _scores(seed: int = 0) -> pd.DataFrame:
    b = base_frame(seed)
    b = b[b["FLOPs (1E21)"].notna()]
    out = b.set_index("Model")[["MMLU", "ARC-C", "HellaSwag", "GSM8K", "HumanEval"]]
    return out.rename(columns=str.lower)


def test_leave_one_out_axis_ignores_the_task_it_is_for():
    s = _scores()
    axes = leave_one_out(s)
    changed = s.copy()
    rng = np.random.default_rng(1)
    changed["mmlu"] = rng.permutation(changed["mmlu"].to_numpy())  # scramble the task
    again = leave_one_out(changed)
    pd.testing.assert_series_equal(axes["mmlu"], again["mmlu"])  # its own axis: unchanged
    assert not np.allclose(axes[None], again[None])  # the full axis does use it
    assert not np.allclose(axes["gsm8k"], again["gsm8k"])


def test_capability_sign_scale_and_missing_scores():
    s = _scores()
    cap = capability_scores(s)
    assert cap.notna().all()  # a missing HumanEval score is imputed, not a dropped model
    # higher benchmark scores -> higher capability, whatever sign the SVD returns
    assert np.corrcoef(cap, s.mean(axis=1))[0, 1] > 0.9
    assert capability_scores(-s).corr(cap) < -0.9
    assert cap.abs().max() < 5  # on the scale of one standardised benchmark
    assert (axis_values(cap) > 0).all()
    # every score missing but one: no capability for that model
    s2 = s.copy()
    s2.iloc[0, 1:] = np.nan
    assert np.isnan(capability_scores(s2).iloc[0])


def test_capability_is_the_same_with_one_or_two_threads():
    from threadpoolctl import threadpool_limits

    s = _scores()
    with threadpool_limits(1):
        one = leave_one_out(s)
    with threadpool_limits(2):
        two = leave_one_out(s)
    for k in one:
        np.testing.assert_array_equal(one[k].to_numpy(), two[k].to_numpy())


def _drop_file(root: Path, name: str) -> None:
    (root / "eval_results" / name).unlink()


def _drop_column(root: Path, name: str, col: str) -> None:
    f = root / "eval_results" / name
    pd.read_csv(f).drop(columns=[col]).to_csv(f, index=False)


BAD = [
    (lambda r: _drop_file(r, BASE), f"missing file '{BASE}'"),
    (lambda r: _drop_file(r, EMERGENT_FILE), f"missing file '{EMERGENT_FILE}'"),
    (lambda r: _drop_file(r, LEADERBOARD_FILE), f"missing file '{LEADERBOARD_FILE}'"),
    (lambda r: _drop_column(r, BASE, "FLOPs (1E21)"), "missing column 'FLOPs (1E21)'"),
    (lambda r: _drop_column(r, BASE, "Model Family"), "missing column 'Model Family'"),
    (lambda r: _drop_column(r, BASE, "GSM8K"), "missing column 'GSM8K'"),
    (
        lambda r: _drop_column(r, EMERGENT_FILE, "arithmetic_2da_2_acc"),
        "missing column 'arithmetic_2da_2_acc'",
    ),
]


@pytest.mark.parametrize("damage,message", BAD)
def test_missing_file_or_column_is_one_line_exit_2(raw, tmp_path, damage, message, run_cli):
    damage(raw)
    with pytest.raises(AnalysisError, match=re.escape(message)):
        read_raw(raw)
    code, _, err = run_cli("analyze", "source=obsscaling", f"path={raw}", f"out={tmp_path / 'out'}")
    assert code == 2, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and message in lines[0], err
    assert not (tmp_path / "out" / "report.md").exists()


@pytest.mark.slow
def test_analyze_fixture_end_to_end(raw, tmp_path, run_cli):
    out = tmp_path / "out"
    code, _, err = run_cli(
        "analyze",
        "source=obsscaling",
        f"path={raw}",
        f"out={out}",
        "analysis.bootstrap.n_resamples=40",
        "analysis.bootstrap.loss_law_resamples=0",
    )
    assert code == 0, err[-2000:]
    cap = pd.read_csv(out / "tables" / "capability_predictable.csv")
    assert list(cap["corpus"])[0] == "all" and {"Alpha", "Beta", "Gamma"} <= set(cap["corpus"])
    assert "Solo" not in set(cap["corpus"])  # one size: only pooled
    pooled = cap.iloc[0]
    assert pooled["ci_low"] <= pooled["ci_high"] and pooled["n_tasks"] == 21
    trends = pd.read_csv(out / "tables" / "capability_trends.csv")
    assert set(trends["val_set"]) == {"capability"}
    axis = pd.read_csv(out / "tables" / "capability_axis.csv", keep_default_na=False)
    assert set(axis["left_out"]) == {""} | set(STANDARD_TASKS)
    # each benchmark is classified against its own leave-one-out axis, the rest the full one
    pooled_rows = trends[trends["corpus"] == "all"].set_index("name")
    for name, left_out in (("mmlu", "mmlu"), ("gsm8k", "gsm8k"), ("word_unscrambling@2shot", "")):
        x = axis.loc[axis["left_out"] == left_out, "x"]
        assert pooled_rows.loc[name, "x_max"] == pytest.approx(x.max())
    report = (out / "report.md").read_text()
    assert "## Capability axis (observational scaling)" in report
    assert "Emergent-capability tasks" in report
    assert "tasks changing category with the family" in report
    warned = (out / "tables" / "warnings.txt").read_text()
    assert "1 of 21 models left out" in warned
    # both x-axis changes reach flips.csv's machinery: compute -> capability rows, if any,
    # name the capability axis
    flips = pd.read_csv(out / "tables" / "flips.csv")
    to_cap = flips[(flips["setting"] == "val_set") & (flips["to"] == "capability")]
    assert to_cap["from"].eq("compute").all()
    # the compute-cutoff protocol joins the prediction tables, report and figures
    pred = pd.read_csv(out / "tables" / "predictions.csv")
    cut = pred[pred["testbed"] == "obsscaling:cutoff"]
    assert set(cut.loc[cut["split"] == "held_out", "target"]) == {"org/Beta-12B", "org/Solo-7B"}
    per_task = pd.read_csv(out / "tables" / "prediction_cutoff.csv")
    assert set(per_task["method"]) == {"capability_sigmoid", "compute_sigmoid", "naive"}
    assert "Compute-cutoff protocol" in report and "predictions_cutoff.png" in report
    assert (out / "figures" / "predictions_cutoff.png").exists()
    # so does the per-family backtest with the other families' data, beside the alone one
    wo = pred[pred["testbed"] == "obsscaling:with_others"]
    assert set(wo["corpus"]) == {"Alpha", "Beta", "Gamma"}  # Solo: one size
    methods = pd.read_csv(out / "tables" / "prediction_methods.csv")
    assert set(methods["pooling"]) == {
        "alone",
        "with_other_families",
        "all_families_below_cutoff",
    }
    pool = pd.read_csv(out / "tables" / "prediction_pooling.csv")
    assert set(pool["targets"]) == {"own", "all", "alone's"}
    assert "Per family, alone and with the other families' data" in report
