"""One run, start to finish: identity -> skip or resume -> data -> model -> train (with
evaluation at scheduled checkpoints) -> complete record. A failed run writes its reason and
returns; the rest of a sweep goes on.
"""

from __future__ import annotations

import errno
import math
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from safetensors.torch import load_file

from common.atomic import write_text
from common.errors import ConfigError, HarnessError
from eval.lm_eval_runner import TaskRunner
from eval.val_loss import validation_losses
from harness.config import to_dict
from harness.data_prep import log, prepare_data, toy_task_dir
from harness.identity import run_id, semantic_config
from harness.preemption import Preemption
from harness.store import SCHEMA_VERSION, git_sha, is_complete, read_record, run_dir, write_record
from harness.tracking import Tracker, null_tracker
from train.cache_lock import file_lock
from train.checkpoint import latest_complete, verify_checkpoint
from train.distributed import dist_info
from train.loop import Diverged, Preempted, pick_device, train
from train.mixture import MixtureSampler
from train.model import FLOPS_CONVENTION, build_model, model_stats, training_flops
from train.specs import RunSpec

_TASK_RUNNERS: dict[tuple, TaskRunner] = {}


@dataclass
class RunOutcome:
    run_id: str
    status: str  # complete | failed | skipped
    path: Path
    failure: str | None = None


def eval_schedule(total_steps: int, tokens_per_step: int, n_points: int, every_tokens: int | None) -> list[int]:
    """Steps at which to evaluate (and checkpoint); always ends with the final step.

    Default: `n_points` log-spaced points, each twice the previous (…, T/4, T/2, T).
    """
    if every_tokens:
        every = max(1, round(every_tokens / tokens_per_step))
        steps = set(range(every, total_steps + 1, every))
    else:
        steps = {max(1, round(total_steps / 2**k)) for k in range(n_points)}
    steps.add(total_steps)
    return sorted(steps)


def task_runner(spec: RunSpec) -> TaskRunner | None:
    """The process-wide runner for this eval config (task objects are built once)."""
    ev = spec.eval
    if not ev.tasks:
        return None
    include = tuple(ev.include_paths)
    chance: dict[str, float] = {}
    if ev.toy_tasks:
        folder, chance = toy_task_dir(spec)
        include = include + (str(folder),)
    key = (tuple(ev.tasks), include, str(ev.batch_size), ev.limit)
    if key not in _TASK_RUNNERS:
        _TASK_RUNNERS[key] = TaskRunner(list(ev.tasks), include, ev.batch_size, ev.limit, chance)
    return _TASK_RUNNERS[key]


def slurm_job_id() -> str | None:
    """The id squeue and scancel use for this job ("<array>_<task>" for array tasks)."""
    if "SLURM_ARRAY_JOB_ID" in os.environ and "SLURM_ARRAY_TASK_ID" in os.environ:
        return f"{os.environ['SLURM_ARRAY_JOB_ID']}_{os.environ['SLURM_ARRAY_TASK_ID']}"
    return os.environ.get("SLURM_JOB_ID")


def _new_record(spec: RunSpec, rid: str, stats, data, n_tokens: int, tasks_meta: dict) -> dict[str, Any]:
    return {
        "schema_version": SCHEMA_VERSION,
        "run_id": rid,
        "sweep": spec.sweep,
        "status": "running",
        "failure": None,
        "config": to_dict(spec),
        "git_sha": git_sha(),
        "seed": spec.seed,
        "host": socket.gethostname(),
        "slurm_job_id": slurm_job_id(),
        "model": {"size": spec.model.name, "n_params": stats.n_params,
                  "n_params_nonembedding": stats.n_params_nonembedding, "d_model": spec.model.d_model,
                  "n_layers": spec.model.n_layers, "n_heads": spec.model.n_heads,
                  "vocab_size": len(data.tokenizer), "seq_len": spec.train.seq_len},
        "data": {"mix": spec.mix.name, "weights": spec.mix.weights, "train_tokens": n_tokens},
        "compute": {},
        "tasks_meta": tasks_meta,
        "checkpoints": [],
    }


def execute(spec: RunSpec, out_root: Path, tracker: Tracker | None = None) -> RunOutcome:
    """Run `spec` under `out_root`, skipping it when its record is already complete.

    A per-run lock (`<run_dir>/.lock`, released by the kernel even on kill -9) makes a second
    process launched for the same run id wait, then skip (complete) or resume (interrupted):
    two launchers never train one run concurrently.
    """
    rid = run_id(spec)
    path = run_dir(out_root, rid)
    path.mkdir(parents=True, exist_ok=True)
    if not dist_info().is_main:  # torchrun rank > 0: rank 0 holds the lock and writes
        return _execute_follower(spec, rid, path)
    with file_lock(path / ".lock"):
        return _execute_locked(spec, out_root, rid, path, tracker)


