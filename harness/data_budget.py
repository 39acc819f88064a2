"""How much text a run's mix has, and how often the run's token budget goes over it.

Per source of the mix: the tokens of its train split (the token cache the run trains from) and
the epochs its budget implies, `weight x train tokens / available`. `harness plan` shows them
before training (and warns above `REPEAT_WARN_EPOCHS`); the runner stores them in record.json.
A remote dataset (an `hf` source read from the hub) is never loaded by `plan`: its availability
is unknown there, and said so.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from pathlib import Path

from train.sources import _local_data_files
from train.specs import RunSpec, SourceSpec, TokenizerSpec

# Muennighoff et al. 2023 ("Scaling Data-Constrained Language Models"): up to about 4 epochs of
# repeated data train nearly as well as fresh data; beyond that the returns of more compute fall
# off quickly, so a fitted curve no longer measures the same thing as one on fresh text.
REPEAT_WARN_EPOCHS = 4.0
REMOTE = "unknown (remote, not loaded)"


def is_remote(src: SourceSpec) -> bool:
    """An `hf` source that names a hub dataset (not a local folder, nor local data files)."""
    if src.kind != "hf":
        return False
    opts = src.options
    path = str(opts.get("path", ""))
    if path and Path(path).expanduser().exists():
        return False
    return not _local_data_files(opts.get("data_files"))


def used_sources(spec: RunSpec) -> set[str]:
    """Every source the run reads: its mix, its validation sets, its tokenizer's corpus."""
    return (
        set(spec.mix.weights)
        | {v.source for v in spec.validation}
        | (set(spec.tokenizer.train_sources) if spec.tokenizer.kind == "bpe" else set())
    )


def remote_sources(spec: RunSpec) -> list[str]:
    return sorted(n for n in used_sources(spec) if n in spec.sources and is_remote(spec.sources[n]))


@functools.lru_cache(maxsize=8)
def cached_tokenizer_size(tok: TokenizerSpec) -> int | None:
    """The vocabulary size of a pretrained tokenizer already in the local Hugging Face cache
    (nothing downloaded); None when it is not there."""
    try:
        from transformers import AutoTokenizer

        return len(
            AutoTokenizer.from_pretrained(
                tok.name, local_files_only=True, trust_remote_code=tok.trust_remote_code
            )
        )
    except Exception:  # noqa: BLE001 - not cached, or no name: unknown, not an error here
        return None


def epochs(
    weights: Mapping[str, float], train_tokens: int, available: Mapping[str, int | None]
) -> dict[str, float | None]:
    """Passes over each source's train split that `train_tokens` imply (None: unknown)."""
    return {
        name: (w * train_tokens / n) if (n := available.get(name)) else None
        for name, w in weights.items()
    }


def repetition_warnings(label: str, reps: dict[str, float | None]) -> list[str]:
    """One line per source repeated more than REPEAT_WARN_EPOCHS times."""
    return [
        f"warning: run {label} repeats source '{name}' {e:.1f} times (over "
        f"{REPEAT_WARN_EPOCHS:g} epochs, repeated text no longer trains like fresh text; "
        "lower train.tokens or add data)"
        for name, e in sorted(reps.items())
        if e is not None and e > REPEAT_WARN_EPOCHS
    ]


def format_epochs(e: float | None) -> str:
    return "?" if e is None else f"{e:.2f}" if e < 10 else f"{e:,.0f}"
