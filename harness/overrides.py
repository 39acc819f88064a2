"""Command-line overrides checked before anything runs: an unknown key stops with one line
that names it and suggests the closest existing key (Hydra's own message is five lines, exit
1, and names no alternative)."""

from __future__ import annotations

import difflib
from typing import Any

from omegaconf import DictConfig, OmegaConf

from common.errors import ConfigError

_MISSING = object()


def split_override(arg: str) -> tuple[str, str, str] | None:
    """(prefix, key, value) of `[+~]key=value`, or None for flags and bare words."""
    if arg.startswith("-") or "=" not in arg:
        return None
    head, _, value = arg.partition("=")
    prefix = head[: len(head) - len(head.lstrip("+~"))]
    return prefix, head[len(prefix) :], value


def first_choice(value: str) -> str:
    """The first value of a sweep list `a,b,c` (brackets and quotes kept whole), so one
    config of a sweep can be composed to check the keys."""
    depth, quote = 0, ""
    for i, ch in enumerate(value):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "[{(":
            depth += 1
        elif ch in "]})":
            depth -= 1
        elif ch == "," and depth == 0:
            return value[:i]
    return value


def dotted_keys(cfg: Any, prefix: str = "") -> list[str]:
    """Every key of a config tree, dotted (`train.tokens`, `sources.toyworld.n_entities`)."""
    out: list[str] = []
    if isinstance(cfg, dict):
        for k, v in cfg.items():
            key = f"{prefix}.{k}" if prefix else str(k)
            out.append(key)
            out += dotted_keys(v, key)
    return out


def suggestion(key: str, known: list[str]) -> str:
    """' (did you mean X?)' for the closest known key, or '' when nothing is close."""
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    if not close:  # a misspelled leaf under a known parent: compare leaves of that parent
        parent, _, leaf = key.rpartition(".")
        leaves = [k.rpartition(".")[2] for k in known if k.rpartition(".")[0] == parent]
        near = difflib.get_close_matches(leaf, leaves, n=1, cutoff=0.6)
        close = [f"{parent}.{near[0]}"] if near and parent else []
    return f" (did you mean {close[0]}?)" if close else ""


def check_keys(cfg: DictConfig, args: list[str]) -> None:
    """Raise ConfigError for a `key=value` override whose key the composed `cfg` lacks.

    `+key` adds and `~key` deletes (Hydra's own syntax) and `hydra.*` keys are not checked.
    """
    plain = OmegaConf.to_container(cfg, resolve=False)
    known: list[str] | None = None
    for arg in args:
        parts = split_override(arg)
        if parts is None or parts[0] or parts[1].startswith("hydra"):
            continue
        key = parts[1]
        if "/" in key:  # a nested config group (`hydra/launcher=...`) is checked elsewhere
            continue
        if (
            OmegaConf.select(cfg, key, default=_MISSING, throw_on_resolution_failure=False)
            is not _MISSING
        ):
            continue
        known = known if known is not None else dotted_keys(plain)
        raise ConfigError(
            f"{key}: unknown key{suggestion(key, known)}; add a new key with +{key}=..."
        )


def choices(value: str) -> list[str]:
    """Every value of a sweep list `a,b,c` (brackets and quotes kept whole)."""
    out = []
    while True:
        head = first_choice(value)
        out.append(head)
        if len(head) >= len(value):
            return out
        value = value[len(head) + 1 :]
