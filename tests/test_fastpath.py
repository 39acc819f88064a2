"""Every speed-up of the training step gives the plain path's loss and gradients (fp32, CPU)."""

from __future__ import annotations

import json
import time

import pytest
import torch
import torch.nn.functional as F

from common.errors import ConfigError
from train import cuda_paths
from train.checkpoint import ResumePlan, plan_resume
from train.distributed import DistInfo, local_rows
from train.fast_loss import CausalLMLoss, chunked_linear_cross_entropy, full_linear_cross_entropy
from train.loop import (
    WARMUP_STEPS,
    LoopResult,
    _Prefetcher,
    build_optimizer,
    peak_memory,
    pick_device,
    train,
)
from train.model import build_model
from train.replicated import ReplicatedRun
from train.specs import ModelSpec, TrainSpec

TINY = ModelSpec("tiny", d_model=32, n_layers=2, n_heads=2, max_seq_len=64)


class RandomSampler:
    """Learnable windows (counting mod vocab by a per-row stride) that depend only on
    (seed, step), like MixtureSampler's."""

    def __init__(self, vocab: int, batch_size: int, seq_len: int, seed: int = 0):
        self.vocab, self.batch_size, self.seq_len, self.seed = vocab, batch_size, seq_len, seed

    def batch(self, step: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.seed * 100003 + step)
        start = torch.randint(0, self.vocab, (self.batch_size, 1), generator=g)
        stride = torch.randint(1, 4, (self.batch_size, 1), generator=g)
        return (start + stride * torch.arange(self.seq_len + 1)) % self.vocab


