"""Issue 25.4: one protocol per record. Each checkpoint entry stores the protocol (setup, shots,
items, eval.limit) its tasks were scored with; a resume or a backfill under another protocol
keeps each entry's own and says so, `tasks_meta` changes only for tasks scored, and the
analysis never pools two protocols as one."""

from __future__ import annotations

import copy
import json
import shutil
import warnings
from pathlib import Path

import pytest

from analysis.errors import AnalysisWarning
from analysis.ingest.records import load_records
from common.errors import RecordError
from common.record import RunRecord
from harness.store import read_record, write_record
from tests.conftest import compose, tiny_overrides
from tests.test_record import SCHEMA1_COMPLETE
from train.checkpoint import checkpoint_steps

TASKS = ["toy_recall", "toy_recall@letters", "toy_arith"]
# 32 steps; tasks scored at steps 8, 16 and 32 on at most 10 of each task's 24 items
EXTRA = ["eval.num_checkpoints=3", "train.checkpoint_every=4"]


def _spec(cache: Path, out: Path, extra: list[str]):
    from harness.config import run_spec

    return run_spec(compose(tiny_overrides(cache, out, tasks=True) + EXTRA + extra))


@pytest.fixture(scope="module")
def limited(tmp_path_factory, shared_cache):
    """A finished tiny run whose tasks were scored with eval.limit=10."""
    from harness.runner import execute

    out = tmp_path_factory.mktemp("limited")
    outcome = execute(_spec(shared_cache, out, ["eval.limit=10"]), out)
    assert outcome.status == "complete"
    return out, outcome.run_id


def _cut_at(limited, tmp_path: Path, step: int) -> tuple[Path, Path]:
    """A copy of the run as a kill after `step` leaves it: later checkpoints and entries gone."""
    out, rid = limited
    shutil.copytree(out, tmp_path / "sweep")
    run = tmp_path / "sweep" / "runs" / rid
    for s in checkpoint_steps(run / "checkpoints"):
        if s > step:
            shutil.rmtree(run / "checkpoints" / f"step_{s}")
    rec = read_record(run)
    rec.status = "interrupted"
    rec.keep_until(step)
    write_record(run, rec)
    return tmp_path / "sweep", run


def _raw(run: Path) -> dict:
    return json.loads((run / "record.json").read_text())


def _load(root: Path) -> tuple:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        table = load_records(root)
    return table, [str(w.message) for w in caught if issubclass(w.category, AnalysisWarning)]


@pytest.mark.slow
def test_resume_under_another_limit_keeps_each_entrys_protocol_and_analysis_keeps_one(
    limited, shared_cache, tmp_path, capsys
):
    from harness.runner import execute

    root, run = _cut_at(limited, tmp_path, 16)
    assert execute(_spec(shared_cache, root, ["eval.limit=20"]), root).status == "complete"
    assert "resumes under another evaluation protocol: toy_recall: step(s) [8, 16]" in (
        capsys.readouterr().err
    )
    rec = _raw(run)
    for entry in rec["checkpoints"]:
        limit = 10 if entry["step"] <= 16 else 20
        for task in TASKS:
            assert entry["protocol"][task] == {
                "setup": task.partition("@")[2],
                "num_fewshot": 0,
                "n_samples": limit,
                "limit": limit,
            }, (entry["step"], task)
    assert rec["tasks_meta"]["toy_recall"]["n_samples"] == 20  # the latest scoring's
    table, said = _load(root)
    recall = table[table["name"] == "toy_recall"]
    # the two limit-10 points are kept, the limit-20 final point is left out, and said
    assert sorted(recall["step"].unique()) == [8, 16] and set(recall["n_samples"]) == {10.0}
    assert any(
        f"run {run.name}: toy_recall at step(s) [32]" in m and "never pooled" in m for m in said
    ), said


@pytest.mark.slow
def test_resume_with_fewer_tasks_keeps_the_scored_tasks_metadata(limited, shared_cache, tmp_path):
    from harness.runner import execute

    root, run = _cut_at(limited, tmp_path, 16)
    spec = _spec(shared_cache, root, ["eval.limit=10", "eval.tasks=[toy_recall]"])
    assert execute(spec, root).status == "complete"
    rec = _raw(run)
    assert set(rec["tasks_meta"]) == set(TASKS)  # toy_arith was scored at steps 8 and 16
    assert rec["tasks_meta"]["toy_arith"]["n_samples"] == 10
    assert set(rec["checkpoints"][-1]["tasks"]) == {"toy_recall"}
    table, said = _load(root)
    assert sorted(table[table["name"] == "toy_arith"]["step"].unique()) == [8, 16]
    assert set(table[table["name"] == "toy_arith"]["n_samples"]) == {10.0}
    assert not [m for m in said if "protocol" in m], said


