"""The training loop: explicit, no callbacks maze. Evaluation and checkpointing happen at
fixed steps, visible in `train()`; the caller supplies the evaluation function.
"""

from __future__ import annotations

import json
import math
import os
import resource
import sys
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from tqdm import tqdm
from transformers import LlamaForCausalLM

from common.atomic import write_text
from train import cuda_paths, distributed, fsdp
from train.checkpoint import (
    ResumePlan,
    load_trainer_state,
    prune_checkpoints,
    rng_state,
    set_rng_state,
)
from train.mixture import MixtureSampler
from train.replicated import ReplicatedRun
from train.schedule import lr_multiplier
from train.specs import TrainSpec

# The first steps of a process compile (torch.compile), record CUDA graphs and warm the
# allocator: timed apart from the rest, so tokens_per_second is the steady-state rate.
WARMUP_STEPS = 3


class Diverged(RuntimeError):
    """The loss became NaN/inf or spiked; the run is marked failed with this reason."""


class Preempted(RuntimeError):
    """A stop signal arrived; a complete checkpoint was saved before raising."""


@dataclass
class LoopResult:
    steps: int
    tokens: int
    wall_seconds: float  # this process's training time (excludes evaluation)
    tokens_per_second: float  # after the first WARMUP_STEPS steps (all steps if no more ran)
    resumed_from: int | None
    peak_memory_bytes: int | None = None
    device: str = "cpu"  # the device this process trained on (recorded as compute.device)
    extra: dict[str, Any] = field(default_factory=dict)


class StopFlag(Protocol):
    """Anything whose `signum` becomes set when the run must stop (harness.preemption sets it
    from SLURM's signals); the loop checks it at step boundaries, checkpoints and raises."""

    signum: int | None


def pick_device(spec: TrainSpec) -> torch.device:
    """The device a run trains on: `train.device`, or CUDA when `auto` finds one. Decided
    once, by the caller of `train()`."""
    if spec.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(spec.device)


