"""`harness eval root=<sweep dir> eval=<suite>`: score the saved checkpoints of existing
runs on tasks they lack, without retraining. Tasks already present at a checkpoint are
skipped. Every checkpoint is verified against its sha256 manifest before it is scored; one that
fails is recorded as failed (`failure` on its entry) and the others go on. Each checkpoint's
results are merged into the record under the run's lock as soon as they exist, so concurrent
backfills of one root never drop each other's tasks and a later failure loses nothing.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from common.errors import ConfigError, DataError
from common.log import log
from eval.samples import merge_samples, sample_rows
from harness.config import run_spec, spec_from_dict, to_dict
from harness.run_setup import task_runner
from harness.store import iter_run_dirs, read_record, write_record
from train.cache_lock import file_lock


def _load_checkpoint(path: Path):
    """(model in eval mode, tokenizer) of a saved checkpoint: the architecture from its
    config.json, the weights through train.checkpoint.load_weights like every other load."""
    from safetensors import SafetensorError
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from train.checkpoint import load_weights, verify_checkpoint

    reason = verify_checkpoint(path, deep=True)  # hashed: a same-size edit is caught too
    if reason is not None:
        raise DataError(f"checkpoint '{path}' does not load: {reason}")
    try:
        config = AutoConfig.from_pretrained(path, trust_remote_code=False)
        model = load_weights(
            AutoModelForCausalLM.from_config(config, trust_remote_code=False), path
        )
        tok = AutoTokenizer.from_pretrained(path, trust_remote_code=False)
    except (OSError, ValueError, RuntimeError, SafetensorError) as err:
        raise DataError(f"checkpoint '{path}' does not load: {str(err).splitlines()[0]}") from None
    return model.eval(), tok


def backfill(cfg: DictConfig) -> int:
    """Evaluate missing tasks on every checkpoint of every complete run under `cfg.root`.

    Returns the number of (run, checkpoint) pairs that gained results.
    """
    root = cfg.get("root")
    if not root:
        raise ConfigError("root: required (the sweep's output directory, e.g. outputs/demo)")
    runs = [p for p in iter_run_dirs(Path(root)) if (rec := read_record(p)) and rec.is_complete]
    if not runs:
        raise DataError(f"root: no complete runs under '{root}'")
    base = run_spec(cfg)
    if not base.eval.tasks:
        raise ConfigError(f"eval.tasks: suite '{base.eval.suite}' names no tasks")
    updated, failed = 0, list[str]()
    for path in runs:
        gained, bad = _backfill_run(path, base)
        updated, failed = updated + gained, failed + bad
    log(f"backfill: {updated} checkpoint(s) gained results across {len(runs)} run(s)")
    if failed:  # after every other checkpoint was scored and saved: the exit status says it
        raise DataError(
            f"backfill: {len(failed)} checkpoint(s) could not be scored and are recorded "
            f"as failed; first: {failed[0]}"
        )
    return updated


def _backfill_run(path: Path, base) -> tuple[int, list[str]]:
    """Score one run's checkpoints on the tasks they lack; each checkpoint's results are merged
    into the record as soon as they exist. A checkpoint that fails verification or loading is
    recorded as failed and costs only itself."""
    record = read_record(path)
    if record is None:  # backfill() picked runs with a complete record
        raise DataError(f"{path}: no record to backfill")
    # the run's own sources: toy tasks are generated from the world that run trained on (its
    # mix and validation sets come along: they name those sources)
    own: dict[str, Any] = {k: record.config_block(k) for k in ("sources", "mix")}
    own["validation"] = record.config.get("validation")
    runner = task_runner(spec_from_dict({**to_dict(base), **own}))
    if runner is None:  # backfill() checked that the suite names tasks
        raise ConfigError(f"eval.tasks: suite '{base.eval.suite}' names no tasks")
    meta = {n: vars(i) for n, i in runner.info().items()}
    max_len = int(record.config_block("model")["max_seq_len"])
    updated, failed = 0, list[str]()
    for entry in record.checkpoints:
        missing = [t for t in runner.names if t not in entry.tasks]
        if not missing:
            continue
        ckpt = path / "checkpoints" / f"step_{entry.step}"
        if not ckpt.exists():
            print(
                f"warning: {path.name} step {entry.step}: checkpoint not kept; skipped",
                file=sys.stderr,
            )
            continue
        try:
            model, tok = _load_checkpoint(ckpt)
        except DataError as err:
            print(f"warning: {path.name} step {entry.step}: skipped: {err}", file=sys.stderr)
            _merge(path, entry.step, {}, {}, failure=str(err))
            failed.append(str(err))
            continue
        scores = runner.evaluate(model, tok, max_length=max_len)
        scored = {t: scores[t] for t in missing if t in scores}
        items = (
            sample_rows(
                path.name,
                entry.step,
                entry.tokens,
                {t: runner.last_samples[t] for t in scored if t in runner.last_samples},
            )
            if base.eval.log_samples
            else []
        )
        _merge(path, entry.step, scored, {t: meta[t] for t in scored if t in meta}, runner, items)
        updated += 1
        log(f"{path.name} step {entry.step}: added {', '.join(missing)}")
    return updated, failed


def _merge(
    path: Path,
    step: int,
    tasks: dict,
    meta: dict,
    runner=None,
    items: list[dict] | None = None,
    failure: str | None = None,
) -> None:
    """Add `tasks` at `step` to the record as it is on disk now, under the run's lock: two
    backfills of one run serialise here and neither drops the other's tasks. Only the tasks
    scored here change: their metadata (`meta`) and, on the entry, the protocol `runner`
    scored them with; a task the run holds under another protocol is said. With
    eval.log_samples, the tasks' items (`items`) join the checkpoint's file first."""
    with file_lock(path / ".lock"):
        if items:
            merge_samples(path, step, items)
        record = read_record(path)
        if record is None:
            raise DataError(f"record of run '{path.name}' became unreadable during backfill")
        protocols = runner.protocols(list(tasks)) if runner is not None else {}
        for line in record.protocol_changes(protocols):
            print(
                f"warning: {path.name} step {step}: scored under another protocol than the "
                f"run's other checkpoints ({line}); each entry keeps its own",
                file=sys.stderr,
            )
        record.tasks_meta.update(meta)
        for entry in record.checkpoints:
            if entry.step == step:
                entry.tasks.update(tasks)
                entry.protocol.update(protocols)
                entry.failure = failure
        write_record(path, record)