def _plan(spec: RunSpec, n_params: int) -> tuple[int, int, list[int]]:
    """(total steps, tokens per step, evaluation steps): the same on every rank."""
    tokens_per_step = spec.train.batch_size * spec.train.seq_len
    budget = spec.train.tokens or int(spec.train.tokens_per_param * n_params)
    total_steps = max(1, math.ceil(budget / tokens_per_step))
    schedule = eval_schedule(total_steps, tokens_per_step, spec.eval.num_checkpoints, spec.eval.every_tokens)
    return total_steps, tokens_per_step, schedule


def _execute_follower(spec: RunSpec, rid: str, path: Path) -> RunOutcome:
    """A data-parallel worker: trains its slice of every batch, writes nothing."""
    if is_complete(path):
        return RunOutcome(rid, "skipped", path)
    data = prepare_data(spec)
    sampler = MixtureSampler(data.train_caches, spec.mix.weights, spec.train.seq_len,
                             spec.train.batch_size, seed=spec.seed)
    model = build_model(spec.model, len(data.tokenizer), seed=spec.seed)
    total_steps, _, schedule = _plan(spec, model_stats(model).n_params)
    stop = Preemption()
    stop.install()
    try:
        train(model, data.tokenizer, sampler, spec.train, total_steps, set(schedule), path,
              lambda *args: None, log_fn=None, stop=stop)
    except (Diverged, Preempted):
        pass  # rank 0 records the outcome
    finally:
        stop.restore()
    return RunOutcome(rid, "follower", path)


def _execute_locked(spec: RunSpec, out_root: Path, rid: str, path: Path, tracker: Tracker | None) -> RunOutcome:
    previous = read_record(path)
    if previous and previous["status"] == "complete":
        log(f"skip {rid} ({spec.model.name}, {spec.mix.name}, seed {spec.seed}): complete")
        return RunOutcome(rid, "skipped", path)
    path.mkdir(parents=True, exist_ok=True)
    _check_same_config(path, spec)
    tracker = tracker or null_tracker()
    t_start = time.time()

    data = prepare_data(spec)
    # Everything that can reject the input happens before the first record is written.
    sampler = MixtureSampler(data.train_caches, spec.mix.weights, spec.train.seq_len,
                             spec.train.batch_size, seed=spec.seed)
    model = build_model(spec.model, len(data.tokenizer), seed=spec.seed)
    stats = model_stats(model)
    total_steps, tokens_per_step, schedule = _plan(spec, stats.n_params)
    n_tokens = total_steps * tokens_per_step
    runner = task_runner(spec)
    tasks_meta = {n: vars(i) for n, i in runner.info().items()} if runner else {}

    record = _new_record(spec, rid, stats, data, n_tokens, tasks_meta)
    # sizes only: train() hashes the checkpoint it restores; a newer one that fails there is
    # re-evaluated by the loop, replacing its entry
    resume_from = latest_complete(path / "checkpoints", log=lambda m: None, deep=False)
    if previous and resume_from is not None:
        done_step = int(resume_from.name.split("_")[1])
        record["checkpoints"] = [c for c in previous.get("checkpoints", []) if c["step"] <= done_step]
        log(f"resume {rid} from step {done_step}")
    write_record(path, record)
    tracker.start(rid, spec, record)
    log(f"run {rid}: {spec.model.name} ({stats.n_params:,} params), mix {spec.mix.name}, "
        f"{n_tokens:,} tokens in {total_steps} steps, evaluating at steps {schedule}")

    def evaluate(m: torch.nn.Module, step: int, tokens: int) -> None:
        entry: dict[str, Any] = {"step": step, "tokens": tokens,
                                 "flops": training_flops(stats.n_params, tokens),
                                 "val_loss": validation_losses(m, data.val_windows)}
        if runner and (spec.eval.tasks_at == "all" or step == total_steps):
            entry["tasks"] = runner.evaluate(m, data.tokenizer, max_length=spec.model.max_seq_len)
        else:
            entry["tasks"] = {}
        record["checkpoints"] = [c for c in record["checkpoints"] if c["step"] < step] + [entry]
        write_record(path, record)
        tracker.log_checkpoint(entry)
        vl = ", ".join(f"{k} {v:.3f}" for k, v in entry["val_loss"].items())
        log(f"step {step}: val loss {vl}")

    if previous is None and resume_from is not None:
        _evaluate_missing(model, resume_from, schedule, record, evaluate, tokens_per_step)

    stop = Preemption()
    stop.install()
    try:
        result = train(model, data.tokenizer, sampler, spec.train, total_steps, set(schedule), path,
                       evaluate, log_fn=tracker.log_step, stop=stop)
    except Diverged as err:
        _fail(path, record, tracker, f"diverged: {err}")
        return RunOutcome(rid, "failed", path, str(err))
    except Preempted as err:
        log(f"run {rid} stopped: {err}; relaunch to resume")
        tracker.finish(record, preempted=True)
        stop.after_checkpoint(log)
        raise
    except OSError as err:
        if err.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        # Disk full (typically mid-checkpoint; the partial one is discarded): fail this run so
        # the sweep goes on; relaunched with space, it resumes from the last complete checkpoint.
        _fail(path, record, tracker, f"disk full: {err}")
        return RunOutcome(rid, "failed", path, f"disk full: {err}")
    except HarnessError as err:  # e.g. a task dataset that cannot load mid-run
        _fail(path, record, tracker, str(err))
        raise
    finally:
        stop.restore()
    record["compute"] = {
        "flops": training_flops(stats.n_params, n_tokens), "flops_convention": FLOPS_CONVENTION,
        "tokens": n_tokens, "steps": total_steps, "wall_seconds": round(time.time() - t_start, 3),
        "train_seconds": round(result.wall_seconds, 3),
        "tokens_per_second": round(result.tokens_per_second, 1),
        "device": str(pick_device(spec.train)), "torch_threads": result.extra.get("torch_threads"),
        "resumed_from_step": result.resumed_from, "peak_memory_bytes": result.peak_memory_bytes,
        "peak_memory_kind": result.extra.get("peak_memory_kind"),
        "world_size": result.extra.get("world_size", 1),
    }
    record["status"] = "complete"
    write_record(path, record)
    tracker.finish(record)
    final = record["checkpoints"][-1]["val_loss"]
    log(f"done {rid}: " + ", ".join(f"{k} {v:.3f}" for k, v in final.items())
        + f" ({result.tokens_per_second:,.0f} tok/s)")
    return RunOutcome(rid, "complete", path)


