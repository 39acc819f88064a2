"""Importers: the Gadre-format fixture and harness run records, including bad files."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest

from analysis.errors import AnalysisError, AnalysisWarning
from analysis.ingest.records import load_records
from analysis.ingest.table import COLUMNS
from analysis.testbeds.gadre2024.loader import load_testbed
from tests.fixtures.analysis_make import sweep_records, write_records
from tests.fixtures.gadre_make import make_testbed


def _load(path):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", AnalysisWarning)
        table = load_testbed(path)
    return table, [str(w.message) for w in caught]


def test_testbed_importer_reads_fixture(tmp_path):
    table, msgs = _load(make_testbed(tmp_path / "exp_data"))
    assert list(table.columns) == list(COLUMNS)
    assert set(table["corpus"]) == {"c4_original", "rpj", "rw_original"}
    assert set(table.loc[table["kind"] == "val_loss", "name"]) == {
        "openlm",
        "c4_val",
        "paloma_code",
    }
    assert table["run_id"].nunique() == 24 and table["final"].all()
    row = table[(table["name"] == "up_task")].iloc[0]
    assert row["chance"] == 0.25 and row["size"] in {
        "d=96_l=8_h=4",
        "d=512_l=8_h=4",
        "d=576_l=24_h=8",
        "d=1024_l=24_h=8",
    }
    assert row["stderr"] == pytest.approx(math.sqrt(row["value"] * (1 - row["value"]) / 2000))
    assert np.allclose(table["flops"], 6 * table["n_params"] * table["train_tokens"])
    assert "unused_task" not in set(table["name"])
    joined = "\n".join(msgs)
    assert "broken.json" in joined and "rpj-nolosses" in joined
    assert "NaN score for task flat_task" in joined
    assert "task down_task missing from 1 of 24" in joined


def test_not_a_testbed_raises(tmp_path):
    with pytest.raises(AnalysisError, match="not a Gadre testbed"):
        load_testbed(tmp_path)


def test_records_loader_skips_incomplete_and_corrupt(tmp_path):
    recs = sweep_records(n_sizes=3, mixes=("toy",), n_ckpt=2, tasks=("predictable",))
    recs[0]["status"] = "failed"
    write_records(tmp_path, recs)
    (tmp_path / "runs" / "bad").mkdir()
    (tmp_path / "runs" / "bad" / "record.json").write_text("{oops")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", AnalysisWarning)
        table = load_records(tmp_path)
    msgs = "\n".join(str(w.message) for w in caught)
    assert "status is 'failed'" in msgs and "bad/record.json" in msgs
    assert table["run_id"].nunique() == 2
    assert set(table["metric"]) == {"loss", "acc", "bpb", "logprob"}
    fin = table[table["final"]]
    assert set(fin["step"]) == {200}
    acc = fin[fin["metric"] == "acc"].iloc[0]
    assert acc["chance"] == 0.25 and acc["n_samples"] == 2000 and np.isfinite(acc["stderr"])


def test_records_loader_raises_when_nothing_usable(tmp_path):
    (tmp_path / "runs" / "x").mkdir(parents=True)
    (tmp_path / "runs" / "x" / "record.json").write_text(json.dumps({"status": "running"}))
    with pytest.warns(AnalysisWarning), pytest.raises(AnalysisError, match="no usable run"):
        load_records(tmp_path)
