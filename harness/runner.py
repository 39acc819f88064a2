"""One run, start to finish: skip or plan the resume -> build -> train with evaluation at the
planned steps -> finish the record. A failed run writes its reason and returns; the rest of a
sweep goes on.
"""

from __future__ import annotations

import errno
import os
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml

from common.atomic import write_text
from common.errors import ConfigError, DataError, HarnessError
from common.log import log
from common.record import CheckpointEntry, Compute, DataInfo, ModelInfo, RunRecord
from eval.lm_eval_runner import TaskRunner
from eval.samples import drop_after, sample_rows, write_samples
from eval.val_loss import validation_losses
from harness.config import to_dict
from harness.data_budget import epochs, repetition_warnings
from harness.identity import run_id, semantic_config
from harness.preemption import Preemption, signalled
from harness.run_setup import RunSetup, build_run, task_runner
from harness.store import (
    git_sha,
    is_complete,
    read_record,
    remove_leftovers,
    run_dir,
    write_heartbeat,
    write_record,
)
from harness.tracking import Tracker, null_tracker
from train.cache_lock import file_lock
from train.checkpoint import (
    ResumePlan,
    load_weights,
    plan_resume,
    verify_checkpoint,
    weights_mismatch,
)
from train.distributed import dist_info
from train.loop import Diverged, LoopResult, Preempted, pick_device, train
from train.model import FLOPS_CONVENTION, training_flops
from train.specs import RunSpec

Evaluate = Callable[[torch.nn.Module, int, int], None]


@dataclass
class RunOutcome:
    run_id: str
    status: str  # complete | failed | skipped | follower
    path: Path
    failure: str | None = None


def slurm_job_id() -> str | None:
    """The id squeue and scancel use for this job ("<array>_<task>" for array tasks)."""
    if "SLURM_ARRAY_JOB_ID" in os.environ and "SLURM_ARRAY_TASK_ID" in os.environ:
        return f"{os.environ['SLURM_ARRAY_JOB_ID']}_{os.environ['SLURM_ARRAY_TASK_ID']}"
    return os.environ.get("SLURM_JOB_ID")


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
    tracker = tracker or null_tracker()
    with file_lock(path / ".lock"):
        try:
            return _execute_locked(spec, rid, path, tracker)
        except BaseException as err:
            _record_stop(path, err)
            _finish_tracker(tracker, path)
            raise


def _finish_tracker(tracker: Tracker, path: Path) -> None:
    """The W&B run ends on every exit path (an exception, out of memory, Ctrl-C), with the
    record's status as `_record_stop` left it; a tracker error never hides the run's own."""
    try:
        tracker.finish(read_record(path), preempted=True)
    except Exception as err:  # noqa: BLE001 - the tracker is a mirror, never the cause
        log(f"warning: could not finish the W&B run ({type(err).__name__}: {err})")


def _record_stop(path: Path, err: BaseException) -> None:
    """A run that raised is never left `running`: a stop (Ctrl-C, SIGTERM) outside SLURM is
    `interrupted`, any other exception `failed` with its reason. Under SLURM a stop leaves the
    record running: the job is requeued and resumes it."""
    record = read_record(path)
    if record is None or record.status != "running":
        return  # nothing written yet, or the reason is already recorded
    stop = isinstance(err, (KeyboardInterrupt, SystemExit, Preempted))
    if stop and slurm_job_id() is not None:
        return
    if stop:
        record.interrupt(_stop_reason(err))
    else:
        first = (str(err).splitlines() or [""])[0]
        record.fail(f"{type(err).__name__}: {first}" if first else type(err).__name__)
    try:
        write_record(path, record)
    except OSError as werr:
        log(f"run {record.run_id}: could not record its {record.status} state ({werr})")


def _stop_reason(err: BaseException) -> str:
    """What stopped a run: Ctrl-C (at once, or at a step boundary after a checkpoint), or
    another signal."""
    if isinstance(err, KeyboardInterrupt):
        return "interrupted by Ctrl-C"
    if isinstance(err, Preempted) and signalled() == signal.SIGINT:
        return f"interrupted by Ctrl-C ({err})"
    return f"stopped: {err}" if str(err) else "stopped"


