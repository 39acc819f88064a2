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
from harness.config import run_spec
from harness.data_prep import log
from harness.runner import task_runner
from harness.store import iter_run_dirs, read_record, write_record
from train.specs import SourceSpec


def _load_checkpoint(path: Path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from train.checkpoint import verify_checkpoint

    reason = verify_checkpoint(path, deep=False)
    if reason is not None:
        raise DataError(f"checkpoint '{path}' does not load: {reason}")
    try:
        model = AutoModelForCausalLM.from_pretrained(path, trust_remote_code=False)
        tok = AutoTokenizer.from_pretrained(path, trust_remote_code=False)
    except (OSError, ValueError) as err:
        raise DataError(f"checkpoint '{path}' does not load: {str(err).splitlines()[0]}") from None
    return model.eval(), tok


def backfill(cfg: DictConfig) -> int:
    """Evaluate missing tasks on every checkpoint of every complete run under `cfg.root`.

    Returns the number of (run, checkpoint) pairs that gained results.
    """
    root = cfg.get("root")
    if not root:
        raise ConfigError("root: required (the sweep's output directory, e.g. outputs/demo)")
    runs = [p for p in iter_run_dirs(Path(root)) if (rec := read_record(p)) and rec["status"] == "complete"]
    if not runs:
        raise DataError(f"root: no complete runs under '{root}'")
    base = run_spec(cfg)
    if not base.eval.tasks:
        raise ConfigError(f"eval.tasks: suite '{base.eval.suite}' names no tasks")
    updated = 0
    for path in runs:
        record = read_record(path)
        sources = {n: SourceSpec(n, s["kind"], s["options"]) for n, s in record["config"]["sources"].items()}
        spec = dataclasses.replace(base, sources=sources)
        runner = task_runner(spec)
        info = runner.info()
        record.setdefault("tasks_meta", {}).update({n: vars(i) for n, i in info.items()})
        max_len = int(record["config"]["model"]["max_seq_len"])
        for entry in record["checkpoints"]:
            missing = [t for t in runner.names if t not in entry.get("tasks", {})]
            if not missing:
                continue
            ckpt = path / "checkpoints" / f"step_{entry['step']}"
            if not ckpt.exists():
                print(f"warning: {path.name} step {entry['step']}: checkpoint not kept; skipped", file=sys.stderr)
                continue
            model, tok = _load_checkpoint(ckpt)
            scores = runner.evaluate(model, tok, max_length=max_len)
            entry.setdefault("tasks", {}).update({t: scores[t] for t in missing if t in scores})
            updated += 1
            log(f"{path.name} step {entry['step']}: added {', '.join(missing)}")
        write_record(path, record)
    log(f"backfill: {updated} checkpoint(s) gained results across {len(runs)} run(s)")
    return updated
