"""Data-parallel training (2 gloo processes on CPU) follows the one-process loss curve."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from safetensors.torch import load_file

from tests.test_fastpath import TINY, RandomSampler
from train.checkpoint import latest_complete, plan_resume
from train.loop import pick_device, train
from train.model import build_model
from train.specs import TrainSpec

pytestmark = pytest.mark.slow  # torchrun with two processes

STEPS = 6
SPEC = TrainSpec(tokens=4096, lr=3e-3, log_every=1, device="cpu", warmup_frac=0.0)


class StubTokenizer:
    def save_pretrained(self, path) -> None:
        (Path(path) / "tokenizer.json").write_text("{}")


def run(run_dir: Path) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    model = build_model(TINY, 128, seed=0)

    def evaluate(m, step, tokens):  # only rank 0 evaluates; the record shows which rank did
        (run_dir / f"eval_rank{dist.get_rank() if dist.is_initialized() else 0}").write_text(
            str(tokens)
        )

    train(
        model,
        StubTokenizer(),
        RandomSampler(128, 8, 32),
        SPEC,
        total_steps=STEPS,
        eval_steps={STEPS},
        run_dir=run_dir,
        evaluate=evaluate,
        device=pick_device(SPEC),
        resume=plan_resume(run_dir / "checkpoints", model=model),
    )


def _worker(rank: int, world: int, port: int, run_dir: str) -> None:
    os.environ.update(
        RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_RANK=str(rank),
        LOCAL_WORLD_SIZE=str(world),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )
    try:
        run(Path(run_dir))
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def log_rows(run_dir: Path) -> list[dict]:
    return [json.loads(ln) for ln in (run_dir / "train_log.jsonl").read_text().splitlines()]


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed not built")
def test_two_gloo_ranks_match_one_process(tmp_path):
    run(tmp_path / "single")
    mp.spawn(_worker, args=(2, free_port(), str(tmp_path / "ddp")), nprocs=2, join=True)
    one, two = log_rows(tmp_path / "single"), log_rows(tmp_path / "ddp")
    assert [r["step"] for r in two] == list(range(1, STEPS + 1))
    assert [r["tokens"] for r in two] == [
        r["tokens"] for r in one
    ]  # the global batch, counted once
    assert [r["loss"] for r in two] == pytest.approx([r["loss"] for r in one], abs=1e-5)
    assert [r["grad_norm"] for r in two] == pytest.approx([r["grad_norm"] for r in one], abs=1e-5)
    # rank 0 alone evaluates and writes the checkpoint; its weights equal the single run's
    assert sorted(p.name for p in (tmp_path / "ddp").glob("eval_rank*")) == ["eval_rank0"]
    wa = load_file(latest_complete(tmp_path / "single" / "checkpoints") / "model.safetensors")
    wb = load_file(latest_complete(tmp_path / "ddp" / "checkpoints") / "model.safetensors")
    for name in wa:
        torch.testing.assert_close(wb[name], wa[name], atol=1e-5, rtol=1e-4, msg=name)


def test_torchrun_through_the_cli_matches_one_process(tmp_path, shared_cache):
    """`torchrun --nproc_per_node=2 -m harness.cli run ...`: rank 0 writes the one record,
    whose losses equal a one-process run of the same config (same global batch)."""
    import subprocess
    import sys

    from harness.config import run_spec
    from harness.runner import execute
    from tests.conftest import compose, tiny_overrides

    ov = tiny_overrides(shared_cache, tmp_path / "one") + ["train.num_threads=1"]
    ref = execute(run_spec(compose(ov)), tmp_path / "one")
    env = {**os.environ, "HARNESS_NO_PROGRESS": "1", "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    two = [a.replace(str(tmp_path / "one"), str(tmp_path / "two")) for a in ov]
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node=2",
            "--master_port",
            str(_free_port()),
            "-m",
            "harness.cli",
            "run",
            *two,
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    recs = list((tmp_path / "two").glob("runs/*/record.json"))
    assert [p.parent.name for p in recs] == [ref.run_id]
    a = json.loads((ref.path / "record.json").read_text())
    b = json.loads(recs[0].read_text())
    assert b["status"] == "complete" and b["compute"]["world_size"] == 2
    assert b["compute"]["tokens"] == a["compute"]["tokens"]
    for ca, cb in zip(a["checkpoints"], b["checkpoints"], strict=True):
        assert ca["step"] == cb["step"]
        assert ca["val_loss"] == pytest.approx(cb["val_loss"], abs=1e-5)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
