"""Hydra config -> plain, validated dataclasses (`train.specs`). The only place that reads
OmegaConf; everything downstream takes the dataclasses.

Every check raises `ConfigError` with one line naming the bad key and value.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from common.errors import ConfigError
from common.fields import field_kwargs
from train.mixture import check_weights, normalise_weights
from train.schedule import SCHEDULES
from train.sources import KINDS
from train.specs import (
    COMPILE_MODES,
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


def build_dataclass(cls: type, values: Any, where: str):
    """`cls(**values)`, rejecting unknown keys; lists become tuples where the field is one."""
    try:
        return cls(**field_kwargs(cls, values, where, ConfigError))
    except TypeError as err:
        raise ConfigError(f"{where}: {err}") from None


def _source(name: str, body: Any) -> SourceSpec:
    source = build_dataclass(SourceSpec, body, f"sources.{name}")
    if source.name != name:
        raise ConfigError(f"sources.{name}.name: '{source.name}' differs from its key '{name}'")
    if source.kind not in KINDS:
        raise ConfigError(
            f"sources.{name}.kind: unknown source kind '{source.kind}' (known: {', '.join(KINDS)})"
        )
    if not isinstance(source.options, dict):
        raise ConfigError(f"sources.{name}.options: must be a mapping, got {source.options!r}")
    return source


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
    if t.compile_mode not in COMPILE_MODES:
        raise ConfigError(
            f"train.compile_mode: unknown mode '{t.compile_mode}' "
            f"(known: {', '.join(COMPILE_MODES)})"
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
    if not isinstance(ev.log_samples, bool):
        raise ConfigError(f"eval.log_samples: must be true or false, got {ev.log_samples!r}")
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


@dataclass(frozen=True)
class Keys:
    """What the input calls the parts of a spec whose name differs between a composed Hydra
    config and a run's saved config.yaml, so that an error names the key the user wrote."""

    sweep: str = "sweep"
    mix: str = "mix.weights"
    validation: str = "validation"


HYDRA_KEYS = Keys(sweep="sweep_name", mix="data.weights", validation="validation.sets")


def spec_from_dict(d: Any, keys: Keys = Keys()) -> RunSpec:
    """The one constructor of a `RunSpec`, from its plain-dict form (`to_dict(spec)`, the
    `full:` part of a run's config.yaml). Every value is checked here, before any run folder
    or record exists: `harness run` (through `run_spec`), `harness run --from` and backfill
    all come through this function."""
    d = field_kwargs(RunSpec, d, "config", ConfigError)
    for f in dataclasses.fields(RunSpec):
        if f.default is dataclasses.MISSING and f.name not in d:
            raise ConfigError(f"{f.name}: missing")
    raw_sources = d["sources"]
    if not isinstance(raw_sources, dict):
        raise ConfigError(f"sources: must be a mapping of source names, got {raw_sources!r}")
    sources = {str(n): _source(str(n), b) for n, b in raw_sources.items()}
    model = build_dataclass(ModelSpec, d["model"], "model")
    _check_model(model)
    tokenizer = build_dataclass(TokenizerSpec, d["tokenizer"], "tokenizer")
    _check_tokenizer(tokenizer, sources)
    mix = _mix(d["mix"], sources, keys)
    train = build_dataclass(TrainSpec, d["train"], "train")
    _check_train(train, model)
    ev = build_dataclass(EvalSpec, d["eval"], "eval")
    _check_eval(ev)
    seed = d["seed"]
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ConfigError(f"seed: must be an integer, got {seed!r}")
    if not 0 <= seed < 2**32:  # numpy and torch seeds
        raise ConfigError(f"seed: must be in [0, 2**32), got {seed!r}")
    sweep = check_name(keys.sweep, d["sweep"])
    cache_dir = d.get("cache_dir", ".cache/harness")
    if not isinstance(cache_dir, str) or not cache_dir or "\0" in cache_dir:
        raise ConfigError(f"cache_dir: must be a folder path, got {cache_dir!r}")
    return RunSpec(
        sweep=sweep,
        seed=seed,
        model=model,
        tokenizer=tokenizer,
        sources=sources,
        mix=mix,
        validation=_validation(d["validation"], sources, keys),
        train=train,
        eval=ev,
        cache_dir=str(Path(cache_dir)),
    )


TOKENIZER_KINDS = ("bpe", "pretrained")


def _check_tokenizer(t: TokenizerSpec, sources: dict[str, SourceSpec]) -> None:
    if t.kind not in TOKENIZER_KINDS:
        raise ConfigError(
            f"tokenizer.kind: unknown kind '{t.kind}' (known: {', '.join(TOKENIZER_KINDS)})"
        )
    for key in ("vocab_size", "train_docs"):
        _number(f"tokenizer.{key}", getattr(t, key), 1, math.inf, integer=True)
    if not isinstance(t.trust_remote_code, bool):
        raise ConfigError(
            f"tokenizer.trust_remote_code: must be true or false, got {t.trust_remote_code!r}"
        )
    if not isinstance(t.train_sources, tuple):
        raise ConfigError(f"tokenizer.train_sources: must be a list, got {t.train_sources!r}")


