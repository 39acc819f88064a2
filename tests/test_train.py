"""The training path: a tiny run end to end, exact resume, checkpoints, divergence."""

from __future__ import annotations

import json
import os
import signal

import pytest

from harness.config import run_spec
from harness.run_setup import eval_schedule
from harness.runner import execute
from harness.tracking import Tracker
from tests.conftest import compose, tiny_overrides
from train.checkpoint import checkpoint_steps, latest_complete, verify_checkpoint
from train.loop import Diverged, Preempted, _check_divergence


def make_spec(shared_cache, out, extra=()):
    return run_spec(compose(tiny_overrides(shared_cache, out) + list(extra)))


class SignalAt(Tracker):
    """Sends this process SIGTERM after logging `step`, as SLURM does before a timeout."""

    def __init__(self, step: int):
        self.step = step

    def log_step(self, row):
        if row["step"] == self.step:
            os.kill(os.getpid(), signal.SIGTERM)


def read(path):
    return json.loads((path / "record.json").read_text())


def losses(path):
    return [json.loads(ln)["loss"] for ln in (path / "train_log.jsonl").read_text().splitlines()]


def test_eval_schedule_log_spaced_and_ends_at_total():
    assert eval_schedule(100, 10, 4, None) == [12, 25, 50, 100]
    assert eval_schedule(3, 10, 4, None) == [1, 2, 3]
    assert eval_schedule(100, 10, 4, 250) == [25, 50, 75, 100]


@pytest.mark.slow
def test_tiny_run_writes_complete_record_and_skips_relaunch(shared_cache, tmp_path):
    spec = make_spec(shared_cache, tmp_path)
    outcome = execute(spec, tmp_path)
    rec = read(outcome.path)
    assert rec["status"] == "complete" and rec["run_id"] == outcome.run_id
    assert [c["step"] for c in rec["checkpoints"]] == sorted(c["step"] for c in rec["checkpoints"])
    assert len(rec["checkpoints"]) == 2
    final = rec["checkpoints"][-1]
    assert set(final["val_loss"]) == {"toy", "toy_shifted", "code"}
    assert final["tokens"] == rec["compute"]["tokens"] and rec["compute"]["flops"] > 0
    assert rec["model"]["n_params"] > rec["model"]["n_params_nonembedding"] > 0
    # later checkpoints are better on the training distribution
    assert rec["checkpoints"][-1]["val_loss"]["toy"] < rec["checkpoints"][0]["val_loss"]["toy"]
    again = execute(spec, tmp_path)
    assert again.status == "skipped"
    # atomic writes keep the umask's permissions (mkstemp alone would make them private)
    mask = os.umask(0)
    os.umask(mask)
    assert (outcome.path / "record.json").stat().st_mode & 0o777 == 0o666 & ~mask
    ckpt = latest_complete(outcome.path / "checkpoints")
    assert ckpt.stat().st_mode & 0o777 == 0o777 & ~mask


@pytest.mark.slow
def test_checkpoint_loads_as_transformers_model(shared_cache, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    outcome = execute(make_spec(shared_cache, tmp_path), tmp_path)
    ckpt = latest_complete(outcome.path / "checkpoints")
    model = AutoModelForCausalLM.from_pretrained(ckpt)
    tok = AutoTokenizer.from_pretrained(ckpt)
    ids = tok("Mira lives in", return_tensors="pt").input_ids
    assert model(ids).logits.shape[-1] >= len(tok)
    assert verify_checkpoint(ckpt) is None


@pytest.mark.slow
def test_resume_after_preemption_equals_uninterrupted(shared_cache, tmp_path):
    spec = make_spec(shared_cache, tmp_path / "a", ["train.checkpoint_every=2"])
    ref = execute(spec, tmp_path / "a")
    with pytest.raises(Preempted):
        execute(spec, tmp_path / "b", tracker=SignalAt(step=6))
    partial = read(tmp_path / "b" / "runs" / ref.run_id)
    assert partial["status"] == "interrupted"  # stopped outside SLURM: said, and resumable
    resumed = execute(spec, tmp_path / "b")
    assert resumed.run_id == ref.run_id
    a, b = read(ref.path), read(resumed.path)
    assert b["compute"]["resumed_from_step"] == 6
    assert losses(ref.path) == pytest.approx(losses(resumed.path), abs=1e-6)
    for ca, cb in zip(a["checkpoints"], b["checkpoints"], strict=True):
        assert ca["step"] == cb["step"]
        assert ca["val_loss"] == pytest.approx(cb["val_loss"], abs=1e-6)


@pytest.mark.slow
def test_corrupt_latest_checkpoint_falls_back_to_previous(shared_cache, tmp_path):
    outcome = execute(make_spec(shared_cache, tmp_path, ["train.checkpoint_every=2"]), tmp_path)
    root = outcome.path / "checkpoints"
    steps = checkpoint_steps(root)
    newest = root / f"step_{steps[-1]}"
    with open(newest / "model.safetensors", "r+b") as fh:
        fh.seek(100)
        fh.write(b"garbage!")
    messages = []
    assert latest_complete(root, log=messages.append) == root / f"step_{steps[-2]}"
    assert "does not match its sha256" in messages[0]
    (root / f"step_{steps[-2]}" / "manifest.json").unlink()
    assert latest_complete(root, log=messages.append) == root / f"step_{steps[-3]}"


@pytest.mark.slow
def test_divergence_marks_run_failed(shared_cache, tmp_path):
    spec = make_spec(
        shared_cache,
        tmp_path,
        ["train.lr=50.0", "train.grad_clip=1e9", "train.spike_factor=1.5", "train.warmup_frac=0"],
    )
    outcome = execute(spec, tmp_path)
    rec = read(outcome.path)
    assert outcome.status == "failed" and rec["status"] == "failed"
    assert rec["failure"].startswith("diverged:")


@pytest.mark.parametrize(
    "loss, window, factor, message",
    [
        (float("nan"), [], 0.0, "loss is nan at step 7"),
        (float("inf"), [1.0] * 5, 3.0, "loss is inf at step 7"),
        (10.0, [2.0] * 5, 3.0, "loss spike at step 7: 10.0000 > 3.0 x running mean 2.0000"),
    ],
)
def test_divergence_rules(loss, window, factor, message):
    with pytest.raises(Diverged, match=message.replace(".", r"\.").replace("(", r"\(")):
        _check_divergence(loss, list(window), factor, 7)