def _execute_locked(spec: RunSpec, rid: str, path: Path, tracker: Tracker) -> RunOutcome:
    previous = read_record(path)
    if previous is not None and previous.is_complete:
        log(f"skip {rid} ({spec.model.name}, {spec.mix.name}, seed {spec.seed}): complete")
        return RunOutcome(rid, "skipped", path)
    _check_same_config(path, spec)
    remove_leftovers(path / "checkpoints")
    write_heartbeat(path)
    t_start = time.time()
    setup = _build_or_say(spec)
    runner = task_runner(spec)
    resume = plan_resume(path / "checkpoints", log=log, model=setup.model)
    record = _new_record(spec, rid, setup, runner)
    # per-item files after the resume step go, as the record's entries do (keep_until)
    drop_after(path, resume.step)
    if previous is not None and resume.checkpoint is not None:
        record.checkpoints = previous.checkpoints
        record.keep_until(resume.step)
        _keep_task_protocols(record, previous, runner)
        log(f"resume {rid} from step {resume.step}")
    write_record(path, record)
    for line in repetition_warnings(rid, record.data.epochs or {}):
        log(line)
    tracker.start(rid, spec, record)
    plan = setup.plan
    log(
        f"run {rid}: {spec.model.name} ({setup.stats.n_params:,} params), mix {spec.mix.name}, "
        f"{plan.n_tokens:,} tokens in {plan.total_steps} steps, "
        f"evaluating at steps {plan.eval_steps}"
    )
    evaluate = _evaluator(spec, setup, runner, record, path, tracker)
    if previous is None and resume.checkpoint is not None:
        _evaluate_missing(setup, resume, evaluate)
    result = _train_or_fail(spec, setup, path, record, tracker, evaluate, resume)
    if isinstance(result, str):
        return RunOutcome(rid, "failed", path, result)
    record.complete(_compute(spec, setup, result, t_start))
    write_record(path, record)
    tracker.finish(record)
    final = record.final
    assert final is not None  # complete() recorded the final checkpoint
    log(
        f"done {rid}: "
        + ", ".join(f"{k} {v:.3f}" for k, v in final.val_loss.items())
        + f" ({result.tokens_per_second:,.0f} tok/s)"
    )
    return RunOutcome(rid, "complete", path)


def _build_or_say(spec: RunSpec) -> RunSetup:
    """build_run, with a full disk while preparing inputs (tokenizer, token caches) said in one
    line instead of a traceback; the caller records it on an existing record."""
    try:
        return build_run(spec)
    except OSError as err:
        if err.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        raise DataError(
            f"cache_dir: disk full while preparing the run's inputs in "
            f"'{spec.cache_dir}' ({err.strerror})"
        ) from None


def _execute_follower(spec: RunSpec, rid: str, path: Path) -> RunOutcome:
    """A data-parallel worker: trains its slice of every batch, writes nothing."""
    if is_complete(path):
        return RunOutcome(rid, "skipped", path)
    setup = build_run(spec)
    resume = plan_resume(path / "checkpoints", log=lambda m: None, model=setup.model)
    stop = Preemption()
    stop.install()
    try:
        _train(spec, setup, path, lambda *args: None, None, stop, resume)
    except (Diverged, Preempted):
        pass  # rank 0 records the outcome
    finally:
        stop.restore()
    return RunOutcome(rid, "follower", path)


def _train(
    spec: RunSpec,
    setup: RunSetup,
    path: Path,
    evaluate: Evaluate,
    log_fn,
    stop: Preemption,
    resume: ResumePlan,
) -> LoopResult:
    plan = setup.plan
    return train(
        setup.model,
        setup.data.tokenizer,
        setup.sampler,
        spec.train,
        plan.total_steps,
        set(plan.eval_steps),
        path,
        evaluate,
        device=pick_device(spec.train),
        resume=resume,
        log_fn=log_fn,
        stop=stop,
    )