def _mix(raw: Any, sources: dict[str, SourceSpec], keys: Keys) -> MixSpec:
    """The mix as given (weights already normalised: `run_spec` normalises what Hydra composed,
    a saved config holds normalised weights, and normalising twice could move the last bit of
    a weight and with it the run id)."""
    body = field_kwargs(MixSpec, raw, keys.mix.rpartition(".")[0] or "mix", ConfigError)
    weights = body.get("weights")
    if not isinstance(weights, dict):
        raise ConfigError(f"{keys.mix}: must be a mapping of source names to weights")
    for name, w in weights.items():
        if name not in sources:
            raise ConfigError(
                f"{keys.mix}.{name}: unknown source '{name}' (known: {', '.join(sources)})"
            )
        if not isinstance(w, (int, float)) or isinstance(w, bool):
            raise ConfigError(f"{keys.mix}.{name}: weight must be a number, got {w!r}")
    check_weights(weights, keys.mix)
    total = sum(weights.values())
    if abs(total - 1.0) > 1e-6:
        raise ConfigError(f"{keys.mix}: weights must sum to 1, got {total!r} ({weights})")
    return MixSpec(name=str(body.get("name", "mix")), weights=dict(weights))


def _validation(raw: Any, sources: dict[str, SourceSpec], keys: Keys) -> tuple[ValSetSpec, ...]:
    if not isinstance(raw, (list, tuple)):
        raise ConfigError(f"{keys.validation}: must be a list of validation sets, got {raw!r}")
    sets = []
    for body in raw:
        name = body.get("name") if isinstance(body, dict) else None
        where = f"{keys.validation}.{name}"
        vs = build_dataclass(ValSetSpec, body, where)
        if vs.source not in sources:
            raise ConfigError(
                f"{where}.source: unknown source '{vs.source}' (known: {', '.join(sources)})"
            )
        allowed = SPLITS.get(sources[vs.source].kind)
        if allowed is not None and vs.split not in allowed:
            raise ConfigError(
                f"{where}.split: unknown split '{vs.split}' for source '{vs.source}' "
                f"(known: {', '.join(allowed)})"
            )
        _number(f"{where}.max_tokens", vs.max_tokens, 1, math.inf, integer=True)
        sets.append(vs)
    if not sets:
        raise ConfigError(f"{keys.validation}: no validation sets configured")
    return tuple(sets)


def run_spec(cfg: DictConfig) -> RunSpec:
    """Validate a composed `harness run` config and turn it into a `RunSpec`: Hydra's layout
    (sources with inline options, `data`, `validation.sets`, `sweep_name`) is rearranged into
    the spec's and handed to `spec_from_dict`."""
    c = _plain(cfg)
    sources = {}
    for name, body in (c.get("sources") or {}).items():
        body = dict(body) if isinstance(body, dict) else body
        kind = body.pop("kind", None) if isinstance(body, dict) else None
        sources[name] = {"name": name, "kind": kind, "options": body}
    data = c.get("data") or {}
    weights = {}
    for name, w in (data.get("weights") or {}).items():
        if name not in sources:  # before normalising: the unknown name is the clearer error
            raise ConfigError(
                f"data.weights.{name}: unknown source '{name}' (known: {', '.join(sources)})"
            )
        try:
            weights[str(name)] = float(w)
        except (TypeError, ValueError):
            raise ConfigError(f"data.weights.{name}: weight must be a number, got {w!r}") from None
    train = dict(c.get("train") or {})
    if train.get("tokens") is not None:
        # an explicit token count replaces the default multiplier (`train.tokens=N` alone
        # works); the spec then holds tokens_per_param=None, as when both were written out
        train["tokens_per_param"] = None
    val = c.get("validation") or {}
    max_tokens = val.get("max_tokens", 65536)
    _number("validation.max_tokens", max_tokens, 1, math.inf, integer=True)
    sets = [
        {"name": n, "max_tokens": max_tokens, **(b or {})}
        for n, b in (val.get("sets") or {}).items()
    ]
    return spec_from_dict(
        {
            "sweep": c.get("sweep_name", "default"),
            "seed": c.get("seed", 0),
            "model": c.get("model"),
            "tokenizer": c.get("tokenizer"),
            "sources": sources,
            "mix": {"name": str(data.get("name", "mix")), "weights": normalise_weights(weights)},
            "validation": sets,
            "train": train,
            "eval": c.get("eval"),
            "cache_dir": c.get("cache_dir", ".cache/harness"),
        },
        HYDRA_KEYS,
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
