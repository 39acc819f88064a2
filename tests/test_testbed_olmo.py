"""OLMo ladder importer: raw layout, shipped compact form, bad input."""

from __future__ import annotations

import warnings

import pandas as pd
import pytest

from analysis import testbeds
from analysis.errors import AnalysisError, AnalysisWarning
from analysis.ingest.table import COLUMNS
from analysis.testbeds.convert import convert
from analysis.testbeds.olmo_ladder.loader import VAL_SETS, load_testbed, read_raw
from tests.fixtures.testbeds_make import OLMO_SIZES, write_olmo


@pytest.fixture
def raw(tmp_path):
    return write_olmo(tmp_path / "olmo_ladder")


def test_raw_layout_reads_runs_checkpoints_and_metrics(raw):
    t = read_raw(raw)
    assert list(t.columns) == list(COLUMNS)
    runs = t.drop_duplicates("run_id").set_index("run_id")
    assert len(runs) == 4 * 5 + 2  # 4 sizes x (4 budgets + 1 rerun) + 2 targets
    assert runs.loc["1B-2xC", "n_params"] == OLMO_SIZES["1.3B"]  # "1B" files -> "1.3B" size
    assert runs.loc["190M-1xC-rerun", "sweep"] == "olmo_ladder:seed"
    assert runs.loc["190M-1xC-rerun", "seed"] == 1
    assert set(t.loc[t["kind"] == "val_loss", "name"]) == set(VAL_SETS)
    assert {"acc", "bpb", "prob", "logprob"} <= set(t["metric"])
    # every checkpoint is kept, one final per run
    assert t[t["run_id"] == "370M-5xC"]["step"].nunique() == 6
    assert t[t["final"]].groupby("run_id")["step"].nunique().eq(1).all()
    # flops = 6 N D at each checkpoint
    r = t[(t["run_id"] == "760M-10xC") & (t["name"] == "c4_en")]
    assert (r["flops"] / (6 * r["n_params"] * r["tokens"])).round(9).eq(1).all()


def test_targets_final_checkpoint_and_tokens(raw):
    t = read_raw(raw)
    fin = t[t["final"]].drop_duplicates("run_id").set_index("run_id")
    assert fin.loc["7B-4T", "train_tokens"] == 4e12  # anneal row: tokens, no _step
    assert fin.loc["13B-5T", "step"] == round(5e12 / 4194304.0)
    traj = t[(t["run_id"] == "7B-4T") & (t["name"] == "c4_en")]
    assert len(traj) == 4 and traj["final"].sum() == 1


def test_mmlu_average_is_question_weighted(raw):
    t = read_raw(raw)
    fin = t[t["final"] & (t["metric"] == "acc") & (t["run_id"] == "190M-2xC")].set_index("name")
    w = {"stem": 3018, "humanities": 4705, "social_sciences": 3077, "other": 3242}
    want = sum(fin.at[f"mmlu_{c}_test", "value"] * n for c, n in w.items()) / sum(w.values())
    assert fin.at["mmlu_avg_test", "value"] == pytest.approx(want)


def test_compact_form_equals_raw_and_registry_reads_it(raw, tmp_path):
    dest = tmp_path / "shipped"
    convert("olmo_ladder", raw, dest)
    assert (dest / "LICENSE").is_file()
    a, b = read_raw(raw), load_testbed(dest)
    pd.testing.assert_frame_equal(a, b)
    bed = testbeds.get("olmo_ladder")
    assert bed.load(raw)["run_id"].nunique() == a["run_id"].nunique()


def test_shipped_copy_is_present_and_small():
    bed = testbeds.get("olmo_ladder")
    files = list(bed.shipped.iterdir())
    names = {f.name for f in files}
    assert {"olmo_ladder.parquet", "LICENSE", "PROVENANCE.md"} <= names
    assert sum(f.stat().st_size for f in files) < 5e6


def test_missing_column_is_named(raw):
    f = raw / "ladder-runs" / "370M-2xC.csv"
    df = pd.read_csv(f).drop(columns=["eval/pile-validation/CrossEntropyLoss"])
    df.to_csv(f, index=False)
    with pytest.raises(
        AnalysisError, match="370M-2xC: missing column 'eval/pile-validation/CrossEntropyLoss'"
    ):
        read_raw(raw)


def test_missing_config_file_is_named(raw):
    (raw / "configs" / "final.json").unlink()
    with pytest.raises(AnalysisError, match="missing file 'configs/final.json'"):
        read_raw(raw)


def test_renamed_step_column_is_named(raw):
    f = raw / "ladder-runs" / "190M-1xC.csv"
    pd.read_csv(f).rename(columns={"_step": "step"}).to_csv(f, index=False)
    with pytest.raises(AnalysisError, match="190M-1xC.csv: missing column '_step'"):
        read_raw(raw)


def test_compact_missing_column_is_named(tmp_path, raw):
    dest = tmp_path / "shipped"
    path = convert("olmo_ladder", raw, dest)
    pd.read_parquet(path).drop(columns=["tokens"]).to_parquet(path)
    with pytest.raises(AnalysisError, match="missing column 'tokens'"):
        load_testbed(dest)


def test_task_missing_from_some_runs_is_reported_not_zero(tmp_path):
    raw = write_olmo(tmp_path / "o", drop_task_in="370M-5xC")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", AnalysisWarning)
        t = read_raw(raw)
    msgs = [str(w.message) for w in caught]
    assert any("hellaswag_val missing from 1 of" in m and "370M-5xC" in m for m in msgs)
    assert t[(t["run_id"] == "370M-5xC") & (t["name"] == "hellaswag_val")].empty
