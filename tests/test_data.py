"""Sources, tokenizer, token cache and mixture: real loaders on local files."""

from __future__ import annotations

import json
import multiprocessing as mp

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from common.errors import ConfigError, DataError
from train.mixture import MixtureSampler, eval_windows, normalise_weights
from train.sources import iter_documents
from train.specs import SourceSpec, TokenizerSpec
from train.token_cache import build_token_cache
from train.tokenizer import load_tokenizer, tokenizer_key

TOY = SourceSpec(
    "toyworld", "toyworld", {"n_entities": 60, "docs": {"train": 120, "val": 12, "shifted": 12}}
)
CODE = SourceSpec("stdlib_code", "stdlib_code", {"val_fraction": 0.05})
TOK = TokenizerSpec(
    kind="bpe", vocab_size=400, train_sources=("toyworld", "stdlib_code"), train_docs=60
)
SOURCES = {"toyworld": TOY, "stdlib_code": CODE}


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    cache = tmp_path_factory.mktemp("tokcache")
    return load_tokenizer(TOK, SOURCES, cache), cache


def test_toyworld_and_code_splits_differ():
    train = list(iter_documents(TOY, "train"))
    val = list(iter_documents(TOY, "val"))
    assert len(train) == 120 and len(val) == 12
    assert not set(train) & set(val)
    code_train = list(iter_documents(CODE, "train"))
    code_val = list(iter_documents(CODE, "val"))
    assert code_val and len(code_train) > 10 * len(code_val)
    assert not set(code_train) & set(code_val)


def test_tokenizer_cached_and_shared(tok, tmp_path):
    tokenizer, cache = tok
    again = load_tokenizer(TOK, SOURCES, cache)
    assert again.get_vocab() == tokenizer.get_vocab()
    assert len([p for p in (cache / "tokenizers").iterdir() if p.is_dir()]) == 1
    assert tokenizer.eos_token_id is not None and len(tokenizer) <= 400


def test_token_cache_deterministic_and_content_keyed(tok, tmp_path):
    tokenizer, _ = tok
    tid = tokenizer_key(TOK, SOURCES)
    a = build_token_cache(TOY, "val", tokenizer, tid, tmp_path / "a")
    b = build_token_cache(TOY, "val", tokenizer, tid, tmp_path / "b")
    assert a.path.name == b.path.name and np.array_equal(a.array(), b.array())
    assert a.n_docs == 12 and a.array()[-1] == tokenizer.eos_token_id
    other = build_token_cache(TOY, "shifted", tokenizer, tid, tmp_path / "a")
    assert other.path != a.path


def _build_in_process(args):
    spec_opts, cache_dir = args
    from train.specs import SourceSpec

    spec = SourceSpec("toyworld", "toyworld", spec_opts)
    tokenizer = load_tokenizer(TOK, SOURCES, cache_dir / "tok")
    c = build_token_cache(spec, "train", tokenizer, "tid", cache_dir)
    return c.path.name, c.n_tokens, int(np.asarray(c.array()).sum())


def test_concurrent_cache_builds_agree(tok, tmp_path):
    """Two processes building the same cache: one builds, the other waits; same bytes."""
    _, cache = tok
    import shutil

    shutil.copytree(cache / "tokenizers", tmp_path / "tok" / "tokenizers")
    ctx = mp.get_context("spawn")
    with ctx.Pool(2) as pool:
        results = pool.map(_build_in_process, [(TOY.options, tmp_path)] * 2)
    assert results[0] == results[1]
    assert len(list((tmp_path / "tokens").glob("*.bin"))) == 1
    assert not list((tmp_path / "tokens").glob(".*tmp"))