def _train_or_fail(
    spec: RunSpec,
    setup: RunSetup,
    path: Path,
    record: RunRecord,
    tracker: Tracker,
    evaluate: Evaluate,
    resume: ResumePlan,
) -> LoopResult | str:
    """The loop's result, or the reason the run failed (recorded). A preempted run, or bad
    input found mid-run, raises after the record says so."""
    stop = Preemption()
    stop.install()
    try:
        return _train(spec, setup, path, evaluate, tracker.log_step, stop, resume)
    except Diverged as err:
        reason = f"diverged: {err}"
    except Preempted as err:
        # the tracker is finished by `execute` once `_record_stop` has set the record's status
        log(f"run {record.run_id} stopped: {err}; relaunch to resume")
        stop.after_checkpoint(log)
        raise
    except OSError as err:
        if err.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        # Disk full (typically mid-checkpoint; the partial one is discarded): fail this run so
        # the sweep goes on; relaunched with space, it resumes from the last complete checkpoint.
        reason = f"disk full: {err}"
    except HarnessError as err:  # e.g. a task dataset that cannot load mid-run
        _fail(path, record, tracker, str(err))
        raise
    finally:
        stop.restore()
    _fail(path, record, tracker, reason)
    return reason


def _new_record(spec: RunSpec, rid: str, setup: RunSetup, runner: TaskRunner | None) -> RunRecord:
    m = spec.model
    return RunRecord(
        run_id=rid,
        sweep=spec.sweep,
        status="running",
        config=to_dict(spec),
        git_sha=git_sha(),
        seed=spec.seed,
        host=socket.gethostname(),
        slurm_job_id=slurm_job_id(),
        model=ModelInfo(
            size=m.name,
            n_params=setup.stats.n_params,
            n_params_nonembedding=setup.stats.n_params_nonembedding,
            d_model=m.d_model,
            n_layers=m.n_layers,
            n_heads=m.n_heads,
            vocab_size=len(setup.data.tokenizer),
            seq_len=spec.train.seq_len,
        ),
        data=_data_info(spec, setup),
        tasks_meta={n: vars(i) for n, i in runner.info().items()} if runner else {},
    )


def _data_info(spec: RunSpec, setup: RunSetup) -> DataInfo:
    """The mix, its budget, and per source the train split's tokens and the epochs implied."""
    available: dict[str, int | None] = {
        n: c.n_tokens for n, c in sorted(setup.data.train_caches.items())
    }
    return DataInfo(
        mix=spec.mix.name,
        weights=spec.mix.weights,
        train_tokens=setup.plan.n_tokens,
        available_tokens=available,
        epochs=epochs(spec.mix.weights, setup.plan.n_tokens, available),
    )


def _evaluator(
    spec: RunSpec,
    setup: RunSetup,
    runner: TaskRunner | None,
    record: RunRecord,
    path: Path,
    tracker: Tracker,
) -> Evaluate:
    """The loop's `evaluate(model, step, tokens)`: validation losses, then the tasks (at every
    point, or at the last only), written into the record at once."""

    def evaluate(m: torch.nn.Module, step: int, tokens: int) -> None:
        flops = training_flops(setup.stats.n_params, tokens)
        val_loss: dict[str, float | None] = dict(validation_losses(m, setup.data.val_windows))
        tasks: dict[str, Any] = {}
        if runner and (spec.eval.tasks_at == "all" or step == setup.plan.total_steps):
            tasks = runner.evaluate(m, setup.data.tokenizer, max_length=spec.model.max_seq_len)
        entry = CheckpointEntry(step, tokens, flops, val_loss, tasks)
        if runner and tasks:
            _note_protocols(record, entry, runner)
            if spec.eval.log_samples:  # before the record names the checkpoint
                rows = sample_rows(record.run_id, step, tokens, runner.last_samples)
                write_samples(path, step, rows)
        record.put_checkpoint(entry)
        write_record(path, record)
        tracker.log_checkpoint(entry)
        log(
            f"run {record.run_id} step {step}: val loss "
            + ", ".join(f"{k} {v:.3f}" for k, v in val_loss.items())
        )

    return evaluate


def _keep_task_protocols(record: RunRecord, previous: RunRecord, runner: TaskRunner | None) -> None:
    """A resumed record keeps the task metadata of the run so far (tasks_meta changes only for
    tasks scored again), and says where this launch scores a task under another protocol
    (eval.limit, shots) than the kept checkpoints: each entry keeps its own, and the analysis
    does not pool the two."""
    record.tasks_meta = dict(previous.tasks_meta)
    if runner is None:
        return
    for line in record.protocol_changes(runner.protocols(runner.names)):
        log(f"warning: run {record.run_id} resumes under another evaluation protocol: {line}")