def grads(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.grad.clone() for n, p in module.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("n, chunk", [(300, 64), (256, 256), (257, 1000), (1, 7)])
def test_chunked_ce_equals_full_logits_ce(n, chunk):
    torch.manual_seed(0)
    h = torch.randn(n, 48, requires_grad=True)
    w = (0.02 * torch.randn(500, 48)).requires_grad_()
    t = torch.randint(0, 500, (n,))
    ref = full_linear_cross_entropy(h, w, t)
    ref.backward(torch.tensor(1.7))  # a non-unit upstream gradient is scaled through
    gh, gw = h.grad.clone(), w.grad.clone()
    h.grad = w.grad = None
    out = chunked_linear_cross_entropy(h, w, t, chunk)
    out.backward(torch.tensor(1.7))
    assert out.item() == pytest.approx(ref.item(), abs=1e-6)
    torch.testing.assert_close(h.grad, gh, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(w.grad, gw, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("tied", [True, False])
@pytest.mark.parametrize("loss_chunk", [0, 48])
def test_loss_module_equals_transformers_loss(tied, loss_chunk):
    spec = ModelSpec("tiny", 32, 2, 2, max_seq_len=64, tie_embeddings=tied)
    a, b = build_model(spec, 200, seed=1), build_model(spec, 200, seed=1)
    x = RandomSampler(200, 4, 24).batch(0)
    logits = a(input_ids=x[:, :-1]).logits  # the loop before: full logits, then CE in fp32
    ref = F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), x[:, 1:].reshape(-1))
    ref.backward()
    out = CausalLMLoss(b, loss_chunk)(x[:, :-1], x[:, 1:])
    out.backward()
    assert out.item() == pytest.approx(ref.item(), abs=1e-6)
    ga, gb = grads(a), grads(b)
    assert ga.keys() == gb.keys()
    for name in ga:
        torch.testing.assert_close(gb[name], ga[name], atol=1e-6, rtol=1e-5, msg=name)


def test_activation_checkpointing_same_gradients():
    a, b = build_model(TINY, 128, seed=2), build_model(TINY, 128, seed=2)
    b.activation_checkpointing_enable({"use_reentrant": False})
    a.train()
    b.train()
    x = RandomSampler(128, 4, 32).batch(3)
    la, lb = CausalLMLoss(a)(x[:, :-1], x[:, 1:]), CausalLMLoss(b)(x[:, :-1], x[:, 1:])
    la.backward()
    lb.backward()
    assert la.item() == pytest.approx(lb.item(), abs=1e-6)
    ga, gb = grads(a), grads(b)
    for name in ga:
        torch.testing.assert_close(gb[name], ga[name], atol=1e-6, rtol=1e-5, msg=name)


def run_loop(tmp_path, **train_kw) -> tuple[list[float], LoopResult]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    model = build_model(TINY, 128, seed=0)
    spec = TrainSpec(tokens=4096, lr=3e-3, log_every=1, device="cpu", **train_kw)
    result = train(
        model,
        None,
        RandomSampler(128, 8, 32),
        spec,
        total_steps=8,
        eval_steps=set(),
        run_dir=tmp_path,
        evaluate=lambda m, s, t: None,
        device=pick_device(spec),
        resume=plan_resume(tmp_path / "checkpoints", model=model),
    )
    rows = [json.loads(ln) for ln in (tmp_path / "train_log.jsonl").read_text().splitlines()]
    return [r["loss"] for r in rows], result


def test_train_switches_keep_the_loss_curve(tmp_path):
    ref, res = run_loop(tmp_path / "plain")
    assert len(ref) == 8 and ref[-1] < ref[0]
    assert res.device == "cpu"  # the device the loop trained on, what the record stores
    assert res.peak_memory_bytes and res.peak_memory_bytes > 10 * 2**20  # CPU peak RSS, bytes
    assert res.extra["peak_memory_kind"] == "cpu_max_rss"
    for kw in ({"loss_chunk": 40}, {"activation_checkpointing": True}):
        curve, _ = run_loop(tmp_path / next(iter(kw)), **kw)
        assert curve == pytest.approx(ref, abs=2e-5), kw


def test_cpu_thread_count_does_not_change_the_curve(tmp_path):
    # the trainer may pick 1 thread over all cores when that measures faster (train/loop.py)
    curves = [run_loop(tmp_path / f"t{n}", num_threads=n)[0] for n in (1, 2)]
    assert curves[0] == pytest.approx(curves[1], abs=1e-6)


def test_prefetcher_on_cpu_gives_this_ranks_rows():
    sampler = RandomSampler(50, 6, 8)
    rows = local_rows(6, DistInfo(rank=1, world_size=3))
    batches = _Prefetcher(sampler, rows, torch.device("cpu"), total_steps=4)
    torch.testing.assert_close(batches.get(2), sampler.batch(2)[2:4])
    batches.close()
    with pytest.raises(ConfigError, match="not divisible"):
        local_rows(7, DistInfo(rank=0, world_size=2))


def test_prefetcher_worker_thread_path_keeps_step_order(monkeypatch):
    # the CUDA path (sample + pin on a worker, one step ahead), minus the pinning this box lacks
    from concurrent.futures import ThreadPoolExecutor

    sampler = RandomSampler(50, 4, 8)
    batches = _Prefetcher(sampler, slice(0, 4), torch.device("cpu"), total_steps=5)
    batches.pool = ThreadPoolExecutor(1)
    monkeypatch.setattr(batches, "_load", lambda step: sampler.batch(step)[batches.rows])
    for step in (0, 1, 2, 4):  # a skipped step (resume) falls back to loading directly
        torch.testing.assert_close(batches.get(step), sampler.batch(step))
    assert batches.next is None
    batches.close()


def test_peak_memory_on_cpu_is_bytes():
    assert peak_memory(torch.device("cpu")) > 2**20


class SlowStartSampler(RandomSampler):
    """The first two batches take 0.4 s each: a stand-in for a first step's compile."""

    def batch(self, step: int) -> torch.Tensor:
        if step < 2:
            time.sleep(0.4)
        return super().batch(step)


def test_tokens_per_second_is_the_steady_state_rate(tmp_path):
    model = build_model(TINY, 128, seed=0)
    spec = TrainSpec(tokens=4096, lr=3e-3, log_every=1, device="cpu", num_threads=1)
    res = train(
        model,
        None,
        SlowStartSampler(128, 8, 32),
        spec,
        total_steps=8,
        eval_steps=set(),
        run_dir=tmp_path,
        evaluate=lambda m, s, t: None,
        device=torch.device("cpu"),
        resume=ResumePlan(None),
    )
    assert res.extra["warmup_steps"] == WARMUP_STEPS == 3
    assert res.extra["warmup_seconds"] >= 0.8  # the two slow steps are in the warm-up
    steady = (8 - 3) * 8 * 32 / (res.wall_seconds - res.extra["warmup_seconds"])
    assert res.tokens_per_second == pytest.approx(steady)
    assert res.tokens_per_second > 2 * (8 * 8 * 32 / res.wall_seconds)  # the rate with warm-up


@pytest.mark.slow  # ~20 s: dynamo's first import and trace
def test_cuda_paths_switch_on_for_a_cpu_dry_run(tmp_path, monkeypatch):
    """HARNESS_CUDA_PATHS_ON_CPU=1 (bench/gpu_check.py --dry-run): bf16 autocast, compile
    (aot_eager) and fused AdamW on a CPU device, and the curve stays near the fp32 one."""
    ref, _ = run_loop(tmp_path / "fp32", compile=True, precision="bf16")  # switches off on CPU
    model = build_model(TINY, 128, seed=0)
    fast = TrainSpec(tokens=4096, device="cpu", compile=True, precision="bf16")
    cpu = torch.device("cpu")
    assert build_optimizer(model, fast, cpu).defaults["fused"] is None
    monkeypatch.setenv(cuda_paths.ENV, "1")
    assert build_optimizer(model, fast, cpu).defaults["fused"] is True
    run = ReplicatedRun(model, cpu, DistInfo())
    run.wrap(fast)
    assert isinstance(run.step_module, torch._dynamo.eval_frame.OptimizedModule)
    curve, _ = run_loop(tmp_path / "dry", compile=True, precision="bf16")
    assert len(curve) == 8 and curve != ref  # bf16 rounding: not the fp32 numbers ...
    assert curve == pytest.approx(ref, abs=0.05)  # ... but the same curve
