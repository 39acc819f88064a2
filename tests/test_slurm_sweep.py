"""Sweeps on a real SLURM cluster through the Hydra submitit launcher: submit, requeue,
resume, status. Skipped with a reason when no cluster answers (slurm/local_cluster.sh)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.config import run_spec
from harness.runner import execute
from tests.conftest import compose, tiny_overrides
from tests.conftest import harness_process as harness
from tests.fault_injection import child_env
from tests.slurm_util import slurm_available

ok, reason = slurm_available()
pytestmark = [pytest.mark.slurm, pytest.mark.slow, pytest.mark.skipif(not ok, reason=reason)]

ENV = child_env()  # what harness_process gives its processes, for the ones started here


def records(out: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(out.glob("runs/*/record.json"))]


def test_three_run_sweep_through_the_launcher(tmp_path, shared_cache):
    out = tmp_path / "out"
    ov = [a for a in tiny_overrides(shared_cache, out) if not a.startswith("model=")]
    res = harness(
        "run",
        "-m",
        "hydra/launcher=slurm",
        "+cluster=local",
        "model=cpu-50k",
        "seed=0,1,2",
        "sweep_name=slurm3",
        *ov,
        cwd=tmp_path,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    recs = records(out)
    assert len(recs) == 3 and all(r["status"] == "complete" for r in recs)
    assert sorted(r["seed"] for r in recs) == [0, 1, 2]
    assert all(r["slurm_job_id"] for r in recs)
    status = harness("status", f"root={out}", cwd=tmp_path, timeout=60)
    assert status.returncode == 0 and "3 complete" in status.stdout


def _wait(predicate, timeout: float, what: str):
    t0 = time.time()
    while time.time() - t0 < timeout:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def test_requeued_run_resumes_to_the_uninterrupted_result(tmp_path, shared_cache):
    ov = tiny_overrides(shared_cache, tmp_path / "ref") + [
        "model=cpu-100k",
        "train.tokens=200000",  # 390 steps, requeued after ~20; trained here and again on SLURM
        "train.checkpoint_every=5",
        "train.num_threads=1",
        "eval.num_checkpoints=2",
        "sweep_name=requeue",
    ]
    ref = execute(run_spec(compose(ov)), tmp_path / "ref")
    ref_rec = json.loads((ref.path / "record.json").read_text())

    out = tmp_path / "slurm"
    sweep_ov = [a.replace(str(tmp_path / "ref"), str(out)) for a in ov]
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "harness.cli",
            "run",
            "-m",
            "hydra/launcher=slurm",
            "+cluster=local",
            *sweep_ov,
        ],
        cwd=tmp_path,
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        run_dir = out / "runs" / ref.run_id
        log = run_dir / "train_log.jsonl"
        _wait(
            lambda: log.exists() and len(log.read_text().splitlines()) >= 10,
            120,
            "training to start",
        )
        rec = json.loads((run_dir / "record.json").read_text())
        job = rec["slurm_job_id"]
        assert (
            subprocess.run(["scontrol", "requeue", job], capture_output=True, timeout=30).returncode
            == 0
        )
        output, _ = proc.communicate(timeout=300)
    finally:
        proc.kill()
    assert proc.returncode == 0, output[-3000:]
    rec = json.loads((run_dir / "record.json").read_text())
    assert rec["status"] == "complete" and rec["run_id"] == ref.run_id
    assert rec["compute"]["resumed_from_step"] is not None  # it really was interrupted
    final, ref_final = rec["checkpoints"][-1]["val_loss"], ref_rec["checkpoints"][-1]["val_loss"]
    for name, value in ref_final.items():
        assert abs(final[name] - value) < 1e-5, (name, final[name], value)


def test_unknown_partition_is_a_clear_error(tmp_path, shared_cache):
    out = tmp_path / "out"
    res = harness(
        "run",
        "-m",
        "hydra/launcher=slurm",
        "+cluster=local",
        "hydra.launcher.partition=nosuch",
        *tiny_overrides(shared_cache, out),
        cwd=tmp_path,
        timeout=120,
    )
    assert res.returncode == 2
    assert (
        res.stderr.strip().splitlines()[-1]
        == "error: hydra.launcher.partition: unknown partition 'nosuch' (known: debug)"
    )
    assert not records(out)


def test_unreachable_controller_is_a_clear_error(tmp_path, shared_cache):
    conf = tmp_path / "slurm.conf"
    lines = [
        ln
        for ln in Path("/etc/slurm/slurm.conf").read_text().splitlines()
        if not ln.startswith("SlurmctldPort")
    ]
    conf.write_text("\n".join(lines + ["SlurmctldPort=9"]) + "\n")  # nothing listens there
    t0 = time.time()
    res = harness(
        "run",
        "-m",
        "hydra/launcher=slurm",
        "+cluster=local",
        *tiny_overrides(shared_cache, tmp_path / "out"),
        cwd=tmp_path,
        env={"SLURM_CONF": str(conf)},
        timeout=120,
    )
    assert res.returncode == 2 and time.time() - t0 < 60
    assert "error: hydra/launcher=slurm: no SLURM controller answers" in res.stderr


def test_two_slurm_tasks_train_one_run_data_parallel(tmp_path, shared_cache):
    """tasks_per_node=2: srun starts two ranks of one run (gloo on CPU); one record, world size
    2, the same losses as one process on the same global batch."""
    ov = tiny_overrides(shared_cache, tmp_path / "one") + ["train.num_threads=1"]
    ref = execute(run_spec(compose(ov)), tmp_path / "one")
    out = tmp_path / "two"
    two = [a.replace(str(tmp_path / "one"), str(out)) for a in ov]
    res = harness(
        "run",
        "-m",
        "hydra/launcher=slurm",
        "+cluster=local",
        "hydra.launcher.tasks_per_node=2",
        *two,
        cwd=tmp_path,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    (rec,) = records(out)
    assert (
        rec["status"] == "complete"
        and rec["compute"]["world_size"] == 2
        and rec["run_id"] == ref.run_id
    )
    ref_rec = json.loads((ref.path / "record.json").read_text())
    for a, b in zip(ref_rec["checkpoints"], rec["checkpoints"], strict=True):
        assert a["val_loss"] == pytest.approx(b["val_loss"], abs=1e-5)


def test_cancel_stops_a_sweeps_jobs(tmp_path, shared_cache):
    out = tmp_path / "out"
    ov = tiny_overrides(shared_cache, out) + ["train.tokens=5000000", "model=cpu-400k"]
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "harness.cli",
            "run",
            "-m",
            "hydra/launcher=slurm",
            "+cluster=local",
            *ov,
        ],
        cwd=tmp_path,
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait(lambda: records(out) and records(out)[0].get("slurm_job_id"), 120, "the job to start")
        job = records(out)[0]["slurm_job_id"]
        res = harness("cancel", f"root={out}", cwd=tmp_path, timeout=60)
        assert res.returncode == 0 and f"cancelled 1 job(s): {job}" in res.stdout
        _wait(
            lambda: (
                job
                not in subprocess.run(
                    ["squeue", "-h", "-o", "%i"], capture_output=True, text=True
                ).stdout.split()
            ),
            60,
            "the job to leave the queue",
        )
    finally:
        proc.kill()


def _array_tasks(array_id: str) -> list[str]:
    """The task ids SLURM holds for an array job (one `scontrol show job` line per task)."""
    res = subprocess.run(
        ["scontrol", "show", "job", "-o", array_id], capture_output=True, text=True, timeout=30
    )
    assert res.returncode == 0, res.stderr
    return [ln.split("JobId=")[1].split()[0] for ln in res.stdout.splitlines() if "JobId=" in ln]


def test_relaunch_submits_only_the_pending_runs(tmp_path, shared_cache):
    """Two of three runs complete: the relaunch's array job has one task, its id is printed at
    submission, --no-wait returns before it ends; a third launch submits nothing."""
    out = tmp_path / "out"
    ov = [a for a in tiny_overrides(shared_cache, out) if not a.startswith("model=")]
    ov += ["model=cpu-50k", "sweep_name=pending"]
    for seed in (0, 1):
        execute(run_spec(compose([*ov, f"seed={seed}"])), out)
    launch = ["run", "-m", "hydra/launcher=slurm", "+cluster=local", *ov, "seed=0,1,2"]
    res = harness(launch[0], "--no-wait", *launch[1:], cwd=tmp_path, timeout=120)
    assert res.returncode == 0, res.stderr[-3000:]
    said = re.search(
        r"submitted array job (\d+): 1 task\(s\), 2 complete run\(s\) not submitted", res.stdout
    )
    assert said, res.stdout[-3000:]
    assert len(_array_tasks(said[1])) == 1
    assert "seed=2" in res.stdout and "seed=0 " not in res.stdout
    _wait(
        lambda: len(records(out)) == 3 and all(r["status"] == "complete" for r in records(out)),
        180,
        "the pending run",
    )
    assert {r["seed"]: bool(r["slurm_job_id"]) for r in records(out)} == {
        0: False,
        1: False,
        2: True,
    }
    again = harness(*launch, cwd=tmp_path, timeout=120)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "nothing to submit: all 3 run(s) are complete" in again.stdout
