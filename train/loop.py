"""The training loop: explicit, no callbacks maze. Evaluation and checkpointing happen at
fixed steps, visible in `train()`; the caller supplies the evaluation function.
"""

from __future__ import annotations

import json
import math
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from tqdm import tqdm

from train.checkpoint import (
    latest_complete,
    load_trainer_state,
    prune_checkpoints,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from train.mixture import MixtureSampler
from train.schedule import lr_multiplier
from train.specs import TrainSpec


class Diverged(RuntimeError):
    """The loss became NaN/inf or spiked; the run is marked failed with this reason."""


class Preempted(RuntimeError):
    """A stop signal arrived; a complete checkpoint was saved before raising."""


@dataclass
class LoopResult:
    steps: int
    tokens: int
    wall_seconds: float  # this process's training time (excludes evaluation)
    tokens_per_second: float
    resumed_from: int | None
    peak_memory_bytes: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class StopFlag:
    """Set by SIGTERM/SIGUSR1 (SLURM's pre-timeout warning); checked at step boundaries."""

    def __init__(self) -> None:
        self.signum: int | None = None

    def install(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGUSR1):
            try:
                signal.signal(sig, self._handler)
            except ValueError:  # not the main thread
                pass

    def _handler(self, signum, frame) -> None:
        self.signum = signum


def pick_device(spec: TrainSpec) -> torch.device:
    if spec.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(spec.device)


def build_optimizer(model: torch.nn.Module, spec: TrainSpec, device: torch.device) -> torch.optim.Optimizer:
    """AdamW; no weight decay on norms and biases (1-D parameters).

    Fused kernels on CUDA; on CPU the multi-tensor (foreach) path, which for tiny models is
    ~1.5x faster per step than the default per-parameter loop (bench/train_throughput.py).
    """
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    groups = [{"params": decay, "weight_decay": spec.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    if device.type == "cuda":
        return torch.optim.AdamW(groups, lr=spec.lr, betas=(spec.beta1, spec.beta2), fused=True)
    return torch.optim.AdamW(groups, lr=spec.lr, betas=(spec.beta1, spec.beta2), foreach=True)


def _restore(model, optimizer, scheduler, ckpt: Path) -> tuple[int, list[float]]:
    state = load_trainer_state(ckpt)
    model.load_state_dict(load_file(ckpt / "model.safetensors"), strict=False)
    if model.config.tie_word_embeddings:
        model.tie_weights()
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    set_rng_state(state["rng"])
    return int(state["step"]), list(state.get("loss_window", []))


def _truncate_log(log_path: Path, max_step: int) -> None:
    """Drop log lines past the resumed step: the resumed run writes them again, identically."""
    if not log_path.exists():
        return
    keep = [ln for ln in log_path.read_text().splitlines()
            if ln.strip() and json.loads(ln)["step"] <= max_step]
    log_path.write_text("".join(ln + "\n" for ln in keep))


def train(model, tokenizer, sampler: MixtureSampler, spec: TrainSpec, total_steps: int,
          eval_steps: set[int], run_dir: Path,
          evaluate: Callable[[torch.nn.Module, int, int], None],
          log_fn: Callable[[dict[str, Any]], None] | None = None,
          stop: StopFlag | None = None) -> LoopResult:
    """Train to `total_steps`, resuming from the newest complete checkpoint in `run_dir`.

    After each step in `eval_steps` it calls `evaluate(model, step, tokens)` and then saves a
    checkpoint, so every evaluated point can be re-scored later (backfill) and resumed from.
    """
    device = pick_device(spec)
    if device.type == "cpu" and spec.num_threads:
        torch.set_num_threads(spec.num_threads)
    model.to(device)
    optimizer = build_optimizer(model, spec, device)
    warmup = int(round(spec.warmup_frac * total_steps))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_multiplier(
        s, total_steps, warmup, spec.schedule, spec.min_lr_ratio, spec.decay_frac))
    ckpt_root = run_dir / "checkpoints"
    log_path = run_dir / "train_log.jsonl"
    start, loss_window, resumed_from = 0, [], None
    ckpt = latest_complete(ckpt_root, log=lambda m: print(m, file=sys.stderr))
    if ckpt is not None:
        start, loss_window = _restore(model, optimizer, scheduler, ckpt)
        resumed_from = start
    _truncate_log(log_path, start)

    use_bf16 = device.type == "cuda" and spec.precision in ("auto", "bf16")
    step_fn = torch.compile(model) if (spec.compile and device.type == "cuda") else model
    tokens_per_step = sampler.batch_size * sampler.seq_len

    def checkpoint(step: int) -> None:
        state = {"step": step, "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                 "rng": rng_state(), "loss_window": loss_window}
        save_checkpoint(ckpt_root, step, model, tokenizer, state)
        prune_checkpoints(ckpt_root, spec.keep_checkpoints, protect=eval_steps)

    t0 = time.time()
    bar = tqdm(total=total_steps, initial=start, unit="step", dynamic_ncols=True,
               mininterval=1.0 if sys.stderr.isatty() else 15.0, file=sys.stderr,
               disable=os.environ.get("HARNESS_NO_PROGRESS") == "1")
    interval_loss = torch.zeros((), device=device)
    interval_t, interval_n = time.time(), 0
    paused = 0.0  # seconds spent evaluating and checkpointing
    model.train()
    with open(log_path, "a") as log_fh:
        for step in range(start, total_steps):
            window = sampler.batch(step).to(device, non_blocking=True)
            inputs, targets = window[:, :-1], window[:, 1:]
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
                logits = step_fn(input_ids=inputs).logits
            loss = F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), targets.reshape(-1))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), spec.grad_clip, foreach=True)
            optimizer.step()
            scheduler.step()
            interval_loss += loss.detach()
            interval_n += 1
            done = step + 1
            if done % spec.log_every == 0 or done == total_steps or done in eval_steps:
                mean_loss = (interval_loss / interval_n).item()  # the only sync per interval
                _check_divergence(mean_loss, loss_window, spec.spike_factor, done)
                elapsed = time.time() - interval_t
                tps = interval_n * tokens_per_step / max(elapsed, 1e-9)
                row = {"step": done, "tokens": done * tokens_per_step, "loss": mean_loss,
                       "lr": scheduler.get_last_lr()[0], "grad_norm": float(grad_norm),
                       "tokens_per_second": tps}
                log_fh.write(json.dumps(row) + "\n")
                log_fh.flush()
                if log_fn:
                    log_fn(row)
                bar.set_postfix(loss=f"{mean_loss:.3f}", tok_s=f"{tps:,.0f}", refresh=False)
                interval_loss.zero_()
                interval_t, interval_n = time.time(), 0
            bar.update(1)
            if done in eval_steps or (spec.checkpoint_every and done % spec.checkpoint_every == 0):
                t_pause = time.time()
                if done in eval_steps:
                    model.eval()
                    evaluate(model, done, done * tokens_per_step)
                    model.train()
                checkpoint(done)
                paused += time.time() - t_pause
                interval_t = time.time()  # tokens/s measures training only
            if stop is not None and stop.signum is not None and done < total_steps:
                if done not in eval_steps:
                    checkpoint(done)
                bar.close()
                raise Preempted(f"signal {stop.signum} at step {done}; checkpoint saved")
    bar.close()
    wall = time.time() - t0 - paused
    steps_run = total_steps - start
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
    return LoopResult(total_steps, total_steps * tokens_per_step, wall,
                      steps_run * tokens_per_step / max(wall, 1e-9), resumed_from, peak)


def _check_divergence(loss: float, window: list[float], factor: float, step: int) -> None:
    if not math.isfinite(loss):
        raise Diverged(f"loss is {loss} at step {step}")
    if factor > 0 and len(window) >= 5:
        mean = sum(window) / len(window)
        if loss > factor * mean:
            raise Diverged(f"loss spike at step {step}: {loss:.4f} > {factor} x running mean {mean:.4f}")
    window.append(loss)
    del window[:-20]