def _fail(path: Path, record: dict[str, Any], tracker: Tracker, reason: str) -> None:
    """Mark the run failed with `reason`; a record that cannot be written (disk full) is said."""
    record.update(status="failed", failure=reason)
    try:
        write_record(path, record)
    except OSError as err:
        log(f"run {record['run_id']}: could not write the failed record ({err})")
    tracker.finish(record)
    log(f"run {record['run_id']} failed: {reason}")


def _check_same_config(path: Path, spec: RunSpec) -> None:
    """Same run id must mean same semantic config; anything else is a collision."""
    cfg_path = path / "config.yaml"
    semantic = semantic_config(spec)
    if cfg_path.exists():
        existing = yaml.safe_load(cfg_path.read_text()) or {}
        if existing.get("semantic") != _yaml_roundtrip(semantic):
            raise ConfigError(f"out_root: run directory '{path}' holds a run with a different config; "
                              "use another out_root or delete it")
        return
    write_text(cfg_path, yaml.safe_dump({"semantic": semantic, "full": to_dict(spec)}, sort_keys=False))


def _yaml_roundtrip(obj: Any) -> Any:
    return yaml.safe_load(yaml.safe_dump(obj, sort_keys=False))


def _evaluate_missing(model: torch.nn.Module, resume_from: Path, schedule: list[int], record: dict[str, Any],
                      evaluate, tokens_per_step: int) -> None:
    """Re-score the eval points up to `resume_from` when the record holding them was lost or
    corrupt: their checkpoints are never pruned, so the resumed run still ends with the same
    record as an uninterrupted one (instead of lacking early points, or crashing when the
    newest checkpoint is the final step and nothing is evaluated again)."""
    done_step = int(resume_from.name.split("_")[1])
    steps = [s for s in schedule if s <= done_step]
    if steps:
        log(f"record missing or corrupt: re-scoring checkpoint(s) {steps} from saved weights")
    for step in steps:
        ckpt = resume_from.parent / f"step_{step}"
        if verify_checkpoint(ckpt) is not None:
            log(f"warning: checkpoint {ckpt} is not usable; its evaluation is missing from the record")
            continue
        model.load_state_dict(load_file(ckpt / "model.safetensors"), strict=False)
        if model.config.tie_word_embeddings:
            model.tie_weights()
        model.eval()
        evaluate(model, step, step * tokens_per_step)
    model.train()  # train() restores the newest checkpoint's weights itself
