"""Hydra config -> plain, validated dataclasses (`train.specs`). The only place that reads
OmegaConf; everything downstream takes the dataclasses.

Every check raises `ConfigError` with one line naming the bad key and value.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from common.errors import ConfigError
from train.mixture import normalise_weights
from train.schedule import SCHEDULES
from train.sources import KINDS
from train.specs import (
    PARALLEL_MODES,
    EvalSpec,
    MixSpec,
    ModelSpec,
    RunSpec,
    SourceSpec,
    TokenizerSpec,
    TrainSpec,
    ValSetSpec,
)

SPLITS = {
    "toyworld": ("train", "val", "shifted"),
    "stdlib_code": ("train", "val"),
    "files": ("train", "val"),
    "hf": None,
}


def _plain(cfg: Any) -> Any:
    return OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else cfg


def build_dataclass(cls: type, values: dict[str, Any], where: str):
    """`cls(**values)`, rejecting unknown keys; lists become tuples where the field is one."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in values:
        if key not in fields:
            raise ConfigError(f"{where}.{key}: unknown key (known: {', '.join(fields)})")
    kwargs = {}
    for key, val in values.items():
        if isinstance(val, list) and "tuple" in str(fields[key].type):
            val = tuple(val)
        kwargs[key] = val
    try:
        return cls(**kwargs)
    except TypeError as err:
        raise ConfigError(f"{where}: {err}") from None


def _sources(cfg: dict) -> dict[str, SourceSpec]:
    out = {}
    for name, body in (cfg or {}).items():
        body = dict(body)
        kind = body.pop("kind", None)
        if kind not in KINDS:
            raise ConfigError(
                f"sources.{name}.kind: unknown source kind '{kind}' (known: {', '.join(KINDS)})"
            )
        out[name] = SourceSpec(name=name, kind=kind, options=body)
    return out