def _note_protocols(record: RunRecord, entry: CheckpointEntry, runner: TaskRunner) -> None:
    """Store on `entry` the protocol of each task scored there; update those tasks' metadata."""
    entry.protocol = runner.protocols(list(entry.tasks))
    meta = {n: vars(i) for n, i in runner.info().items()}
    record.tasks_meta.update({t: meta[t] for t in entry.tasks if t in meta})


def _evaluate_missing(setup: RunSetup, resume: ResumePlan, evaluate: Evaluate) -> None:
    """Re-score the eval points up to the resume checkpoint when the record holding them was
    lost or corrupt: their checkpoints are never pruned, so the resumed run still ends with the
    same record as an uninterrupted one (instead of lacking early points, or crashing when the
    newest checkpoint is the final step and nothing is evaluated again)."""
    steps = [s for s in setup.plan.eval_steps if s <= resume.step]
    if steps:
        log(f"record missing or corrupt: re-scoring checkpoint(s) {steps} from saved weights")
    model = setup.model
    assert resume.checkpoint is not None  # the caller re-scores only from a checkpoint
    for step in steps:
        ckpt = resume.checkpoint.parent / f"step_{step}"
        if verify_checkpoint(ckpt) is not None or weights_mismatch(model, ckpt) is not None:
            log(
                f"warning: checkpoint {ckpt} is not usable; "
                f"its evaluation is missing from the record"
            )
            continue
        load_weights(model, ckpt).eval()
        evaluate(model, step, step * setup.plan.tokens_per_step)
    model.train()  # train() restores the resume checkpoint's weights itself


def _compute(spec: RunSpec, setup: RunSetup, result: LoopResult, t_start: float) -> Compute:
    n_tokens = setup.plan.n_tokens
    return Compute(
        flops=training_flops(setup.stats.n_params, n_tokens),
        flops_convention=FLOPS_CONVENTION,
        tokens=n_tokens,
        steps=setup.plan.total_steps,
        wall_seconds=round(time.time() - t_start, 3),
        train_seconds=round(result.wall_seconds, 3),
        tokens_per_second=round(result.tokens_per_second, 1),
        warmup_seconds=_rounded(result.extra.get("warmup_seconds"), 3),
        warmup_steps=result.extra.get("warmup_steps"),
        device=result.device,
        torch_threads=result.extra.get("torch_threads"),
        resumed_from_step=result.resumed_from,
        peak_memory_bytes=result.peak_memory_bytes,
        peak_memory_kind=result.extra.get("peak_memory_kind"),
        world_size=result.extra.get("world_size", 1),
    )


def _rounded(x: float | None, digits: int) -> float | None:
    return None if x is None else round(x, digits)


def _fail(path: Path, record: RunRecord, tracker: Tracker, reason: str) -> None:
    """Mark the run failed with `reason`; a record that cannot be written (disk full) is said."""
    record.fail(reason)
    try:
        write_record(path, record)
    except OSError as err:
        log(f"run {record.run_id}: could not write the failed record ({err})")
    tracker.finish(record)
    log(f"run {record.run_id} failed: {reason}")


def _check_same_config(path: Path, spec: RunSpec) -> None:
    """Same run id must mean same semantic config; anything else is a collision."""
    cfg_path = path / "config.yaml"
    semantic = semantic_config(spec)
    if cfg_path.exists():
        existing = yaml.safe_load(cfg_path.read_text()) or {}
        if existing.get("semantic") != _yaml_roundtrip(semantic):
            raise ConfigError(
                f"out_root: run directory '{path}' holds a run with a different config; "
                "use another out_root or delete it"
            )
        return
    write_text(
        cfg_path, yaml.safe_dump({"semantic": semantic, "full": to_dict(spec)}, sort_keys=False)
    )


def _yaml_roundtrip(obj: Any) -> Any:
    return yaml.safe_load(yaml.safe_dump(obj, sort_keys=False))