def test_mixture_is_a_function_of_seed_and_step(tok, tmp_path):
    tokenizer, _ = tok
    caches = {n: build_token_cache(SOURCES[n], "train", tokenizer, "t", tmp_path) for n in SOURCES}
    w = normalise_weights({"toyworld": 0.7, "stdlib_code": 0.3})
    s1 = MixtureSampler(caches, w, 32, 64, seed=3)
    s2 = MixtureSampler(caches, w, 32, 64, seed=3)
    assert np.array_equal(s1.batch(5).numpy(), s2.batch(5).numpy())
    assert not np.array_equal(s1.batch(5).numpy(), s1.batch(6).numpy())
    assert s1.batch(0).shape == (64, 33)
    windows = eval_windows(caches["toyworld"], 32, 320)
    assert windows.shape == (10, 33)


@pytest.mark.parametrize("fmt", ["text", "jsonl", "parquet"])
def test_files_source_formats(fmt, tmp_path):
    docs = [f"document number {i} about things" for i in range(40)]
    path = tmp_path / f"data.{fmt}"
    if fmt == "text":
        path.write_text("\n".join(docs))
        expected = 1
    elif fmt == "jsonl":
        path.write_text("".join(json.dumps({"text": d}) + "\n" for d in docs))
        expected = 40
    else:
        pq.write_table(pa.table({"text": docs}), path)
        expected = 40
    spec = SourceSpec("mine", "files", {"paths": [str(path)], "format": fmt, "val_fraction": 0.2})
    got = list(iter_documents(spec, "train")) + list(iter_documents(spec, "val"))
    assert len(got) == expected


def test_hf_source_through_load_dataset_on_local_files(tmp_path):
    """The Hugging Face path: datasets.load_dataset with a local builder, offline."""
    rows = [{"text": f"row {i}", "other": i} for i in range(30)]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "val.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:5]))
    spec = SourceSpec(
        "hfds",
        "hf",
        {
            "path": "json",
            "text_field": "text",
            "data_files": {
                "train": str(tmp_path / "train.jsonl"),
                "validation": str(tmp_path / "val.jsonl"),
            },
            "splits": {"val": "validation"},
            "max_docs": {"train": 10},
        },
    )
    assert len(list(iter_documents(spec, "train"))) == 10
    assert list(iter_documents(spec, "val"))[0] == "row 0"


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: None, "data file not found"),
        (lambda p: p.write_bytes(b"\xff\xfe\x00bad"), "data file is not UTF-8 text"),
        (lambda p: p.write_text('{"txt": "x"}\n'), "text_field 'text' missing"),
    ],
)
def test_bad_data_files(make, message, tmp_path):
    path = tmp_path / "bad.txt"
    make(path)
    fmt = "jsonl" if "text_field" in message else "text"
    spec = SourceSpec("bad", "files", {"paths": [str(path)], "format": fmt, "val_fraction": 0.0})
    with pytest.raises(DataError, match=message):
        list(iter_documents(spec, "train"))


def test_empty_corpus_is_an_error(tok, tmp_path):
    tokenizer, _ = tok
    path = tmp_path / "empty.jsonl"
    path.write_text("")
    spec = SourceSpec("empty", "files", {"paths": [str(path)], "format": "jsonl"})
    with pytest.raises(DataError, match="split 'train' is empty"):
        build_token_cache(spec, "train", tokenizer, "t", tmp_path)
    assert not list((tmp_path / "tokens").glob("*.json"))


def test_hf_dataset_missing_offline_names_dataset(tmp_path):
    spec = SourceSpec("web", "hf", {"path": "allenai/c4-does-not-exist", "name": "en"})
    with pytest.raises(DataError, match="could not load dataset 'allenai/c4-does-not-exist'"):
        list(iter_documents(spec, "train"))


@pytest.mark.parametrize(
    "weights, message",
    [
        ({"a": -1.0, "b": 1.0}, "data.weights.a: weight must be a finite number >= 0, got -1.0"),
        ({"a": 0.0, "b": 0.0}, "data.weights: all weights are zero"),
        ({"a": float("nan")}, "data.weights.a: weight must be a finite number >= 0, got nan"),
    ],
)
def test_bad_mix_weights(weights, message):
    with pytest.raises(ConfigError) as err:
        normalise_weights(weights)
    assert message in str(err.value)
