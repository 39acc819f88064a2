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

from common.atomic import write_text
from common.errors import ConfigError
from train import cuda_paths, distributed, fsdp
from train.checkpoint import (
    ResumePlan,
    load_trainer_state,
    load_weights,
    plan_resume,
    prune_checkpoints,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from train.fast_loss import CausalLMLoss
from train.mixture import MixtureSampler
from train.schedule import lr_multiplier
from train.specs import TrainSpec

COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
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
    extra: dict[str, Any] = field(default_factory=dict)


class StopFlag(Protocol):
    """Anything whose `signum` becomes set when the run must stop (harness.preemption sets it
    from SLURM's signals); the loop checks it at step boundaries, checkpoints and raises."""

    signum: int | None


def pick_device(spec: TrainSpec) -> torch.device:
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


def _restore(
    model,
    optimizer,
    scheduler,
    ckpt: Path,
    sharded: fsdp.ShardedRun | None = None,
    state: dict | None = None,
) -> tuple[int, list[float], list]:
    if state is None:  # read by plan_resume already, normally
        state = load_trainer_state(ckpt)
    if sharded is not None:
        sharded.restore(optimizer, ckpt, state)
    else:
        load_weights(model, ckpt)
        if "optimizer" in state:
            optimizer.load_state_dict(state["optimizer"])
        else:  # saved by a sharded (FSDP) run: train.parallel may change between launches
            fsdp.load_optimizer(model, optimizer, ckpt / fsdp.OPTIMIZER_DIR)
    scheduler.load_state_dict(state["scheduler"])
    set_rng_state(state["rng"])
    # the unlogged part of the current log interval: a checkpoint between log steps (a
    # preemption) must resume to the same logged means as an uninterrupted run
    return (
        int(state["step"]),
        list(state.get("loss_window", [])),
        list(state.get("interval", [0.0, 0])),
    )


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
    log_fn: Callable[[dict[str, Any]], None] | None = None,
    stop: StopFlag | None = None,
    resume: ResumePlan | None = None,
) -> LoopResult:
    """Train to `total_steps`, resuming from `resume` (the caller's plan; by default the newest
    complete checkpoint in `run_dir`, see train.checkpoint.plan_resume).

    After each step in `eval_steps` it calls `evaluate(model, step, tokens)` and then saves a
    checkpoint, so every evaluated point can be re-scored later (backfill) and resumed from.
    Under torchrun (WORLD_SIZE > 1) every rank calls this; each trains on its slice of the
    global batch, and only rank 0 evaluates, logs and writes checkpoints (the others wait).
    """
    info = distributed.init(pick_device(spec).type)
    device = distributed.local_device(pick_device(spec), info)
    if device.type == "cpu":
        torch.set_num_threads(spec.num_threads or distributed.cpu_threads(info))
    else:
        torch.cuda.set_device(device)
        torch.cuda.reset_peak_memory_stats(device)
    model.to(device)
    sharded = None  # FSDP2: shard before the optimizer is built over the (sharded) parameters
    if fsdp.wants_fsdp(spec.parallel, sum(p.numel() for p in model.parameters()), info):
        compile_layers = spec.compile and cuda_paths.enabled(device)
        sharded = fsdp.ShardedRun(model, device, info, spec.loss_chunk, compile_layers)
    optimizer = build_optimizer(model, spec, device)
    warmup = int(round(spec.warmup_frac * total_steps))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda s: lr_multiplier(
            s, total_steps, warmup, spec.schedule, spec.min_lr_ratio, spec.decay_frac
        ),
    )
    ckpt_root = run_dir / "checkpoints"
    log_path = run_dir / "train_log.jsonl"
    start, loss_window, resumed_from, interval = 0, [], None, [0.0, 0]
    if resume is None:
        resume = plan_resume(
            ckpt_root,
            log=lambda m: print(m, file=sys.stderr) if info.is_main else None,
            model=model,
        )
    if resume.checkpoint is not None:
        start, loss_window, interval = _restore(
            model, optimizer, scheduler, resume.checkpoint, sharded, resume.trainer_state
        )
        resumed_from = start
    if info.is_main:
        _truncate_log(log_path, start)
    distributed.barrier(info)

    use_bf16 = cuda_paths.enabled(device) and spec.precision in ("auto", "bf16")
    if spec.activation_checkpointing:
        # recompute each layer's activations in backward: less memory for ~1/3 more compute
        model.activation_checkpointing_enable({"use_reentrant": False})
    step_fn = sharded.step_module if sharded else _step_module(model, spec, device, info)
    if device.type == "cpu" and not spec.num_threads and not info.enabled and start < total_steps:
        torch.set_num_threads(_pick_cpu_threads(step_fn, model, sampler.batch(start)))
    cudagraphs = spec.compile and device.type == "cuda" and spec.compile_mode == "reduce-overhead"
    tokens_per_step = sampler.batch_size * sampler.seq_len  # the global batch: exact accounting
    batches = _Prefetcher(
        sampler, distributed.local_rows(sampler.batch_size, info), device, total_steps
    )

    def checkpoint(step: int) -> None:
        state = {
            "step": step,
            "scheduler": scheduler.state_dict(),
            "rng": rng_state(),
            "loss_window": loss_window,
            "interval": [float(interval_loss.item()), interval_n],
        }
        if sharded is not None:  # every rank writes its optimizer shards; rank 0 the rest
            sharded.save(ckpt_root, step, tokenizer, optimizer, state)
        elif info.is_main:
            state["optimizer"] = optimizer.state_dict()
            save_checkpoint(ckpt_root, step, model, tokenizer, state)
        if info.is_main:
            prune_checkpoints(ckpt_root, spec.keep_checkpoints, protect=eval_steps)
        distributed.barrier(info)

    t0 = time.time()
    bar = tqdm(
        total=total_steps,
        initial=start,
        unit="step",
        dynamic_ncols=True,
        mininterval=1.0 if sys.stderr.isatty() else 15.0,
        file=sys.stderr,
        disable=os.environ.get("HARNESS_NO_PROGRESS") == "1" or not info.is_main,
    )
    interval_loss = torch.tensor(float(interval[0]), device=device)
    interval_t, interval_n = time.time(), int(interval[1])
    paused = 0.0  # seconds spent evaluating and checkpointing
    warm_until = min(start + WARMUP_STEPS, total_steps)
    warmup_seconds = None  # training time of the steps up to warm_until, compile included
    log_fh = open(log_path, "a") if info.is_main else None
    pending: _PendingRow | None = None  # on CUDA a logged row is read back one step later

    def flush() -> None:
        nonlocal pending
        if pending is None:
            return
        row, pending = pending.resolve(), None
        _check_divergence(row["loss"], loss_window, spec.spike_factor, row["step"])
        if log_fh is not None:
            log_fh.write(json.dumps(row) + "\n")
            log_fh.flush()
            if log_fn:
                log_fn(row)
        bar.set_postfix(
            loss=f"{row['loss']:.3f}", tok_s=f"{row['tokens_per_second']:,.0f}", refresh=False
        )

    model.train()
    try:
        for step in range(start, total_steps):
            window = batches.get(step)
            if cudagraphs:
                torch.compiler.cudagraph_mark_step_begin()
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
                loss = step_fn(window[:, :-1], window[:, 1:])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if sharded is not None:
                grad_norm = sharded.clip(spec.grad_clip)
            else:
                grad_norm = torch.nn.utils.clip_grad_norm_(
                    model.parameters(), spec.grad_clip, foreach=True
                )
            optimizer.step()
            scheduler.step()
            interval_loss += loss.detach()
            interval_n += 1
            flush()  # the previous step's row: its values are ready by now, no stall
            done = step + 1
            log_step = done % spec.log_every == 0 or done == total_steps or done in eval_steps
            if log_step:
                elapsed = time.time() - interval_t
                stats = distributed.mean_across(
                    torch.stack([interval_loss / interval_n, grad_norm.detach().float()]), info
                )
                pending = _PendingRow(
                    stats,
                    {
                        "step": done,
                        "tokens": done * tokens_per_step,
                        "lr": scheduler.get_last_lr()[0],
                        "tokens_per_second": interval_n * tokens_per_step / max(elapsed, 1e-9),
                    },
                )
                if device.type != "cuda":
                    flush()  # nothing to overlap with on CPU; keeps signals and logs step-exact
                interval_loss.zero_()
                interval_t, interval_n = time.time(), 0
            bar.update(1)
            if done == warm_until:
                if device.type == "cuda":
                    torch.cuda.synchronize(device)  # once: the queued warm-up kernels count
                warmup_seconds = time.time() - t0 - paused
            if done in eval_steps or (spec.checkpoint_every and done % spec.checkpoint_every == 0):
                flush()
                t_pause = time.time()
                if done in eval_steps:
                    model.eval()
                    if sharded is not None:  # rank 0 evaluates an unsharded replica
                        with sharded.full_model(done) as full:
                            if info.is_main:
                                evaluate(full, done, done * tokens_per_step)
                    elif info.is_main:
                        evaluate(model, done, done * tokens_per_step)
                    model.train()
                checkpoint(done)
                paused += time.time() - t_pause
                interval_t = time.time()  # tokens/s measures training only
            stopping = stop is not None and stop.signum is not None
            if info.enabled:  # agree on stopping; a collective, so only at logging steps
                stopping = log_step and distributed.any_across(stopping, info)
            if stopping and done < total_steps:
                flush()
                if done not in eval_steps:
                    checkpoint(done)
                raise Preempted(
                    f"signal {stop.signum if stop else None} at step {done}; checkpoint saved"
                )
        flush()
    finally:
        bar.close()
        batches.close()
        if log_fh is not None:
            log_fh.close()
        if spec.activation_checkpointing:
            model.activation_checkpointing_disable()
    wall = time.time() - t0 - paused
    steps_run = total_steps - start
    steady = steps_run - (warm_until - start)
    if steady > 0 and warmup_seconds is not None:
        tokens_per_second = steady * tokens_per_step / max(wall - warmup_seconds, 1e-9)
    else:  # too few steps for a steady state: the rate over all of them, warm-up included
        tokens_per_second = steps_run * tokens_per_step / max(wall, 1e-9)
    return LoopResult(
        total_steps,
        total_steps * tokens_per_step,
        wall,
        tokens_per_second,
        resumed_from,
        peak_memory(device),
        extra={
            "world_size": info.world_size,
            "torch_threads": torch.get_num_threads(),
            "parallel": "fsdp" if sharded else ("ddp" if info.enabled else "none"),
            "peak_memory_kind": "cuda_max_allocated" if device.type == "cuda" else "cpu_max_rss",
            "warmup_seconds": warmup_seconds,
            "warmup_steps": warm_until - start,
        },
    )


