"""Sharded training (FSDP2, train.parallel=fsdp) on CPU with 2 gloo processes: it follows the
one-process loss curve, checkpoints as a Hugging Face directory plus sharded optimizer state,
and resumes - at the same or another world size, sharded or not - to the same weights.

Tolerance: 1e-5 on losses and weights, as for DDP (tests/test_ddp.py). The ranks sum their
gradient shards in another order than one process sums the batch, so the runs agree to float
rounding (measured: ~5e-7 on these losses), not bitwise.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from safetensors.torch import load_file

from tests.test_ddp import StubTokenizer, free_port, log_rows
from tests.test_fastpath import TINY, RandomSampler
from train.checkpoint import latest_complete, plan_resume, verify_checkpoint
from train.distributed import DistInfo
from train.fsdp import AUTO_FSDP_MIN_PARAMS, OPTIMIZER_DIR, wants_fsdp
from train.loop import pick_device, train
from train.model import build_model
from train.specs import TrainSpec

pytestmark = pytest.mark.skipif(not dist.is_available(), reason="torch.distributed not built")

STEPS = 6
TOL = 1e-5
SPEC = TrainSpec(
    tokens=4096,
    lr=3e-3,
    log_every=1,
    device="cpu",
    warmup_frac=0.0,
    checkpoint_every=3,
    num_threads=1,
)


def run(run_dir: Path, parallel: str) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    model = build_model(TINY, 128, seed=0)

    def evaluate(m, step, tokens):  # only rank 0 evaluates, on a full (unsharded) model
        rank = dist.get_rank() if dist.is_initialized() else 0
        full = all(not hasattr(p, "device_mesh") for p in m.parameters())
        (run_dir / f"eval_rank{rank}_step{step}").write_text(json.dumps({"full": full}))

    train(
        model,
        StubTokenizer(),
        RandomSampler(128, 8, 32),
        dataclasses.replace(SPEC, parallel=parallel),
        total_steps=STEPS,
        eval_steps={STEPS},
        run_dir=run_dir,
        evaluate=evaluate,
        device=pick_device(SPEC),
        resume=plan_resume(run_dir / "checkpoints", model=model),
    )


def _worker(rank: int, world: int, port: int, run_dir: str, parallel: str) -> None:
    os.environ.update(
        RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_RANK=str(rank),
        LOCAL_WORLD_SIZE=str(world),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )
    try:
        run(Path(run_dir), parallel)
        if dist.is_initialized():  # no rank tears gloo down while another is mid-collective
            dist.barrier()
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def spawn(run_dir: Path, parallel: str, world: int) -> None:
    """A fresh process per rank (a process group, once made, outlives the test otherwise)."""
    mp.spawn(_worker, args=(world, free_port(), str(run_dir), parallel), nprocs=world, join=True)


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(latest_complete(run_dir / "checkpoints") / "model.safetensors")


def assert_same_run(a: Path, b: Path) -> None:
    ra, rb = log_rows(a), log_rows(b)
    assert [r["step"] for r in rb] == [r["step"] for r in ra] == list(range(1, STEPS + 1))
    assert [r["tokens"] for r in rb] == [r["tokens"] for r in ra]
    assert [r["loss"] for r in rb] == pytest.approx([r["loss"] for r in ra], abs=TOL)
    assert [r["grad_norm"] for r in rb] == pytest.approx([r["grad_norm"] for r in ra], abs=TOL)
    wa, wb = weights(a), weights(b)
    assert set(wa) == set(wb)
    for name in wa:
        torch.testing.assert_close(wb[name], wa[name], atol=TOL, rtol=1e-4, msg=name)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """One plain one-process run and one 2-rank FSDP run of the same config, shared by the
    tests below (each copies what it modifies)."""
    root = tmp_path_factory.mktemp("fsdp")
    run(root / "single", "ddp")
    spawn(root / "fsdp", "fsdp", 2)
    return {"single": root / "single", "fsdp": root / "fsdp"}


@pytest.mark.slow  # spawns worker processes
def test_two_ranks_sharded_match_one_process(runs):
    assert_same_run(runs["single"], runs["fsdp"])
    # rank 0 alone evaluated, on an unsharded model
    evals = sorted(p.name for p in runs["fsdp"].glob("eval_rank*"))
    assert evals == [f"eval_rank0_step{STEPS}"]
    assert json.loads((runs["fsdp"] / evals[0]).read_text()) == {"full": True}


@pytest.mark.slow  # spawns worker processes
def test_sharded_checkpoint_is_hf_loadable_and_complete(runs):
    from transformers import AutoModelForCausalLM

    ckpt = latest_complete(runs["fsdp"] / "checkpoints")
    assert ckpt.name == f"step_{STEPS}" and verify_checkpoint(ckpt) is None
    manifest = json.loads((ckpt / "manifest.json").read_text())["files"]
    shards = [n for n in manifest if n.startswith(f"{OPTIMIZER_DIR}/") and n.endswith(".distcp")]
    assert len(shards) == 2  # one file per rank, listed (and hashed) by the manifest
    assert "optimizer" not in torch.load(ckpt / "trainer_state.pt", weights_only=True)
    hf = AutoModelForCausalLM.from_pretrained(ckpt)
    single = AutoModelForCausalLM.from_pretrained(latest_complete(runs["single"] / "checkpoints"))
    w = torch.randint(0, 128, (2, 16))
    with torch.no_grad():
        torch.testing.assert_close(
            hf(input_ids=w).logits, single(input_ids=w).logits, atol=1e-4, rtol=1e-4
        )
    # a checkpoint with a shard missing is incomplete
    broken = runs["fsdp"].parent / "broken"
    shutil.copytree(ckpt, broken)
    (broken / shards[0]).unlink()
    assert verify_checkpoint(broken) == f"missing file {shards[0]}"


def resume_from_step3(src: Path, dst: Path) -> None:
    """`dst`: `src` as if killed after its step-3 checkpoint (later checkpoints gone)."""
    shutil.copytree(src, dst)
    shutil.rmtree(dst / "checkpoints" / f"step_{STEPS}")
    for p in dst.glob("eval_rank*"):
        p.unlink()


@pytest.mark.slow  # spawns worker processes
@pytest.mark.parametrize(
    "src, parallel, world",
    [
        ("fsdp", "fsdp", 2),  # sharded state, same world size
        ("fsdp", "ddp", 1),  # sharded optimizer state read by one unsharded process
        ("single", "fsdp", 2),  # a plain checkpoint resumed sharded (train.parallel is not keyed)
    ],
)
def test_resume_from_a_checkpoint_matches_the_uninterrupted_run(
    runs, tmp_path, src, parallel, world
):
    resumed = tmp_path / "resumed"
    resume_from_step3(runs[src], resumed)
    if world == 1:
        run(resumed, parallel)
    else:
        spawn(resumed, parallel, world)
    assert_same_run(runs["single"], resumed)
    assert sorted(p.name for p in resumed.glob("eval_rank*")) == [f"eval_rank0_step{STEPS}"]


@pytest.mark.slow  # spawns worker processes
def test_fsdp_in_one_process_matches_plain(runs, tmp_path):
    """train.parallel=fsdp without torchrun: a mesh of one, the sharded code path on one device."""
    spawn(tmp_path / "one", "fsdp", 1)
    assert_same_run(runs["single"], tmp_path / "one")


def _state_worker(rank: int, world: int, port: int, out: str) -> None:
    """One sharded step; writes how many optimizer-state elements this rank holds."""
    from train.fsdp import ShardedRun
    from train.loop import build_optimizer

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        model = build_model(TINY, 128, seed=0)
        run_ = ShardedRun(model, torch.device("cpu"), DistInfo(rank, world, rank, world), 0, False)
        opt = build_optimizer(model, SPEC, torch.device("cpu"))
        w = RandomSampler(128, 8, 32).batch(0)[rank * 4 : (rank + 1) * 4]
        run_.step_module(w[:, :-1], w[:, 1:]).backward()
        opt.step()
        local = sum(
            v.to_local().numel() for st in opt.state.values() for k, v in st.items() if k != "step"
        )
        full = sum(p.numel() for p in model.parameters())
        Path(out, f"rank{rank}.json").write_text(json.dumps({"local": local, "params": full}))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow  # spawns worker processes
def test_each_rank_holds_its_share_of_the_optimizer_state(tmp_path):
    """What FSDP is for: AdamW's two moments are split over the ranks, not replicated."""
    mp.spawn(_state_worker, args=(2, free_port(), str(tmp_path)), nprocs=2, join=True)
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    params = ranks[0]["params"]
    assert sum(r["local"] for r in ranks) == 2 * params  # exp_avg + exp_avg_sq, each element once
    for r in ranks:  # dim-0 shards of odd-sized dims differ by a row at most
        assert r["local"] == pytest.approx(params, rel=0.05)


