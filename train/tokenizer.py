"""Tokenizers: a byte-level BPE trained with HF `tokenizers` on the sweep's sources (cached by
content hash, so every run of a sweep shares one), or a pretrained one loaded by name.

All runs of a study must share one tokenizer: losses in nats per token are only comparable
across data mixes when the token alphabet is the same, so the BPE trains on a fixed list of
sources, not on each run's mix.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import re
from pathlib import Path
from typing import Any

from transformers import AutoTokenizer, PreTrainedTokenizerBase, PreTrainedTokenizerFast

from common.atomic import write_json
from common.errors import ConfigError, DataError
from train.cache_lock import build_dir_once
from train.sources import file_sha256, iter_documents, source_fingerprint
from train.specs import SourceSpec, TokenizerSpec

EOS = "<|endoftext|>"
PAD = "<|pad|>"
CHECKSUMS = (
    "checksums.json"  # sha256 of each tokenizer file, written before the folder is renamed in
)


def tokenizer_key(spec: TokenizerSpec, sources: dict[str, SourceSpec]) -> str:
    """Content key: the spec plus the fingerprints of the sources it trains on."""
    if spec.kind == "pretrained":
        payload: dict[str, Any] = {"kind": spec.kind, "name": spec.name}
    else:
        fps = {n: source_fingerprint(sources[n]) for n in spec.train_sources}
        payload = {
            "kind": spec.kind,
            "vocab": spec.vocab_size,
            "docs": spec.train_docs,
            "sources": fps,
        }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def _train_bpe(spec: TokenizerSpec, sources: dict[str, SourceSpec], tmp: Path) -> None:
    """Train the BPE and save it, with its checksums, into the (temporary) folder `tmp`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    def corpus():
        for name in spec.train_sources:
            yield from itertools.islice(iter_documents(sources[name], "train"), spec.train_docs)

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=spec.vocab_size,
        special_tokens=[EOS, PAD],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus(), trainer=trainer)
    if tok.get_vocab_size() < 300:
        raise DataError(
            f"tokenizer.train_sources: corpus {list(spec.train_sources)} is too small "
            f"to train a BPE (vocabulary came out at {tok.get_vocab_size()})"
        )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token=EOS,
        pad_token=PAD,
        bos_token=EOS,
        model_max_length=1_000_000,
    )
    _save(fast, tmp)
    write_json(
        tmp / CHECKSUMS, {f.name: file_sha256(f) for f in sorted(tmp.iterdir()) if f.is_file()}
    )


def _save(fast: PreTrainedTokenizerFast, tmp: Path) -> None:
    """save_pretrained, with an I/O failure of the Rust `tokenizers` library (a bare Exception
    reading "No space left on device (os error 28)") raised as the OSError it is, so a full disk
    is reported as one (harness.runner) and not as a traceback."""
    try:
        fast.save_pretrained(tmp)
    except Exception as err:  # noqa: BLE001 - re-raised unless it carries an OS error number
        code = re.search(r"\(os error (\d+)\)", str(err))
        if code is None:
            raise
        raise OSError(int(code[1]), os.strerror(int(code[1])), str(tmp)) from None


def _verify(target: Path) -> None:
    """The cached tokenizer's files against the checksums written when it was trained (hashed
    once per process): edited ids would silently change every task score. A cache from before
    checksums were written has none to check."""
    meta = target / CHECKSUMS
    if not meta.is_file():
        return
    for name, digest in json.loads(meta.read_text()).items():
        f = target / name
        if not f.is_file() or file_sha256(f) != digest:
            raise DataError(
                f"tokenizer cache '{target}': {name} does not match its sha256; "
                "delete the folder and rerun"
            )


def load_tokenizer(
    spec: TokenizerSpec, sources: dict[str, SourceSpec], cache_dir: Path
) -> PreTrainedTokenizerBase:
    """The study's tokenizer: trained once into the cache, or loaded by name."""
    if spec.kind == "pretrained":
        if not spec.name:
            raise ConfigError("tokenizer.name: required when tokenizer.kind is 'pretrained'")
        try:
            tok = AutoTokenizer.from_pretrained(spec.name, trust_remote_code=spec.trust_remote_code)
        except OSError as err:
            raise DataError(
                f"tokenizer.name: cannot load '{spec.name}' ({str(err).splitlines()[0]})"
            ) from None
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token
        return tok
    if spec.kind != "bpe":
        raise ConfigError(f"tokenizer.kind: unknown kind '{spec.kind}' (known: bpe, pretrained)")
    for name in spec.train_sources:
        if name not in sources:
            raise ConfigError(
                f"tokenizer.train_sources: unknown source '{name}' (known: {', '.join(sources)})"
            )
    target = cache_dir / "tokenizers" / tokenizer_key(spec, sources)
    build_dir_once(target, lambda tmp: _train_bpe(spec, sources, tmp))
    _verify(target)
    return PreTrainedTokenizerFast.from_pretrained(str(target))
