"""Tokenize a source split once into a flat memmap of token ids shared by every run.

Layout: `<cache>/tokens/<key>.bin` (uint16 when the vocabulary fits, else uint32) and
`<key>.json` (dtype, token and document counts). The key hashes the source spec, the split
and the tokenizer, so any change to one of them builds a new cache and nothing stale is read.
Documents are separated by the EOS token.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common.atomic import atomic_path, write_json
from common.errors import DataError
from train.cache_lock import build_once
from train.sources import file_sha256, iter_documents, source_fingerprint
from train.specs import SourceSpec

FORMAT_VERSION = 1
ENCODE_BATCH = 256  # documents per encode_batch call: enough to keep every core busy


@dataclass(frozen=True)
class TokenCache:
    """A tokenized split on disk."""

    path: Path
    n_tokens: int
    n_docs: int
    dtype: str

    def array(self) -> np.memmap:
        return np.memmap(self.path, dtype=self.dtype, mode="r", shape=(self.n_tokens,))


def cache_key(spec: SourceSpec, split: str, tokenizer_id: str, max_docs: int | None) -> str:
    payload = [FORMAT_VERSION, source_fingerprint(spec), split, tokenizer_id, max_docs]
    return hashlib.sha256(json.dumps(payload).encode()).hexdigest()[:20]


def _batched(it: Iterator[str], n: int) -> Iterator[list[str]]:
    while batch := list(itertools.islice(it, n)):
        yield batch


def encode_to_file(docs: Iterator[str], tokenizer, out_path: Path, dtype: str) -> tuple[int, int]:
    """Stream documents through the fast tokenizer (Rust, all cores) into a raw id file."""
    backend = tokenizer.backend_tokenizer
    eos = np.array([tokenizer.eos_token_id], dtype=dtype)
    n_tokens = n_docs = 0
    with open(out_path, "wb") as fh:
        for batch in _batched(docs, ENCODE_BATCH):
            encs = backend.encode_batch(batch, add_special_tokens=False)
            for enc in encs:
                ids = np.asarray(enc.ids, dtype=dtype)
                fh.write(ids.tobytes())
                fh.write(eos.tobytes())
                n_tokens += len(ids) + 1
            n_docs += len(batch)
        fh.flush()
        os.fsync(fh.fileno())
    return n_tokens, n_docs


def build_token_cache(
    spec: SourceSpec,
    split: str,
    tokenizer,
    tokenizer_id: str,
    cache_dir: Path,
    max_docs: int | None = None,
) -> TokenCache:
    """The token cache of `spec`'s `split`, built on first use (safe under concurrency)."""
    key = cache_key(spec, split, tokenizer_id, max_docs)
    bin_path = cache_dir / "tokens" / f"{key}.bin"
    meta_path = bin_path.with_suffix(".json")
    dtype = "uint16" if len(tokenizer) <= 2**16 else "uint32"

    def build(meta_target: Path) -> None:
        # under this cache's build lock: a temp file of this key is a dead builder's leftover
        for stale in bin_path.parent.glob(f".{bin_path.name}.*.tmp.bin"):
            stale.unlink(missing_ok=True)
        t0 = time.time()
        docs = iter_documents(spec, split)
        if max_docs is not None:
            docs = itertools.islice(docs, max_docs)
        with atomic_path(bin_path) as tmp:
            n_tokens, n_docs = encode_to_file(docs, tokenizer, tmp, dtype)
            if n_docs == 0:
                raise DataError(f"sources.{spec.name}: split '{split}' is empty (no documents)")
        write_json(
            meta_target,
            {
                "key": key,
                "source": spec.name,
                "split": split,
                "dtype": dtype,
                "n_tokens": n_tokens,
                "n_docs": n_docs,
                "sha256": file_sha256(bin_path),
                "build_seconds": round(time.time() - t0, 3),
            },
        )

    # The metadata is written last: its presence means the .bin beside it is complete.
    build_once(meta_path, build)
    meta = json.loads(meta_path.read_text())
    if (
        not bin_path.exists()
        or bin_path.stat().st_size != meta["n_tokens"] * np.dtype(meta["dtype"]).itemsize
    ):
        raise DataError(f"token cache '{bin_path}' is incomplete or corrupt; delete it and rerun")
    # verified when opened (hashed once per process): a same-size edit of the ids is caught
    if "sha256" in meta and file_sha256(bin_path) != meta["sha256"]:
        raise DataError(f"token cache '{bin_path}' does not match its sha256; delete it and rerun")
    return TokenCache(bin_path, meta["n_tokens"], meta["n_docs"], meta["dtype"])
