"""Reliability (issue 6): SIGKILL at random points, disk full mid-checkpoint, divergence in a
sweep. Exact resume means the relaunched run ends with the uninterrupted run's record."""

from __future__ import annotations

import errno
import json
import shutil

import pytest

from harness.config import run_spec
from harness.runner import execute
from tests.conftest import compose, tiny_overrides
from tests.fault_injection import inject, record_differences
from train.checkpoint import checkpoint_steps, latest_complete

pytestmark = pytest.mark.slow  # each test kills and relaunches real runs


@pytest.fixture(autouse=True)
def fresh_cli_failures(monkeypatch):
    """harness.cli keeps failed runs in a module-level list that outlives one in-process call."""
    import harness.cli

    monkeypatch.setattr(harness.cli, "_FAILED", [])


def make_spec(cache, out, extra=()):
    return run_spec(compose(tiny_overrides(cache, out) + list(extra)))


def read(path):
    return json.loads((path / "record.json").read_text())


def test_sigkill_at_five_random_points_then_relaunch_equals_uninterrupted(shared_cache, tmp_path):
    """tests/fault_injection.py: 5 seeded SIGKILLs in turn, relaunching each time."""
    res = inject(tmp_path, kills=5, seed=0, steps=300, cache=shared_cache)
    assert sum(e.startswith("killed") for e in res.events) == 5, res.events
    assert not res.differences, "\n".join(res.differences)


@pytest.fixture
def reference(finished_ckpt4):
    """An uninterrupted tiny run (32 steps, checkpoint every 4), trained once per session;
    tests damage copies of it."""
    return finished_ckpt4


def test_disk_full_during_checkpoint_keeps_previous_and_relaunch_resumes(
    reference, shared_cache, tmp_path, run_cli, monkeypatch
):
    import train.checkpoint as ckpt_mod

    spec, ref = reference
    real_save = ckpt_mod.torch.save
    calls = {"n": 0}

    def save_until_disk_full(obj, f, *a, **kw):
        calls["n"] += 1
        if calls["n"] == 2:  # the second checkpoint: the disk fills mid-save
            with open(f, "wb") as fh:
                fh.write(b"\0" * 100)  # a partial file, as a real ENOSPC leaves one
            raise OSError(errno.ENOSPC, "No space left on device", str(f))
        return real_save(obj, f, *a, **kw)

    monkeypatch.setattr(ckpt_mod.torch, "save", save_until_disk_full)
    out = tmp_path / "full"
    code, _, err = run_cli("run", *tiny_overrides(shared_cache, out), "train.checkpoint_every=4")
    monkeypatch.setattr(ckpt_mod.torch, "save", real_save)
    import harness.cli

    harness.cli._FAILED.clear()  # see fresh_cli_failures
    assert code == 1, err
    assert "disk full" in err and "1 run(s) failed" in err
    run = out / "runs" / ref.run_id
    rec = read(run)
    assert rec["status"] == "failed" and rec["failure"].startswith("disk full:")
    root = run / "checkpoints"
    # the failed save left nothing behind: no step_8, no temporary directory
    assert checkpoint_steps(root) == [4]
    assert sorted(p.name for p in root.iterdir()) == ["step_4"]
    assert latest_complete(root) == root / "step_4"

    code, _, err = run_cli("run", *tiny_overrides(shared_cache, out), "train.checkpoint_every=4")
    assert code == 0, err
    rec = read(run)
    assert rec["status"] == "complete" and rec["failure"] is None
    assert rec["compute"]["resumed_from_step"] == 4
    assert not record_differences(ref.path, run)


def test_other_oserror_is_not_swallowed(reference, shared_cache, tmp_path, monkeypatch):
    """Only a full disk becomes a failed run; an unexpected I/O error still surfaces."""
    import train.checkpoint as ckpt_mod

    def broken(*a, **kw):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(ckpt_mod.torch, "save", broken)
    spec, _ = reference
    with pytest.raises(OSError, match="Input/output error"):
        execute(spec, tmp_path / "eio")


def test_corrupt_record_with_all_checkpoints_present_rebuilds_the_record(reference, tmp_path):
    """A truncated record.json beside a finished run's checkpoints: the relaunch re-scores the
    kept eval checkpoints (it used to write a 'complete' record with no checkpoints, then crash)."""
    spec, ref = reference
    copy = tmp_path / "copy"
    shutil.copytree(ref.path.parent.parent, copy)
    run = copy / "runs" / ref.run_id
    (run / "record.json").write_text('{"status": "compl')
    again = execute(spec, copy)
    assert again.status == "complete"
    assert not record_differences(ref.path, run)


def test_sigkill_mid_run_with_corrupt_record_keeps_early_eval_points(reference, tmp_path):
    """Killed after the first eval point, then the record lost: the resumed run's record still
    holds the first point (re-scored from its kept checkpoint)."""
    spec, ref = reference
    work = tmp_path / "work"
    shutil.copytree(ref.path.parent.parent, work)
    run = work / "runs" / ref.run_id
    root = run / "checkpoints"
    # state as after a kill at step ~21: checkpoints up to 20
    for s in checkpoint_steps(root):
        if s > 20:
            shutil.rmtree(root / f"step_{s}")
    assert checkpoint_steps(root) == [4, 8, 12, 16, 20]
    (run / "record.json").write_bytes(b"\xff\xfe garbage")
    again = execute(spec, work)
    assert again.status == "complete"
    assert not record_differences(ref.path, run)


def test_resume_from_checkpoint_between_log_steps_is_exact(shared_cache, tmp_path):
    extra = ["train.checkpoint_every=3", "train.log_every=2"]
    spec = make_spec(shared_cache, tmp_path / "ref", extra)
    ref = execute(spec, tmp_path / "ref")
    work = tmp_path / "work"
    shutil.copytree(tmp_path / "ref", work)
    run = work / "runs" / ref.run_id
    root = run / "checkpoints"
    for s in checkpoint_steps(root):  # as after a SIGKILL at step 10: newest checkpoint is 9
        if s > 9:
            shutil.rmtree(root / f"step_{s}")
    rec = read(run)
    rec.update(status="running", checkpoints=[c for c in rec["checkpoints"] if c["step"] <= 9])
    (run / "record.json").write_text(json.dumps(rec))
    execute(spec, work)
    assert not record_differences(ref.path, run)


def test_divergence_fails_one_run_and_the_sweep_goes_on(shared_cache, tmp_path, run_cli):
    args = tiny_overrides(shared_cache, tmp_path) + [
        "train.grad_clip=1e9",
        "train.spike_factor=1.5",
        "train.warmup_frac=0",
    ]
    code, _, err = run_cli("run", "-m", *args, "train.lr=50.0,0.004")
    assert code == 1 and "1 run(s) failed" in err and "diverged" not in err.split("failed:")[0]
    records = [read(p) for p in sorted((tmp_path / "runs").iterdir())]
    assert sorted(r["status"] for r in records) == ["complete", "failed"]
    failed = next(r for r in records if r["status"] == "failed")
    assert failed["failure"].startswith("diverged: loss")
    assert failed["config"]["train"]["lr"] == 50.0
