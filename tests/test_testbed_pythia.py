"""Pythia importer: raw layout, shipped compact form, bad input."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from analysis import testbeds
from analysis.errors import AnalysisError
from analysis.testbeds.convert import convert
from analysis.testbeds.pythia.loader import TOKENS_PER_STEP, load_testbed, read_raw
from tests.fixtures.testbeds_make import PYTHIA_SIZES, write_pythia


@pytest.fixture
def raw(tmp_path):
    return write_pythia(tmp_path / "pythia")


def test_runs_corpora_variants_and_setups(raw):
    t = read_raw(raw)
    runs = t.drop_duplicates("run_id").set_index("run_id")
    assert len(runs) == 2 * len(PYTHIA_SIZES) + 2
    assert runs.loc["pythia-410m-deduped", "corpus"] == "pile_deduped"
    assert runs.loc["pythia-410m", "corpus"] == "pile"
    assert runs.loc["pythia-1b-bf16", "sweep"] == "pythia:bf16"
    assert runs.loc["pythia-160m-0.5MtokBS", "sweep"] == "pythia:bs0.5M"
    assert set(t["setup"]) == {"", "5shot"}
    assert {"arc_easy", "arc_easy@5shot", "mmlu", "mmlu@5shot"} <= set(t["name"])
    assert not t["name"].str.contains("crows|hendrycks").any()  # bias scores, subjects
    assert "intervention" not in " ".join(t["run_id"])


def test_tokens_are_steps_times_batch(raw):
    t = read_raw(raw)
    std = t[(t["run_id"] == "pythia-70m") & (t["step"] == 71000)]
    assert (std["tokens"] == 71000 * TOKENS_PER_STEP).all()
    bs = t[(t["run_id"] == "pythia-160m-0.5MtokBS") & t["final"]]
    assert (bs["step"] == 572000).all()
    assert (bs["tokens"] == 572000 * 0.5 * 1_048_576).all()  # same tokens, 4x the steps
    assert (bs["flops"] == 6 * bs["n_params"] * bs["tokens"]).all()


def test_mmlu_is_the_mean_of_subjects(raw):
    t = read_raw(raw)
    m = t[(t["name"] == "mmlu") & (t["run_id"] == "pythia-70m")]
    assert m["value"].round(9).eq(0.255).all()


def test_compact_equals_raw_and_registry(raw, tmp_path):
    dest = tmp_path / "shipped"
    convert("pythia", raw, dest)
    pd.testing.assert_frame_equal(read_raw(raw), load_testbed(dest))
    assert testbeds.get("pythia").load(raw)["run_id"].nunique() == 16
    shipped = testbeds.get("pythia").shipped
    assert {"pythia.parquet", "LICENSE", "PROVENANCE.md"} <= {f.name for f in shipped.iterdir()}


def test_missing_key_is_named(raw):
    f = next((raw / "evals" / "pythia-v1" / "pythia-70m" / "zero-shot").glob("*.json"))
    doc = json.loads(f.read_text())
    del doc["config"]
    f.write_text(json.dumps(doc))
    with pytest.raises(AnalysisError, match="missing key 'results' or 'config.num_fewshot'"):
        read_raw(raw)


def test_missing_metric_is_named(raw):
    f = next((raw / "evals" / "pythia-v1" / "pythia-160m" / "zero-shot").glob("*.json"))
    doc = json.loads(f.read_text())
    doc["results"]["piqa"] = {"accuracy": 0.6}
    f.write_text(json.dumps(doc))
    with pytest.raises(AnalysisError, match="task piqa has no 'acc'"):
        read_raw(raw)


def test_missing_folder_is_named(tmp_path):
    with pytest.raises(AnalysisError, match="missing folder 'evals/pythia-v1'"):
        read_raw(tmp_path)