@pytest.mark.slow
def test_backfill_changes_only_the_tasks_it_scores(limited, shared_cache, tmp_path, run_cli):
    out, rid = limited
    root = tmp_path / "sweep"
    shutil.copytree(out, root)
    run = root / "runs" / rid
    keep = ("sources.", "tokenizer.", "eval.n_per")
    args = [f"root={root}", f"cache_dir={shared_cache}", "eval=toy", "eval.limit=5"]
    args += [a for a in tiny_overrides(shared_cache, root, tasks=True) if a.startswith(keep)]
    code, _, err = run_cli("eval", *args, f"eval.tasks=[{','.join(TASKS)},toy_twohop]")
    assert code == 0, err
    rec = _raw(run)
    assert {t: m["n_samples"] for t, m in rec["tasks_meta"].items()} == {
        "toy_recall": 10,
        "toy_recall@letters": 10,
        "toy_arith": 10,
        "toy_twohop": 5,
    }
    for entry in rec["checkpoints"]:
        assert entry["protocol"]["toy_recall"]["limit"] == 10
        assert entry["protocol"]["toy_twohop"] == {
            "setup": "",
            "num_fewshot": 0,
            "n_samples": 5,
            "limit": 5,
        }


# -- the record's shape and the analysis ingest, without training ---------------------------


def _schema2(limit=None) -> dict:
    raw = copy.deepcopy(SCHEMA1_COMPLETE)
    raw["schema_version"] = 2
    raw["config"]["eval"] = {"limit": limit}
    return raw


def test_schema2_record_reads_with_the_protocol_it_claimed():
    rec = RunRecord.from_json(_schema2(limit=50))
    assert rec.final.protocol == {
        "toy_recall": {"setup": "", "num_fewshot": 0, "n_samples": 200, "limit": 50}
    }
    again = RunRecord.from_json(rec.to_json())  # written back as schema 3, strictly valid
    assert again == rec and rec.to_json()["schema_version"] == 3


def test_schema3_entry_without_protocol_is_refused_by_name():
    raw = RunRecord.from_json(_schema2()).to_json()
    del raw["checkpoints"][0]["protocol"]
    with pytest.raises(RecordError, match=r"checkpoints\[0\].*protocol"):
        RunRecord.from_json(raw)
    raw = RunRecord.from_json(_schema2()).to_json()
    raw["checkpoints"][0]["protocol"]["toy_recall"]["n_samples"] = "200"
    with pytest.raises(RecordError, match="protocol.toy_recall.n_samples"):
        RunRecord.from_json(raw)


def _write_run(root: Path, rid: str, n_samples: list[int]) -> None:
    """A complete schema-3 run with toy_recall scored at steps 10, 20, ... on `n_samples`."""
    raw = RunRecord.from_json(_schema2()).to_json()
    raw["run_id"] = rid
    entry = raw["checkpoints"][0]
    raw["checkpoints"] = []
    for i, n in enumerate(n_samples):
        e = copy.deepcopy(entry)
        e["step"] = e["tokens"] = 10 * (i + 1)
        e["protocol"]["toy_recall"].update(n_samples=n, limit=n)
        raw["checkpoints"].append(e)
    (root / "runs" / rid).mkdir(parents=True)
    (root / "runs" / rid / "record.json").write_text(json.dumps(raw))


def test_analysis_never_pools_two_protocols(tmp_path):
    _write_run(tmp_path, "aaaa", [100, 100, 100])
    _write_run(tmp_path, "bbbb", [100, 20, 100])
    _write_run(tmp_path, "cccc", [20, 20])
    table, said = _load(tmp_path)
    tasks = table[table["kind"] == "task"]
    assert set(tasks["n_samples"]) == {100.0}
    kept = sorted(zip(tasks["run_id"], tasks["step"], strict=True))
    assert sorted(set(kept)) == [("aaaa", 10), ("aaaa", 20), ("aaaa", 30)] + [
        ("bbbb", 10),
        ("bbbb", 30),
    ]
    assert [m.split(" was ")[0] for m in said] == [
        "run bbbb: toy_recall at step(s) [20]",
        "run cccc: toy_recall at step(s) [10, 20]",
    ]
    assert "n_samples 20" in said[0] and "n_samples 100" in said[0]
    # the validation losses of every point stay: only task points are protocol-bound
    assert len(table[table["kind"] == "val_loss"]) == 8


def test_analysis_of_one_protocol_drops_nothing(tmp_path):
    _write_run(tmp_path, "aaaa", [100, 100])
    _write_run(tmp_path, "bbbb", [100])
    table, said = _load(tmp_path)
    assert len(table[table["kind"] == "task"]) == 3 and not said  # acc at 3 points