def _positive(where: str, value: Any, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
        raise ConfigError(f"{where}: must be a positive number, got {value!r}")


def _check_train(t: TrainSpec, model: ModelSpec) -> None:
    if (t.tokens is None) == (t.tokens_per_param is None):
        raise ConfigError(
            f"train.tokens / train.tokens_per_param: set exactly one "
            f"(got tokens={t.tokens}, tokens_per_param={t.tokens_per_param})"
        )
    _positive("train.tokens", t.tokens, allow_none=True)
    _positive("train.tokens_per_param", t.tokens_per_param, allow_none=True)
    for key in ("batch_size", "seq_len", "lr", "log_every"):
        _positive(f"train.{key}", getattr(t, key))
    if t.seq_len > model.max_seq_len:
        raise ConfigError(
            f"train.seq_len: {t.seq_len} exceeds the context of model '{model.name}' "
            f"(max_seq_len {model.max_seq_len})"
        )
    if t.schedule not in SCHEDULES:
        raise ConfigError(
            f"train.schedule: unknown schedule '{t.schedule}' (known: {', '.join(SCHEDULES)})"
        )
    if t.device not in ("auto", "cpu", "cuda") and not t.device.startswith("cuda:"):
        raise ConfigError(f"train.device: unknown device '{t.device}' (known: auto, cpu, cuda)")
    if t.precision not in ("auto", "fp32", "bf16"):
        raise ConfigError(
            f"train.precision: unknown precision '{t.precision}' (known: auto, fp32, bf16)"
        )
    if t.parallel not in PARALLEL_MODES:
        raise ConfigError(
            f"train.parallel: unknown mode '{t.parallel}' (known: {', '.join(PARALLEL_MODES)})"
        )
    _check_optimiser(t)


def _number(
    where: str,
    value: Any,
    lo: float,
    hi: float,
    lo_open: bool = False,
    hi_open: bool = False,
    integer: bool = False,
) -> None:
    """`value` is a finite number (an integer when asked) in [lo, hi], ends open when asked."""
    kinds = (int,) if integer else (int, float)
    ok = isinstance(value, kinds) and not isinstance(value, bool) and math.isfinite(value)
    ok = (
        ok and (value > lo if lo_open else value >= lo) and (value < hi if hi_open else value <= hi)
    )
    if not ok:
        what = "an integer" if integer else "a finite number"
        interval = f"{'(' if lo_open else '['}{lo}, {hi}{')' if hi_open else ']'}"
        raise ConfigError(f"{where}: must be {what} in {interval}, got {value!r}")


def _check_optimiser(t: TrainSpec) -> None:
    """Settings that would train uphill, drive the lr negative or crash mid-run are refused
    here, before any record is written."""
    inf = math.inf
    _number("train.lr", t.lr, 0, inf, lo_open=True, hi_open=True)
    _number("train.min_lr_ratio", t.min_lr_ratio, 0, 1)
    _number("train.warmup_frac", t.warmup_frac, 0, 1)
    _number("train.decay_frac", t.decay_frac, 0, 1)
    _number("train.weight_decay", t.weight_decay, 0, inf, hi_open=True)
    _number("train.beta1", t.beta1, 0, 1, hi_open=True)
    _number("train.beta2", t.beta2, 0, 1, hi_open=True)
    if t.grad_clip is not None:
        _number("train.grad_clip", t.grad_clip, 0, inf, lo_open=True, hi_open=True)
    _number("train.spike_factor", t.spike_factor, 0, inf, hi_open=True)
    for key in ("batch_size", "seq_len", "log_every"):
        _number(f"train.{key}", getattr(t, key), 1, inf, integer=True)
    for key in ("num_threads", "checkpoint_every", "keep_checkpoints", "loss_chunk"):
        _number(f"train.{key}", getattr(t, key), 0, inf, integer=True)
    for key in ("compile", "activation_checkpointing"):
        if not isinstance(getattr(t, key), bool):
            raise ConfigError(f"train.{key}: must be true or false, got {getattr(t, key)!r}")


def _check_model(m: ModelSpec) -> None:
    inf = math.inf
    for key in ("d_model", "n_layers", "n_heads", "max_seq_len"):
        _number(f"model.{key}", getattr(m, key), 1, inf, integer=True)
    for key in ("n_kv_heads", "ffn_hidden"):
        if getattr(m, key) is not None:
            _number(f"model.{key}", getattr(m, key), 1, inf, integer=True)
    if m.d_model % m.n_heads:
        raise ConfigError(f"model.n_heads: {m.n_heads} does not divide d_model {m.d_model}")
    if m.n_kv_heads is not None and m.n_heads % m.n_kv_heads:
        raise ConfigError(f"model.n_kv_heads: {m.n_kv_heads} does not divide n_heads {m.n_heads}")
    _number("model.rope_theta", m.rope_theta, 0, inf, lo_open=True, hi_open=True)
    if not isinstance(m.tie_embeddings, bool):
        raise ConfigError(f"model.tie_embeddings: must be true or false, got {m.tie_embeddings!r}")


# More shots than any task's few-shot pool is a typo (lm-eval fails deep in sampling)
MAX_SHOTS = 100
_SHOT_SUFFIX = re.compile(r"@(\d+)shot$")
_BATCH_SIZE = re.compile(r"^auto(:[1-9]\d*)?$")


def _check_eval(ev: EvalSpec) -> None:
    """Every eval.* value lm-eval or the schedule would fail on mid-run (after the record
    exists) or accept silently, refused here in one line."""
    inf = math.inf
    if ev.tasks_at not in ("all", "final"):
        raise ConfigError(f"eval.tasks_at: unknown value '{ev.tasks_at}' (known: all, final)")
    _number("eval.num_checkpoints", ev.num_checkpoints, 1, inf, integer=True)
    if ev.every_tokens is not None:
        _number("eval.every_tokens", ev.every_tokens, 1, inf, integer=True)
    if ev.limit is not None:
        _number("eval.limit", ev.limit, 1, inf, integer=True)
    if ev.toy_tasks:  # the other suites carry n_per_task: 0, unused
        _number("eval.n_per_task", ev.n_per_task, 1, inf, integer=True)
    _check_batch_size(ev.batch_size)
    if not isinstance(ev.tasks, tuple):
        raise ConfigError(f"eval.tasks: must be a list of task names, got {ev.tasks!r}")
    for task in ev.tasks:
        _check_task_name(task)


def _check_batch_size(value: Any) -> None:
    if isinstance(value, str) and _BATCH_SIZE.match(value):
        return
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return
    raise ConfigError(
        f"eval.batch_size: must be an integer >= 1, 'auto' or 'auto:N', got {value!r}"
    )


def _check_task_name(task: Any) -> None:
    if not isinstance(task, str) or not task.strip():
        raise ConfigError(f"eval.tasks: {task!r} is not a task name")
    shots = _SHOT_SUFFIX.search(task)
    if shots and int(shots[1]) > MAX_SHOTS:
        raise ConfigError(f"eval.tasks: '{task}' asks for {shots[1]} shots (at most {MAX_SHOTS})")


def check_name(where: str, value: Any) -> str:
    """A name used as a path component (sweep name, run name): no separators, no `..`."""
    name = str(value)
    if (
        not name
        or name in (".", "..")
        or "/" in name
        or "\\" in name
        or os.sep in name
        or "\0" in name
    ):
        raise ConfigError(f"{where}: '{name}' is not a valid name (no path separators or '..')")
    return name


def _validation(cfg: dict, sources: dict[str, SourceSpec]) -> tuple[ValSetSpec, ...]:
    max_tokens = cfg.get("max_tokens", 65536)
    _number("validation.max_tokens", max_tokens, 1, math.inf, integer=True)
    sets = []
    for name, body in (cfg.get("sets") or {}).items():
        src = body.get("source")
        if src not in sources:
            raise ConfigError(
                f"validation.sets.{name}.source: unknown source '{src}' "
                f"(known: {', '.join(sources)})"
            )
        split = body.get("split", "val")
        allowed = SPLITS.get(sources[src].kind)
        if allowed is not None and split not in allowed:
            raise ConfigError(
                f"validation.sets.{name}.split: unknown split '{split}' for source '{src}' "
                f"(known: {', '.join(allowed)})"
            )
        set_max = body.get("max_tokens", max_tokens)
        _number(f"validation.sets.{name}.max_tokens", set_max, 1, math.inf, integer=True)
        sets.append(ValSetSpec(name=name, source=src, split=split, max_tokens=set_max))
    if not sets:
        raise ConfigError("validation.sets: no validation sets configured")
    return tuple(sets)


def run_spec(cfg: DictConfig) -> RunSpec:
    """Validate a composed `harness run` config and turn it into a `RunSpec`."""
    c = _plain(cfg)
    sources = _sources(c.get("sources"))
    model = build_dataclass(ModelSpec, c["model"], "model")
    tokenizer = build_dataclass(TokenizerSpec, c["tokenizer"], "tokenizer")
    data = c["data"]
    weights = {str(k): float(v) for k, v in (data.get("weights") or {}).items()}
    for name in weights:
        if name not in sources:
            raise ConfigError(
                f"data.weights.{name}: unknown source '{name}' (known: {', '.join(sources)})"
            )
    mix = MixSpec(name=str(data.get("name", "mix")), weights=normalise_weights(weights))
    if c["train"].get("tokens") is not None:
        # an explicit token count replaces the default multiplier (`train.tokens=N` alone
        # works); the spec then holds tokens_per_param=None, as when both were written out
        c["train"]["tokens_per_param"] = None
    _check_model(model)
    train = build_dataclass(TrainSpec, c["train"], "train")
    _check_train(train, model)
    ev = build_dataclass(EvalSpec, c["eval"], "eval")
    _check_eval(ev)
    seed = c.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ConfigError(f"seed: must be an integer, got {seed!r}")
    if not 0 <= seed < 2**32:  # numpy and torch seeds
        raise ConfigError(f"seed: must be in [0, 2**32), got {seed!r}")
    sweep = check_name("sweep_name", c.get("sweep_name", "default"))
    return RunSpec(
        sweep=sweep,
        seed=seed,
        model=model,
        tokenizer=tokenizer,
        sources=sources,
        mix=mix,
        validation=_validation(c.get("validation") or {}, sources),
        train=train,
        eval=ev,
        cache_dir=str(Path(c.get("cache_dir", ".cache/harness"))),
    )


def to_dict(obj: Any) -> Any:
    """A dataclass tree as plain JSON-able values."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {str(k): to_dict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    return obj