def test_auto_shards_only_large_models_across_processes():
    two, one = DistInfo(0, 2, 0, 2), DistInfo()
    assert wants_fsdp("auto", AUTO_FSDP_MIN_PARAMS + 1, two)
    assert not wants_fsdp("auto", AUTO_FSDP_MIN_PARAMS, two)
    assert not wants_fsdp("auto", AUTO_FSDP_MIN_PARAMS + 1, one)
    assert wants_fsdp("fsdp", 10, one) and not wants_fsdp("ddp", AUTO_FSDP_MIN_PARAMS * 10, two)


@pytest.mark.slow  # spawns worker processes
def test_torchrun_fsdp_through_the_cli_matches_one_process(tmp_path, shared_cache):
    """`torchrun --nproc_per_node=2 -m harness.cli run ... train.parallel=fsdp`: the runner's
    record (validation losses at every evaluated checkpoint) equals a one-process run's."""
    import subprocess
    import sys

    from harness.config import run_spec
    from harness.runner import execute
    from tests.conftest import ROOT, compose, tiny_overrides

    ov = tiny_overrides(shared_cache, tmp_path / "one") + ["train.num_threads=1"]
    ref = execute(run_spec(compose(ov)), tmp_path / "one")
    two = [a.replace(str(tmp_path / "one"), str(tmp_path / "two")) for a in ov]
    env = {
        **os.environ,
        "HARNESS_NO_PROGRESS": "1",
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": str(ROOT),
    }
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        "--master_port",
        str(free_port()),
        "-m",
        "harness.cli",
        "run",
        *two,
        "train.parallel=fsdp",
    ]
    res = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    recs = list((tmp_path / "two").glob("runs/*/record.json"))
    assert [p.parent.name for p in recs] == [ref.run_id]  # same run id: parallel is not keyed
    a = json.loads((ref.path / "record.json").read_text())
    b = json.loads(recs[0].read_text())
    assert b["status"] == "complete" and b["compute"]["world_size"] == 2
    for ca, cb in zip(a["checkpoints"], b["checkpoints"], strict=True):
        assert ca["step"] == cb["step"]
        assert cb["val_loss"] == pytest.approx(ca["val_loss"], abs=TOL)
    ckpt = latest_complete(recs[0].parent / "checkpoints")
    assert (ckpt / OPTIMIZER_DIR).is_dir() and verify_checkpoint(ckpt) is None