def build_optimizer(
    model: torch.nn.Module, spec: TrainSpec, device: torch.device
) -> torch.optim.Optimizer:
    """AdamW; no weight decay on norms and biases (1-D parameters).

    Fused kernels on CUDA; on CPU the multi-tensor (foreach) path, which for tiny models is
    ~1.5x faster per step than the default per-parameter loop (bench/train_throughput.py).
    """
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    groups = [
        {"params": decay, "weight_decay": spec.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    if cuda_paths.enabled(device):
        return torch.optim.AdamW(groups, lr=spec.lr, betas=(spec.beta1, spec.beta2), fused=True)
    return torch.optim.AdamW(groups, lr=spec.lr, betas=(spec.beta1, spec.beta2), foreach=True)


def _truncate_log(log_path: Path, max_step: int) -> None:
    """Drop log lines past the resumed step: the resumed run writes them again, identically.
    A torn last line (killed mid-write) is dropped too."""
    if not log_path.exists():
        return
    keep = []
    for ln in log_path.read_text().splitlines():
        try:
            row = json.loads(ln)
        except json.JSONDecodeError:
            continue
        if row["step"] <= max_step:
            keep.append(ln)
    write_text(log_path, "".join(ln + "\n" for ln in keep))


def train(
    model,
    tokenizer,
    sampler: MixtureSampler,
    spec: TrainSpec,
    total_steps: int,
    eval_steps: set[int],
    run_dir: Path,
    evaluate: Callable[[torch.nn.Module, int, int], None],
    *,
    device: torch.device,
    resume: ResumePlan,
    log_fn: Callable[[dict[str, Any]], None] | None = None,
    stop: StopFlag | None = None,
) -> LoopResult:
    """Train to `total_steps` on `device` (the caller's `pick_device`; under torchrun each
    rank takes its local GPU of that type), resuming from `resume` (the caller's plan, see
    train.checkpoint.plan_resume).

    After each step in `eval_steps` it calls `evaluate(model, step, tokens)` and then saves a
    checkpoint, so every evaluated point can be re-scored later (backfill) and resumed from.
    Under torchrun (WORLD_SIZE > 1) every rank calls this; each trains on its slice of the
    global batch, and only rank 0 evaluates, logs and writes checkpoints (the others wait).
    """
    info = distributed.init(device.type)
    device = distributed.local_device(device, info)
    _use_device(device, spec, info)
    model.to(device)
    run = _parallel_run(model, spec, device, info)  # before the optimizer: FSDP shards first
    optimizer = build_optimizer(model, spec, device)
    warmup = int(round(spec.warmup_frac * total_steps))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda s: lr_multiplier(
            s, total_steps, warmup, spec.schedule, spec.min_lr_ratio, spec.decay_frac
        ),
    )
    ckpt_root, log_path = run_dir / "checkpoints", run_dir / "train_log.jsonl"
    start, loss_window, interval = 0, list[float](), [0.0, 0]
    if resume.checkpoint is not None:
        start, loss_window, interval = _restore(run, optimizer, scheduler, resume)
    if info.is_main:
        _truncate_log(log_path, start)
    distributed.barrier(info)
    if spec.activation_checkpointing:
        # recompute each layer's activations in backward: less memory for ~1/3 more compute
        model.activation_checkpointing_enable({"use_reentrant": False})
    run.wrap(spec)
    if device.type == "cpu" and not spec.num_threads and not info.enabled and start < total_steps:
        torch.set_num_threads(_pick_cpu_threads(run.step_module, model, sampler.batch(start)))
    tokens_per_step = sampler.batch_size * sampler.seq_len  # the global batch: exact accounting
    batches = _Prefetcher(
        sampler, distributed.local_rows(sampler.batch_size, info), device, total_steps
    )
    t0, paused = time.time(), 0.0  # paused: seconds spent evaluating and checkpointing
    warm_until = min(start + WARMUP_STEPS, total_steps)
    warmup_s = None  # training time of the steps up to warm_until, compile included
    log = _TrainLog(log_path, spec, info, device, (start, total_steps), interval, loss_window)
    log.log_fn = log_fn

    def checkpoint(step: int) -> None:
        state = {"step": step, "scheduler": scheduler.state_dict(), "rng": rng_state()}
        run.save(ckpt_root, step, tokenizer, optimizer, {**state, **log.state()})
        if info.is_main:
            prune_checkpoints(ckpt_root, spec.keep_checkpoints, protect=eval_steps)
        distributed.barrier(info)

    model.train()
    try:
        for step in range(start, total_steps):
            optimizer.zero_grad(set_to_none=True)
            loss, grad_norm = run.step(batches.get(step), spec.grad_clip)
            optimizer.step()
            scheduler.step()
            done = step + 1
            log_step = done % spec.log_every == 0 or done == total_steps or done in eval_steps
            lr = float(scheduler.get_last_lr()[0])  # LambdaLR's rates are floats
            log.after_step(loss, grad_norm, done, lr, tokens_per_step, log_step)
            if done == warm_until:
                if device.type == "cuda":
                    torch.cuda.synchronize(device)  # once: the queued warm-up kernels count
                warmup_s = time.time() - t0 - paused
            if done in eval_steps or (spec.checkpoint_every and done % spec.checkpoint_every == 0):
                log.flush()
                t_pause = time.time()
                if done in eval_steps:
                    _evaluate(run, model, evaluate, done, done * tokens_per_step)
                checkpoint(done)
                paused += time.time() - t_pause
                log.restart_clock()  # tokens/s measures training only
            if _stopping(stop, log_step, info) and done < total_steps:
                log.flush()
                if done not in eval_steps:
                    checkpoint(done)
                raise Preempted(
                    f"signal {stop.signum if stop else None} at step {done}; checkpoint saved"
                )
        log.flush()
    finally:
        log.close()
        batches.close()
        if spec.activation_checkpointing:
            model.activation_checkpointing_disable()
    wall = time.time() - t0 - paused
    sharded = isinstance(run, fsdp.ShardedRun)
    return LoopResult(
        total_steps,
        total_steps * tokens_per_step,
        wall,
        _steady_rate(total_steps - start, warm_until - start, tokens_per_step, wall, warmup_s),
        start if resume.checkpoint is not None else None,
        peak_memory(device),
        str(device),
        extra={
            "world_size": info.world_size,
            "torch_threads": torch.get_num_threads(),
            "parallel": "fsdp" if sharded else ("ddp" if info.enabled else "none"),
            "peak_memory_kind": "cuda_max_allocated" if device.type == "cuda" else "cpu_max_rss",
            "warmup_seconds": warmup_s,
            "warmup_steps": warm_until - start,
        },
    )


def _steady_rate(
    steps_run: int, warm_steps: int, tokens_per_step: int, wall: float, warmup_seconds
) -> float:
    """Tokens/s after the warm-up steps; with none after them, the rate over all steps."""
    steady = steps_run - warm_steps
    if steady > 0 and warmup_seconds is not None:
        return steady * tokens_per_step / max(wall - warmup_seconds, 1e-9)
    return steps_run * tokens_per_step / max(wall, 1e-9)


def _use_device(device: torch.device, spec: TrainSpec, info: distributed.DistInfo) -> None:
    if device.type == "cpu":
        torch.set_num_threads(spec.num_threads or distributed.cpu_threads(info))
    else:
        torch.cuda.set_device(device)
        torch.cuda.reset_peak_memory_stats(device)


def _parallel_run(
    model: LlamaForCausalLM, spec: TrainSpec, device: torch.device, info: distributed.DistInfo
) -> ReplicatedRun | fsdp.ShardedRun:
    """The one place the loop tells a sharded run from a replicated one."""
    if fsdp.wants_fsdp(spec.parallel, sum(p.numel() for p in model.parameters()), info):
        compile_layers = spec.compile and cuda_paths.enabled(device)
        return fsdp.ShardedRun(model, device, info, spec.loss_chunk, compile_layers)
    return ReplicatedRun(model, device, info)


def _restore(run, optimizer, scheduler, resume: ResumePlan) -> tuple[int, list[float], list]:
    """Weights, optimizer, schedule and RNG from the resume checkpoint; the step, the loss
    window and the unlogged part of the current log interval (a checkpoint between log steps,
    a preemption, must resume to the same logged means as an uninterrupted run)."""
    state = resume.trainer_state
    assert resume.checkpoint is not None  # train() restores only from a checkpoint
    if state is None:  # read by plan_resume already, normally
        state = load_trainer_state(resume.checkpoint)
    run.restore(optimizer, resume.checkpoint, state)
    scheduler.load_state_dict(state["scheduler"])
    set_rng_state(state["rng"])
    return (
        int(state["step"]),
        list(state.get("loss_window", [])),
        list(state.get("interval", [0.0, 0])),
    )


def _evaluate(run, model: torch.nn.Module, evaluate, step: int, tokens: int) -> None:
    """Rank 0 evaluates the full model (a sharded run's gathered replica); the others wait."""
    model.eval()
    with run.gather(step) as full:
        if full is not None:
            evaluate(full, step, tokens)
    model.train()


def _stopping(stop: StopFlag | None, log_step: bool, info: distributed.DistInfo) -> bool:
    stopping = stop is not None and stop.signum is not None
    if info.enabled:  # agree on stopping; a collective, so only at logging steps
        stopping = log_step and distributed.any_across(stopping, info)
    return stopping


class _TrainLog:
    """The log rows: the mean loss and gradient norm of each interval of `log_every` steps,
    checked for divergence, written to train_log.jsonl and `log_fn` (rank 0), and the
    progress bar. On CUDA a row's values are read back one step later, without a stall."""

    def __init__(
        self,
        path: Path,
        spec: TrainSpec,
        info: distributed.DistInfo,
        device: torch.device,
        steps: tuple[int, int],
        interval: list,
        loss_window: list[float],
    ):
        self.spec, self.info, self.device, self.loss_window = spec, info, device, loss_window
        self.log_fn: Callable[[dict[str, Any]], None] | None = None
        self.bar = tqdm(
            total=steps[1],
            initial=steps[0],
            unit="step",
            dynamic_ncols=True,
            mininterval=1.0 if sys.stderr.isatty() else 15.0,
            file=sys.stderr,
            disable=os.environ.get("HARNESS_NO_PROGRESS") == "1" or not info.is_main,
        )
        self.loss = torch.tensor(float(interval[0]), device=device)
        self.t, self.n = time.time(), int(interval[1])
        self.fh = open(path, "a") if info.is_main else None
        self.pending: _PendingRow | None = None

    def state(self) -> dict[str, Any]:
        """What a checkpoint keeps so that a resume logs the same means."""
        return {"loss_window": self.loss_window, "interval": [float(self.loss.item()), self.n]}

    def after_step(
        self,
        loss: torch.Tensor,
        grad_norm: torch.Tensor,
        done: int,
        lr: float,
        tokens_per_step: int,
        log_step: bool,
    ) -> None:
        self.loss += loss.detach()
        self.n += 1
        self.flush()  # the previous step's row: its values are ready by now, no stall
        if log_step:
            elapsed = time.time() - self.t
            stats = distributed.mean_across(
                torch.stack([self.loss / self.n, grad_norm.detach().float()]), self.info
            )
            row = {
                "step": done,
                "tokens": done * tokens_per_step,
                "lr": lr,
                "tokens_per_second": self.n * tokens_per_step / max(elapsed, 1e-9),
            }
            self.pending = _PendingRow(stats, row)
            if self.device.type != "cuda":
                self.flush()  # nothing to overlap with on CPU; keeps signals and logs step-exact
            self.loss.zero_()
            self.t, self.n = time.time(), 0
        self.bar.update(1)

    def restart_clock(self) -> None:
        self.t = time.time()

    def flush(self) -> None:
        if self.pending is None:
            return
        row, self.pending = self.pending.resolve(), None
        _check_divergence(row["loss"], self.loss_window, self.spec.spike_factor, row["step"])
        if self.fh is not None:
            self.fh.write(json.dumps(row) + "\n")
            self.fh.flush()
            if self.log_fn:
                self.log_fn(row)
        self.bar.set_postfix(
            loss=f"{row['loss']:.3f}", tok_s=f"{row['tokens_per_second']:,.0f}", refresh=False
        )

    def close(self) -> None:
        self.bar.close()
        if self.fh is not None:
            self.fh.close()


def _pick_cpu_threads(
    step_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None,
    model: torch.nn.Module,
    window: torch.Tensor,
) -> int:
    """All cores, unless one thread measures >10% faster on this model's forward + backward.

    When other processes share the cores, OpenMP's all-core kernels (spinning at barriers) can
    run several times slower than one thread for these tiny tensors (bench: cpu-200k 2.7k vs
    11k tok/s on a loaded 2-core box). The gradients are discarded and no RNG is drawn, and
    the kernels give bitwise the same results at either thread count (tests/test_fastpath.py),
    so the choice is operational only.
    """
    assert step_fn is not None  # run.wrap() built it
    cores = torch.get_num_threads()
    if cores <= 1:
        return cores
    best: dict[int, float] = {}
    for _ in range(2):
        for n in (cores, 1):
            torch.set_num_threads(n)
            t = time.perf_counter()
            step_fn(window[:, :-1], window[:, 1:]).backward()
            best[n] = min(best.get(n, math.inf), time.perf_counter() - t)
    model.zero_grad(set_to_none=True)
    return 1 if best[1] < 0.9 * best[cores] else cores


class _PendingRow:
    """A log row whose device values are being copied to the host without blocking the step."""

    def __init__(self, stats: torch.Tensor, row: dict[str, Any]):
        self.row = row
        self.event: torch.cuda.Event | None  # None on CPU: the stats are already on the host
        if stats.device.type == "cuda":
            self.host = torch.empty(stats.shape, dtype=stats.dtype, pin_memory=True)
            self.host.copy_(stats, non_blocking=True)
            self.event = torch.cuda.Event()
            self.event.record()
        else:
            self.host, self.event = stats, None

    def resolve(self) -> dict[str, Any]:
        if self.event is not None:
            self.event.synchronize()
        loss, grad_norm = self.host.tolist()
        row = dict(self.row)
        row.update(loss=loss, grad_norm=grad_norm)
        return {
            k: row[k] for k in ("step", "tokens", "loss", "lr", "grad_norm", "tokens_per_second")
        }


class _Prefetcher:
    """This rank's rows of each step's batch. On CUDA the next batch is sampled and pinned on a
    worker thread while the GPU runs the current step, then copied without blocking."""

    def __init__(
        self, sampler: MixtureSampler, rows: slice, device: torch.device, total_steps: int
    ):
        self.sampler, self.rows, self.device, self.total = sampler, rows, device, total_steps
        self.pool = ThreadPoolExecutor(1) if device.type == "cuda" else None
        self.next: tuple[int, Future] | None = None

    def _load(self, step: int) -> torch.Tensor:
        return self.sampler.batch(step)[self.rows].pin_memory()

    def get(self, step: int) -> torch.Tensor:
        if self.pool is None:
            return self.sampler.batch(step)[self.rows]
        if self.next is not None and self.next[0] == step:
            host = self.next[1].result()
        else:
            host = self._load(step)
        self.next = (
            (step + 1, self.pool.submit(self._load, step + 1)) if step + 1 < self.total else None
        )
        return host.to(self.device, non_blocking=True)

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True)


def peak_memory(device: torch.device) -> int:
    """Peak bytes: allocated on the GPU, else this process's peak resident set (CPU runs)."""
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss if sys.platform == "darwin" else rss * 1024)  # Linux reports KiB


def _check_divergence(loss: float, window: list[float], factor: float, step: int) -> None:
    if not math.isfinite(loss):
        raise Diverged(f"loss is {loss} at step {step}")
    if factor > 0 and len(window) >= 5:
        mean = sum(window) / len(window)
        if loss > factor * mean:
            raise Diverged(
                f"loss spike at step {step}: {loss:.4f} > {factor} x running mean {mean:.4f}"
            )
    window.append(loss)
    del window[:-20]
