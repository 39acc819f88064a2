"""`harness eval root=<sweep dir> eval=<suite>`: score the saved checkpoints of existing
runs on tasks they lack, without retraining. Each record is updated atomically after each
run, and tasks already present at a checkpoint are skipped.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

from omegaconf import DictConfig

from common.errors import ConfigError, DataError
from common.log import log
from harness.config import run_spec
from harness.run_setup import task_runner
from harness.store import iter_run_dirs, read_record, write_record
from train.specs import SourceSpec


def _load_checkpoint(path: Path):
    """(model in eval mode, tokenizer) of a saved checkpoint: the architecture from its
    config.json, the weights through train.checkpoint.load_weights like every other load."""
    from safetensors import SafetensorError
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from train.checkpoint import load_weights, verify_checkpoint

    reason = verify_checkpoint(path, deep=False)
    if reason is not None:
        raise DataError(f"checkpoint '{path}' does not load: {reason}")
    try:
        config = AutoConfig.from_pretrained(path, trust_remote_code=False)
        model = load_weights(AutoModelForCausalLM.from_config(config, trust_remote_code=False), path)
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
    updated = 0
    for path in runs:
        record = read_record(path)
        # the run's own sources: toy tasks are generated from the world that run trained on
        sources = {n: SourceSpec(n, s["kind"], s["options"]) for n, s in record.config_block("sources").items()}
        spec = dataclasses.replace(base, sources=sources)
        runner = task_runner(spec)
        record.tasks_meta.update({n: vars(i) for n, i in runner.info().items()})
        max_len = int(record.config_block("model")["max_seq_len"])
        for entry in record.checkpoints:
            missing = [t for t in runner.names if t not in entry.tasks]
            if not missing:
                continue
            ckpt = path / "checkpoints" / f"step_{entry.step}"
            if not ckpt.exists():
                print(f"warning: {path.name} step {entry.step}: checkpoint not kept; skipped", file=sys.stderr)
                continue
            model, tok = _load_checkpoint(ckpt)
            scores = runner.evaluate(model, tok, max_length=max_len)
            entry.tasks.update({t: scores[t] for t in missing if t in scores})
            updated += 1
            log(f"{path.name} step {entry.step}: added {', '.join(missing)}")
        write_record(path, record)
    log(f"backfill: {updated} checkpoint(s) gained results across {len(runs)} run(s)")
    return updated
