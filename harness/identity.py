"""Run identity: `run_id` is a short hash of the run's semantic config.

Keyed: model shape, tokenizer, the sources the run reads (a `files` source by a hash of its
files' relative names and bytes, not by where they are), the mix, validation sets, the
optimisation settings, the checkpoint schedule and the seed. Not keyed: paths, launcher,
logger, device and thread count, parallelism (ddp/fsdp), logging/checkpoint cadence, and the
list of downstream tasks — adding a task to a finished sweep is a backfill (`harness eval`),
not a new model.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from harness.config import to_dict
from train.sources import keyed_options, source_content
from train.specs import RunSpec, SourceSpec

OPERATIONAL_TRAIN_KEYS = (
    "device",
    "num_threads",
    "log_every",
    "checkpoint_every",
    "keep_checkpoints",
    "compile",
    "compile_mode",
    "loss_chunk",
    "activation_checkpointing",
    "parallel",
)
KEYED_EVAL_KEYS = ("num_checkpoints", "every_tokens")


def semantic_config(spec: RunSpec) -> dict[str, Any]:
    used = (
        set(spec.mix.weights)
        | {v.source for v in spec.validation}
        | set(spec.tokenizer.train_sources)
    )
    train = {k: v for k, v in to_dict(spec.train).items() if k not in OPERATIONAL_TRAIN_KEYS}
    tokenizer = {k: v for k, v in to_dict(spec.tokenizer).items() if k != "trust_remote_code"}
    return {
        "model": {k: v for k, v in to_dict(spec.model).items() if k != "name"},
        "tokenizer": tokenizer,
        "sources": {n: _source(spec.sources[n]) for n in sorted(used)},
        "mix": to_dict(spec.mix.weights),
        "validation": to_dict(spec.validation),
        "train": train,
        "eval": {k: getattr(spec.eval, k) for k in KEYED_EVAL_KEYS},
        "seed": spec.seed,
    }


def _source(src: SourceSpec) -> dict[str, Any]:
    """A source as configured, plus a hash of its content where the options do not pin it
    (`files`): a run whose corpus changed gets a new id instead of resuming on other text."""
    out = {**to_dict(src), "options": to_dict(keyed_options(src))}
    content = source_content(src)
    if content is not None:
        out["content"] = content
    return out


def run_id(spec: RunSpec) -> str:
    blob = json.dumps(semantic_config(spec), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:12]
