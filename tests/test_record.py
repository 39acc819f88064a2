"""record.json through `RunRecord`: every record a sweep writes round-trips exactly, schema 1
records still read, and a renamed or mistyped field fails where it is read, by name."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from common.errors import RecordError
from common.record import SCHEMA_VERSION, Compute, DataInfo, RunRecord
from harness.store import read_record, write_record
from tests.conftest import ROOT, tiny_overrides

# A complete record as the schema-1 harness (commit 279ae06) wrote it, trimmed to one checkpoint.
SCHEMA1_COMPLETE = {
    "schema_version": 1,
    "run_id": "3e1b5e871760",
    "sweep": "default",
    "status": "complete",
    "failure": None,
    "config": {"model": {"name": "cpu-50k", "max_seq_len": 128}},
    "git_sha": "279ae06",
    "seed": 0,
    "host": "box",
    "slurm_job_id": None,
    "model": {
        "size": "cpu-50k",
        "n_params": 62912,
        "n_params_nonembedding": 29632,
        "d_model": 32,
        "n_layers": 2,
        "n_heads": 2,
        "vocab_size": 1024,
        "seq_len": 128,
    },
    "data": {"mix": "toy", "weights": {"toyworld": 1.0}, "train_tokens": 120832},
    "compute": {
        "flops": 4.56e10,
        "flops_convention": "6ND",
        "tokens": 120832,
        "steps": 59,
        "wall_seconds": 30.1,
        "train_seconds": 12.0,
        "tokens_per_second": 10000.0,
        "device": "cpu",
        "torch_threads": 2,
        "resumed_from_step": None,
        "peak_memory_bytes": 123,
        "peak_memory_kind": "cpu_max_rss",
        "world_size": 1,
    },
    "tasks_meta": {
        "toy_recall": {
            "name": "toy_recall",
            "task": "toy_recall",
            "setup": "",
            "chance": 0.25,
            "n_samples": 200,
            "num_fewshot": 0,
        }
    },
    "checkpoints": [
        {
            "step": 59,
            "tokens": 120832,
            "flops": 4.56e10,
            "val_loss": {"toy": 3.1},
            "tasks": {"toy_recall": {"acc": 0.3, "acc_stderr": 0.03}},
        }
    ],
}


def roundtrip_all(root: Path) -> int:
    """Check every record.json under `root/runs`: it parses, and writing the parsed record
    back gives the same JSON (a record of an older schema: the upgraded record reads back the
    same). Returns how many were checked."""
    paths = sorted(Path(root).glob("runs/*/record.json"))
    for path in paths:
        raw = json.loads(path.read_text())
        rec = RunRecord.from_json(raw)
        if raw.get("schema_version", 1) < SCHEMA_VERSION:
            assert RunRecord.from_json(rec.to_json()) == rec, path
            continue
        assert rec.to_json() == raw, path
        assert json.dumps(rec.to_json(), indent=2) + "\n" == path.read_text(), path
    return len(paths)


@pytest.mark.slow
def test_every_record_of_a_sweep_roundtrips(shared_cache, tmp_path, run_cli):
    args = [
        o for o in tiny_overrides(shared_cache, tmp_path, tasks=True) if not o.startswith("model=")
    ]
    code, _, err = run_cli("run", "-m", *args, "model=cpu-50k", "seed=0,1")
    assert code == 0, err
    assert roundtrip_all(tmp_path) == 2
    rec = read_record(next((tmp_path / "runs").iterdir()))
    assert rec.is_complete and rec.schema_version == SCHEMA_VERSION and rec.compute.tokens > 0
    assert rec.final.tasks["toy_recall@letters"]["acc"] >= 0 and "toy_arith" in rec.tasks_meta
    # a running record (compute not yet known) round-trips too
    running = RunRecord.from_json(rec.to_json())
    running.status, running.compute = "running", None
    assert RunRecord.from_json(running.to_json()) == running


@pytest.mark.skipif(
    not (ROOT / "outputs" / "demo" / "runs").is_dir(),
    reason="no demo outputs (run `make demo` first)",
)
def test_demo_records_roundtrip():
    assert roundtrip_all(ROOT / "outputs" / "demo") > 0


def test_schema1_record_reads_and_upgrades(tmp_path):
    rec = RunRecord.from_json(SCHEMA1_COMPLETE)
    assert rec.model.n_params == 62912 and rec.compute.world_size == 1
    assert rec.final.val_loss == {"toy": 3.1} and rec.config_block("model")["max_seq_len"] == 128
    (tmp_path / "r").mkdir()
    write_record(tmp_path / "r", rec)
    written = json.loads((tmp_path / "r" / "record.json").read_text())
    assert written["schema_version"] == SCHEMA_VERSION
    # schema 3 adds each entry's protocol: the one the record claimed (tasks_meta, no limit)
    upgraded = copy.deepcopy(SCHEMA1_COMPLETE)
    upgraded["checkpoints"][0]["protocol"] = {
        "toy_recall": {"setup": "", "num_fewshot": 0, "n_samples": 200, "limit": None}
    }
    # the keys added to compute since (warm-up timing) are written, unknown
    assert {k: written["compute"].pop(k) for k in Compute.ADDED} == dict.fromkeys(Compute.ADDED)
    # and the keys added to data (tokens available, epochs per source)
    assert {k: written["data"].pop(k) for k in DataInfo.ADDED} == dict.fromkeys(DataInfo.ADDED)
    assert {k: v for k, v in written.items() if k != "schema_version"} == {
        k: v for k, v in upgraded.items() if k != "schema_version"
    }
    assert read_record(tmp_path / "r") == rec


def test_schema1_running_record_with_missing_keys_reads():
    """Early schema-1 records: compute {} while running, no host/slurm/tasks_meta keys."""
    raw = copy.deepcopy(SCHEMA1_COMPLETE)
    raw.update(status="running", compute={})
    for key in ("host", "slurm_job_id", "tasks_meta"):
        del raw[key]
    del raw["model"]["d_model"]
    rec = RunRecord.from_json(raw)
    assert (
        rec.compute is None
        and rec.host is None
        and rec.tasks_meta == {}
        and rec.model.d_model is None
    )
    assert RunRecord.from_json(rec.to_json()) == rec  # the upgraded record is strictly valid


def test_schema2_record_written_before_the_added_compute_keys_reads():
    raw = _current()
    for key in Compute.ADDED:
        del raw["compute"][key]
    rec = RunRecord.from_json(raw)
    assert rec.compute.warmup_seconds is None and rec.compute.tokens_per_second == 10000.0
    raw["compute"]["warmup_seconds"] = "slow"  # present, it is type-checked like the rest
    with pytest.raises(RecordError, match="compute.warmup_seconds"):
        RunRecord.from_json(raw)


def _current() -> dict:
    return RunRecord.from_json(SCHEMA1_COMPLETE).to_json()


@pytest.mark.parametrize(
    "mutate, named",
    [
        (
            lambda r: r.update(checkpoint=r.pop("checkpoints")),
            "checkpoint",
        ),  # renamed top-level key
        (lambda r: r["model"].update(params=r["model"].pop("n_params")), "n_params"),
        (lambda r: r["compute"].pop("world_size"), "world_size"),
        (
            lambda r: r["checkpoints"][0].update(val_losses=r["checkpoints"][0].pop("val_loss")),
            "val_loss",
        ),
        (lambda r: r["checkpoints"][0].update(step="59"), "checkpoints[0].step"),
        (lambda r: r["checkpoints"][0]["tasks"]["toy_recall"].update(acc="high"), "toy_recall.acc"),
        (lambda r: r.update(status="done"), "status"),
        (lambda r: r.update(schema_version=SCHEMA_VERSION + 1), "schema_version"),
    ],
)
def test_current_schema_rejects_bad_fields_by_name(mutate, named):
    raw = _current()
    RunRecord.from_json(raw)  # valid before the change
    mutate(raw)
    with pytest.raises(RecordError, match=named.replace("[", r"\[").replace("]", r"\]")):
        RunRecord.from_json(raw)


def test_store_treats_an_invalid_record_as_not_done(tmp_path, capsys):
    raw = _current()
    raw["model"]["n_params"] = "many"
    (tmp_path / "record.json").write_text(json.dumps(raw))
    assert read_record(tmp_path) is None
    assert "model.n_params" in capsys.readouterr().err


def test_checkpoint_entries_replace_from_their_step():
    rec = RunRecord.from_json(SCHEMA1_COMPLETE)
    first = copy.deepcopy(rec.final)
    first.step = 10
    rec.put_checkpoint(first)
    assert [c.step for c in rec.checkpoints] == [10]  # the step-59 entry was after it: replaced
    rec.checkpoints.append(copy.deepcopy(first))
    rec.checkpoints[-1].step = 20
    rec.keep_until(15)
    assert [c.step for c in rec.checkpoints] == [10]
