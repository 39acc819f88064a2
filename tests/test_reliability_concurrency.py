"""Reliability (issue 6): real concurrent processes sharing a sweep, a run, task data, a record."""

from __future__ import annotations

import json
import multiprocessing as mp
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, compose, tiny_overrides
from tests.fault_injection import child_env


def _launch(overrides: list[str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "harness.cli", "run", *overrides],
        cwd=ROOT,
        env=child_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(procs: list[subprocess.Popen]) -> list[str]:
    errs = []
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-3000:]
        errs.append(err)
    return errs


def _no_temporaries(root: Path) -> None:
    left = [
        p for p in root.rglob(".*") if p.name not in (".lock",) and not p.name.endswith(".lock")
    ]
    assert not left, left


@pytest.mark.slow
def test_two_runs_of_one_sweep_write_concurrently(shared_cache, tmp_path):
    """Two SLURM-array-like processes, different runs, same out_root: both records complete."""
    base = tiny_overrides(shared_cache, tmp_path) + ["train.num_threads=1"]
    errs = _finish([_launch(base + ["seed=0"]), _launch(base + ["seed=1"])])
    runs = sorted((tmp_path / "runs").iterdir())
    assert len(runs) == 2, errs
    for run in runs:
        rec = json.loads((run / "record.json").read_text())
        assert rec["status"] == "complete" and len(rec["checkpoints"]) == 2
    assert {json.loads((r / "record.json").read_text())["seed"] for r in runs} == {0, 1}
    _no_temporaries(tmp_path)


@pytest.mark.slow
def test_same_run_launched_twice_trains_once(shared_cache, tmp_path):
    """The per-run lock: the second process waits, then skips the completed run."""
    args = tiny_overrides(shared_cache, tmp_path) + ["train.num_threads=1", "train.tokens=65536"]
    errs = _finish([_launch(args), _launch(args)])
    (run,) = list((tmp_path / "runs").iterdir())
    trained = [e for e in errs if f"run {run.name}:" in e]
    skipped = [e for e in errs if f"skip {run.name}" in e]
    assert len(trained) == 1 and len(skipped) == 1, errs
    rec = json.loads((run / "record.json").read_text())
    assert rec["status"] == "complete"
    steps = [json.loads(ln)["step"] for ln in (run / "train_log.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps)) and steps[-1] == rec["compute"]["steps"]
    _no_temporaries(tmp_path)


def _toy_tasks(cache: str) -> tuple[str, str]:
    from harness.config import run_spec
    from harness.data_prep import toy_task_dir

    spec = run_spec(compose(tiny_overrides(Path(cache), Path(cache) / "o", tasks=True)))
    folder, _ = toy_task_dir(spec)
    return str(folder), (folder / "index.json").read_text()


def test_concurrent_toy_task_builds_agree(tmp_path):
    with mp.get_context("spawn").Pool(2) as pool:
        results = pool.map(_toy_tasks, [str(tmp_path)] * 2)
    assert results[0] == results[1]
    entries = list((tmp_path / "toytasks").iterdir())
    assert [str(p) for p in entries if p.is_dir()] == [
        results[0][0]
    ]  # one folder, no .build.* left
    assert all(p.is_dir() or p.name.endswith(".lock") for p in entries)


def _hammer(args: tuple[str, int]) -> int:
    from common.atomic import write_json  # what harness.store.write_record writes records with

    path, who = args
    for i in range(150):
        write_json(
            Path(path) / "record.json",
            {"status": "running", "writer": who, "i": i, "pad": "x" * (2000 * (who + 1))},
        )
    return who


def test_concurrent_record_writes_are_never_torn(tmp_path):
    """Two writers replace one record.json while this process reads it: every read parses."""
    from common.atomic import write_json

    write_json(tmp_path / "record.json", {"status": "running", "writer": -1, "i": 0, "pad": ""})
    reads = 0
    with mp.get_context("spawn").Pool(2) as pool:
        pending = pool.map_async(_hammer, [(str(tmp_path), 0), (str(tmp_path), 1)])
        while not pending.ready():
            rec = json.loads((tmp_path / "record.json").read_text())
            assert len(rec["pad"]) in (0, 2000, 4000)
            reads += 1
        assert sorted(pending.get()) == [0, 1]
    assert reads > 0
    assert not [p for p in tmp_path.iterdir() if p.name != "record.json"]
