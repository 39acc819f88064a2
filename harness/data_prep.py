"""Shared, content-addressed inputs of a run: tokenizer, token caches, validation windows,
generated task data. Built once per cache root (safe under concurrent runs), then reused.
"""

from __future__ import annotations

import hashlib
import inspect
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import PreTrainedTokenizerBase

from common.errors import ConfigError, DataError
from harness.data_budget import cached_tokenizer_size, remote_sources
from toyworld.world import world_from_options, world_options
from train.cache_lock import build_dir_once
from train.mixture import eval_windows
from train.sources import stdlib_content
from train.specs import RunSpec
from train.token_cache import TokenCache, build_token_cache
from train.tokenizer import load_tokenizer, tokenizer_key


@dataclass
class RunData:
    tokenizer: PreTrainedTokenizerBase
    tokenizer_id: str
    train_caches: dict[str, TokenCache]
    val_windows: dict[str, torch.Tensor]


def prepare_data(spec: RunSpec) -> RunData:
    cache_dir = Path(spec.cache_dir)
    tok = load_tokenizer(spec.tokenizer, spec.sources, cache_dir)
    tok_id = tokenizer_key(spec.tokenizer, spec.sources)
    caches = {}
    for name in sorted(spec.mix.weights):
        caches[name] = build_token_cache(spec.sources[name], "train", tok, tok_id, cache_dir)
    windows = {}
    for vs in spec.validation:
        cache = build_token_cache(spec.sources[vs.source], vs.split, tok, tok_id, cache_dir)
        windows[vs.name] = eval_windows(cache, spec.train.seq_len, vs.max_tokens)
    return RunData(tok, tok_id, caches, windows)


def available_tokens(spec: RunSpec) -> dict[str, int | None]:
    """Tokens in the train split of each source of the mix, for `harness plan`. With every
    source local this is `prepare_data` itself (so plan meets every data error `run` would, and
    the caches it builds are the ones the run reuses); a remote source is never loaded (None),
    nor is any source when the tokenizer itself would need the network."""
    remote = set(remote_sources(spec))
    if not remote:
        return {n: c.n_tokens for n, c in prepare_data(spec).train_caches.items()}
    tok_spec = spec.tokenizer
    unknown: dict[str, int | None] = {n: None for n in spec.mix.weights}
    if tok_spec.kind == "pretrained" and cached_tokenizer_size(tok_spec) is None:
        return unknown
    if tok_spec.kind == "bpe" and remote & set(tok_spec.train_sources):
        return unknown
    cache_dir = Path(spec.cache_dir)
    tok = load_tokenizer(tok_spec, spec.sources, cache_dir)
    tok_id = tokenizer_key(tok_spec, spec.sources)
    return {
        n: None
        if n in remote
        else build_token_cache(spec.sources[n], "train", tok, tok_id, cache_dir).n_tokens
        for n in sorted(spec.mix.weights)
    }


def _code_version(*modules) -> str:
    """Hash of the generator's source: changing the generator invalidates the cached data."""
    h = hashlib.sha256()
    for m in modules:
        h.update(inspect.getsource(m).encode())
    return h.hexdigest()[:12]


def toy_task_key(spec: RunSpec) -> str:
    """The cache key of the toy tasks: the world, the number of items, the generator's code,
    and (toy_code's items come from this Python's stdlib) its version and bytes."""
    import toyworld.corpus as corpus
    import toyworld.tasks as toytasks

    src = spec.sources.get("toyworld")
    if src is None or src.kind != "toyworld":
        raise ConfigError("eval.toy_tasks: needs a source named 'toyworld' of kind toyworld")
    world_seed, n_entities = world_options(src.options)
    # n_unseen changes the world; only named in the key when set, so existing keys stand
    world_key = (world_seed, n_entities) + (
        (int(src.options["n_unseen"]),) if src.options.get("n_unseen") is not None else ()
    )
    code = _code_version(toytasks, corpus)
    return hashlib.sha256(
        repr((*world_key, spec.eval.n_per_task, code, stdlib_content())).encode()
    ).hexdigest()[:16]


def toy_task_dir(spec: RunSpec) -> tuple[Path, dict[str, float]]:
    """Generate the toy-world lm-eval tasks (once per key, `toy_task_key`); return their
    folder (an lm-eval include path) and each task's chance level. A cached folder is
    verified on every use (`load_task_specs`)."""
    import toyworld.tasks as toytasks

    target = Path(spec.cache_dir).resolve() / "toytasks" / toy_task_key(spec)
    src = spec.sources["toyworld"]
    world_seed, _ = world_options(src.options)

    def fill(tmp: Path) -> None:
        world = world_from_options(src.options)
        toytasks.write_toy_tasks(
            world, tmp, n_per_task=spec.eval.n_per_task, seed=world_seed, final_dir=target
        )

    build_dir_once(target, fill)
    try:
        specs = toytasks.load_task_specs(target)
    except ValueError as err:  # a cached task file was edited or damaged
        raise DataError(f"{err}; delete {target} to regenerate the toy tasks") from None
    return target, {name: s.chance for name, s in specs.items()}
