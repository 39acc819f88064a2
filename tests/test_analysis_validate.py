"""The table contract at ingest (`analysis.ingest.table.validate`): impossible values are left out
with a warning naming run, measurement and value; structural faults and mostly-bad or
damaged testbed files are one line (exit 2 from the CLI), never a traceback."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.errors import AnalysisError, AnalysisWarning
from analysis.ingest.records import load_records
from analysis.ingest.table import validate
from tests.fixtures.analysis_make import sweep_records, sweep_table, write_records

ROOT = Path(__file__).resolve().parent.parent
PYTHIA = ROOT / "analysis" / "testbeds" / "pythia" / "pythia.parquet"


def _validate(df: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", AnalysisWarning)
        out = validate(df, "t")
    return out, [str(w.message) for w in caught if issubclass(w.category, AnalysisWarning)]


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    return sweep_table(n_sizes=3, mixes=("toy",), n_ckpt=2, tasks=("predictable",))


def _first(table: pd.DataFrame, kind: str, metric: str) -> int:
    return int(table.index[(table["kind"] == kind) & (table["metric"] == metric)][0])


# (kind, metric, bad value, what the warning says)
BAD_VALUES = [
    ("task", "acc", 5.0, "outside [0, 1]"),
    ("task", "acc", -0.5, "outside [0, 1]"),
    ("task", "bpb", -1.0, "negative"),
    ("task", "logprob", 0.7, "positive"),
    ("val_loss", "loss", -3.0, "negative"),
    ("val_loss", "loss", float("inf"), "not a finite number"),
    ("task", "acc", float("-inf"), "not a finite number"),
]


@pytest.mark.parametrize(("kind", "metric", "value", "why"), BAD_VALUES)
def test_impossible_value_left_out_and_named(table, kind, metric, value, why):
    bad = table.copy()
    i = _first(bad, kind, metric)
    bad.loc[i, "value"] = value
    out, msgs = _validate(bad)
    assert len(out) == len(table) - 1
    row = bad.loc[i]
    assert not (
        (out["run_id"] == row["run_id"])
        & (out["step"] == row["step"])
        & (out["name"] == row["name"])
        & (out["metric"] == metric)
    ).any()
    assert len(msgs) == 1
    assert row["run_id"] in msgs[0] and row["name"] in msgs[0] and repr(value) in msgs[0]
    assert why in msgs[0]


# (column, bad value): the run description; every row of that run is unusable
BAD_RUN_FIELDS = [("n_params", 0.0), ("n_params", -5.0), ("train_tokens", -1.0)]


@pytest.mark.parametrize(("col", "value"), BAD_RUN_FIELDS)
def test_run_with_impossible_counts_left_out(table, col, value):
    bad = table.copy()
    run = bad["run_id"].iloc[0]
    bad.loc[bad["run_id"] == run, col] = value
    out, msgs = _validate(bad)
    assert run not in set(out["run_id"]) and out["run_id"].nunique() == 2
    assert msgs and all(col in m and run in m for m in msgs[:-1])


# (column, bad value): auxiliary numbers are blanked, the measurement kept
BAD_AUX = [("stderr", -0.1), ("n_samples", 0.0), ("chance", 1.5), ("chance", -0.25)]


@pytest.mark.parametrize(("col", "value"), BAD_AUX)
def test_impossible_aux_blanked_not_dropped(table, col, value):
    bad = table.copy()
    i = _first(bad, "task", "acc")
    bad.loc[i, col] = value
    out, msgs = _validate(bad)
    assert len(out) == len(table) and np.isnan(out.loc[i, col])
    assert len(msgs) == 1 and col in msgs[0] and repr(value) in msgs[0]


def test_clean_table_comes_back_unchanged(table):
    out, msgs = _validate(table)
    assert msgs == [] and out is table


# structural faults: one error naming the first bad row
def _dup(t):
    return pd.concat([t, t.iloc[[3]]], ignore_index=True)


def _kind(t):
    t = t.copy()
    t.loc[5, "kind"] = "val-loss"
    return t


def _two_finals(t):
    t = t.copy()
    t.loc[t["run_id"] == t["run_id"].iloc[0], "final"] = True
    return t


def _no_name(t):
    t = t.copy()
    t.loc[2, "name"] = ""
    return t


def _no_column(t):
    return t.drop(columns=["metric"])


STRUCTURE = [
    (_dup, "appears twice"),
    (_kind, "kind 'val-loss' in row 5"),
    (_two_finals, "final checkpoints (one allowed)"),
    (_no_name, "empty name in row 2"),
    (_no_column, "missing column 'metric'"),
]


@pytest.mark.parametrize(("damage", "message"), STRUCTURE)
def test_structural_fault_is_one_error(table, damage, message):
    with pytest.raises(AnalysisError, match=message.replace("(", r"\(").replace(")", r"\)")):
        validate(damage(table), "t")


def test_mostly_bad_file_stops(table):
    bad = table.copy()
    bad["value"] = -0.5
    with pytest.raises(AnalysisError, match="rows hold impossible values"):
        validate(bad, "t")


def test_records_out_of_range_left_out(tmp_path):
    """W8: a record with val_loss = -3.0 and acc = 5.0 is no longer analysed silently."""
    recs = sweep_records(n_sizes=3, mixes=("toy",), n_ckpt=2, tasks=("predictable",))
    ck = recs[1]["checkpoints"][-1]
    ck["val_loss"]["toy"] = -3.0
    ck["tasks"]["task_predictable"]["acc"] = 5.0
    write_records(tmp_path, recs)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", AnalysisWarning)
        t = load_records(tmp_path)
    msgs = [str(w.message) for w in caught]
    assert any("r01" in m and "toy" in m and "-3.0" in m for m in msgs)
    assert any("r01" in m and "task_predictable" in m and "5.0" in m for m in msgs)
    fin = t[(t["run_id"] == "r01") & t["final"]]
    assert set(fin["metric"]) == {"bpb", "logprob"}  # the two bad values left out
    assert not t["value"].isin([5.0, -3.0]).any()


def _pythia_copy(tmp_path: Path, damage) -> Path:
    d = tmp_path / "pythia"
    d.mkdir()
    df = pd.read_parquet(PYTHIA)
    damage(df).to_parquet(d / "pythia.parquet", index=False)
    return d


def test_pythia_sentinels_left_out(tmp_path):
    """W8: 15 accuracies set to -0.5 (a 'missing' sentinel) are left out, each named."""
    from analysis import testbeds

    idx = list(range(0, 15 * 97, 97))

    def sentinel(df):
        df.loc[idx, "value"] = -0.5
        return df

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", AnalysisWarning)
        t = testbeds.get("pythia").load(_pythia_copy(tmp_path, sentinel))
    msgs = [str(w.message) for w in caught if "-0.5" in str(w.message)]
    assert len(msgs) == 15
    shipped = testbeds.get("pythia").load()
    assert len(t) == len(shipped) - 15 and (t["value"] >= 0).all()
    orig = pd.read_parquet(PYTHIA).loc[idx[0]]
    assert orig["run_id"] in msgs[0] and orig["name"] in msgs[0]


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("truncate", "not a readable parquet file"),
        ("garbage", "not a readable parquet file"),
        ("mostly_bad", "rows hold impossible values"),
        ("no_column", "missing column 'value'"),
    ],
)
def test_damaged_testbed_file_is_one_line(tmp_path, damage, message, run_cli, monkeypatch):
    """25.8: a truncated, overwritten or mostly-bad testbed parquet: one line, exit 2."""
    d = tmp_path / "pythia"
    if damage in ("truncate", "garbage"):
        d.mkdir()
        raw = PYTHIA.read_bytes()
        data = raw[: len(raw) // 2] if damage == "truncate" else b"PAR1" + b"\0" * 4000 + b"PAR1"
        (d / "pythia.parquet").write_bytes(data)
    elif damage == "mostly_bad":
        _pythia_copy(tmp_path, lambda df: df.assign(value=-0.5))
    else:
        _pythia_copy(tmp_path, lambda df: df.drop(columns=["value"]))
    monkeypatch.chdir(tmp_path)
    code, _, stderr = run_cli("analyze", "source=pythia", f"path={d}", f"out={tmp_path / 'out'}")
    assert code == 2, stderr[-2000:]
    err = stderr.strip().splitlines()
    assert len(err) == 1 and message in err[0] and "Traceback" not in stderr
    assert not (tmp_path / "out").exists()


def test_record_with_a_step_twice_is_skipped_not_the_sweep(tmp_path):
    """A structural fault in one record (two entries for one step) skips that record with a
    warning naming it; the other runs are still read."""
    recs = sweep_records(n_sizes=3, mixes=("toy",), n_ckpt=2, tasks=("predictable",))
    cks = recs[0]["checkpoints"]
    cks[1]["step"] = cks[0]["step"]
    write_records(tmp_path, recs)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", AnalysisWarning)
        t = load_records(tmp_path)
    msgs = [str(w.message) for w in caught]
    assert any("r00" in m and "appears twice" in m for m in msgs), msgs
    assert set(t["run_id"]) == {"r01", "r02"}