def _step_module(
    model: torch.nn.Module, spec: TrainSpec, device: torch.device, info: distributed.DistInfo
) -> torch.nn.Module:
    """The loss module the step calls: (chunked) loss fused in, DDP-wrapped, compiled on CUDA."""
    if spec.compile_mode not in COMPILE_MODES:
        raise ConfigError(
            f"train.compile_mode: unknown mode '{spec.compile_mode}' "
            f"(known: {', '.join(COMPILE_MODES)})"
        )
    module = distributed.wrap(CausalLMLoss(model, spec.loss_chunk), device, info)
    if spec.compile and cuda_paths.enabled(device):
        # static shapes: in a process that trained another size first (a sweep, the bench),
        # dynamo would otherwise recompile this one with a symbolic batch dimension
        return torch.compile(
            module, dynamic=False, **cuda_paths.compile_kwargs(device, spec.compile_mode)
        )
    return module


def _pick_cpu_threads(
    step_fn: torch.nn.Module, model: torch.nn.Module, window: torch.Tensor
) -> int:
    """All cores, unless one thread measures >10% faster on this model's forward + backward.

    When other processes share the cores, OpenMP's all-core kernels (spinning at barriers) can
    run several times slower than one thread for these tiny tensors (bench: cpu-200k 2.7k vs
    11k tok/s on a loaded 2-core box). The gradients are discarded and no RNG is drawn, and
    the kernels give bitwise the same results at either thread count (tests/test_fastpath.py),
    so the choice is operational only.
    """
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
