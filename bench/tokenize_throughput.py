"""Token cache build rate against the plain batched `tokenizers` encode of the same documents.

    .venv/bin/python bench/tokenize_throughput.py [--mb 4] [--repeats 3] [--out results.json]

Documents: toy-world and stdlib code, materialised first, so both paths time only
tokenization (and the cache path its conversion and file writes). Ceiling:
`backend_tokenizer.encode_batch` over the same batches (train.token_cache.ENCODE_BATCH docs),
all cores (the Rust thread pool). Cache: `train.token_cache.encode_to_file`. Target: the cache
reaches >= 0.8x the ceiling. Rounds alternate the two paths so machine load hits both alike.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from train.sources import iter_documents  # noqa: E402
from train.specs import SourceSpec, TokenizerSpec  # noqa: E402
from train.token_cache import ENCODE_BATCH, encode_to_file  # noqa: E402
from train.tokenizer import load_tokenizer  # noqa: E402

SOURCES = {
    "toyworld": SourceSpec(
        "toyworld",
        "toyworld",
        {
            "world_seed": 0,
            "n_entities": 400,
            "seed": 0,
            "docs": {"train": 12000, "val": 240, "shifted": 240},
        },
    ),
    "stdlib_code": SourceSpec("stdlib_code", "stdlib_code", {"val_fraction": 0.05}),
}


def documents(megabytes: float) -> list[str]:
    """About `megabytes` of text, half toy world, half stdlib code."""
    docs: list[str] = []
    for name in SOURCES:
        budget = megabytes * 2**20 / len(SOURCES)
        for doc in iter_documents(SOURCES[name], "train"):
            docs.append(doc)
            budget -= len(doc.encode())
            if budget <= 0:
                break
    return docs


def ceiling(docs: list[str], tokenizer) -> tuple[int, float]:
    backend = tokenizer.backend_tokenizer
    t = time.perf_counter()
    n = 0
    for i in range(0, len(docs), ENCODE_BATCH):
        n += sum(
            len(e.ids) + 1
            for e in backend.encode_batch(docs[i : i + ENCODE_BATCH], add_special_tokens=False)
        )
    return n, time.perf_counter() - t


def cache(docs: list[str], tokenizer, path: Path) -> tuple[int, float]:
    t = time.perf_counter()
    n, _ = encode_to_file(
        iter(docs), tokenizer, path, "uint16" if len(tokenizer) <= 2**16 else "uint32"
    )
    return n, time.perf_counter() - t


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mb", type=float, default=4.0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        tok = load_tokenizer(
            TokenizerSpec(train_sources=("toyworld", "stdlib_code"), train_docs=3000),
            SOURCES,
            Path(tmp),
        )
        docs = documents(args.mb)
        mb = sum(len(d.encode()) for d in docs) / 2**20
        best = {"ceiling": 0.0, "cache": 0.0}
        counts = {}
        for _ in range(args.repeats):
            for name in best:
                n, dt = (
                    ceiling(docs, tok)
                    if name == "ceiling"
                    else cache(docs, tok, Path(tmp) / "t.bin")
                )
                counts[name] = n
                best[name] = max(best[name], n / dt)
    assert counts["ceiling"] == counts["cache"], counts  # same tokens (EOS counted on both sides)
    res = {
        "docs": len(docs),
        "megabytes": round(mb, 2),
        "tokens": counts["cache"],
        "cores": os.cpu_count(),
        "ceiling_tokens_per_s": best["ceiling"],
        "cache_tokens_per_s": best["cache"],
        "ratio": best["cache"] / best["ceiling"],
    }
    print(f"{len(docs)} docs, {mb:.1f} MB, {counts['cache']:,} tokens, {os.cpu_count()} cores")
    print(f"plain encode_batch : {best['ceiling']:>12,.0f} tok/s")
    print(f"token cache build  : {best['cache']:>12,.0f} tok/s")
    print(f"ratio cache/plain  : {res['ratio']:.3f} (target >= 0.8)")
    if args.out:
        args.out.write_text(json.dumps(res, indent=1))
    return res


if __name__ == "__main__":
    main()
