"""Text sources: the generated toy world, the stdlib's Python code, local files, HF datasets.

Every source yields documents (str) for a split: `train`, `val`, and for the toy world
`shifted`. The readers are deterministic so a token cache keyed by the spec is reusable.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import platform
import sysconfig
from collections.abc import Iterator
from pathlib import Path

from common.errors import ConfigError, DataError
from train.file_corpus import corpus_files
from train.specs import SourceSpec

KINDS = ("toyworld", "stdlib_code", "files", "hf")


def iter_documents(spec: SourceSpec, split: str) -> Iterator[str]:
    """Documents of `split` from the source described by `spec`."""
    readers = {
        "toyworld": _toyworld,
        "stdlib_code": _stdlib_code,
        "files": _files,
        "hf": _hf,
    }
    if spec.kind not in readers:
        raise ConfigError(
            f"sources.{spec.name}.kind: unknown source kind '{spec.kind}' "
            f"(known: {', '.join(KINDS)})"
        )
    yield from readers[spec.kind](spec, split)


def _toyworld(spec: SourceSpec, split: str) -> Iterator[str]:
    from toyworld.corpus import DOMAINS, corpus_options, documents, domain_counts
    from toyworld.world import world_from_options

    opts = spec.options
    world = world_from_options(opts)
    docs_per_split = opts.get("docs", {})
    if split not in docs_per_split:
        raise ConfigError(
            f"sources.{spec.name}.docs: no document count for split '{split}' "
            f"(have: {', '.join(docs_per_split) or 'none'})"
        )
    domains = list(opts.get("domains", DOMAINS))
    n_total = int(docs_per_split[split])
    split_seed = int(opts.get("seed", 0))
    where = f"sources.{spec.name}"
    corpus = corpus_options(opts, where)
    counts = domain_counts(n_total, domains, opts.get("domain_weights"), where)
    for domain, n in zip(domains, counts, strict=True):
        yield from documents(world, domain, n, split, seed=split_seed, options=corpus)


def _stable_fraction(key: str) -> float:
    """A number in [0, 1) fixed by `key`, independent of Python's hash seed."""
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") / 2**64


def stdlib_root() -> Path:
    """The running interpreter's standard library folder."""
    return Path(sysconfig.get_paths()["stdlib"])


def stdlib_files(max_bytes: int = 200_000) -> list[Path]:
    """The running interpreter's standard-library .py files, sorted, tests and vendored code out."""
    return list(_stdlib_listing(str(stdlib_root()), max_bytes))


@functools.lru_cache(maxsize=4)
def _stdlib_listing(root: str, max_bytes: int) -> tuple[Path, ...]:
    # listed once per process (walking the stdlib takes ~0.5 s); the files' bytes are hashed
    # by stdlib_content on every call (cached by stat), so an edit is still seen
    skip = ("site-packages", "test", "tests", "idlelib", "lib2to3", "__pycache__", "ensurepip")
    files = []
    for path in sorted(Path(root).rglob("*.py")):
        rel = path.relative_to(root)
        if any(part in skip for part in rel.parts[:-1]) or path.stat().st_size > max_bytes:
            continue
        files.append(path)
    return tuple(files)


def stdlib_content() -> str:
    """What the stdlib_code source reads: this Python's version and a hash of every stdlib
    file's path and bytes. Another Python build (or an edited stdlib) is another corpus, so
    it gets its own run ids, token caches and toy_code items."""
    root = stdlib_root()
    h = hashlib.sha256()
    for path in stdlib_files():
        h.update(path.relative_to(root).as_posix().encode() + b"\0")
        h.update(file_sha256(path).encode() + b"\0")
    return f"python {platform.python_version()}, stdlib {h.hexdigest()[:16]}"


def _split_of(key: str, val_fraction: float) -> str:
    return "val" if _stable_fraction(key) < val_fraction else "train"


def stdlib_split_files(split: str, val_fraction: float = 0.05) -> list[Path]:
    """The stdlib files of one split; the split is fixed by each file's relative path."""
    root = stdlib_root()
    return [p for p in stdlib_files() if _split_of(str(p.relative_to(root)), val_fraction) == split]


def _stdlib_code(spec: SourceSpec, split: str) -> Iterator[str]:
    for path in stdlib_split_files(split, float(spec.options.get("val_fraction", 0.05))):
        text = path.read_text(encoding="utf-8", errors="replace")
        if text.strip():
            yield text


def _read_file_docs(path: Path, fmt: str, text_field: str) -> Iterator[str]:
    if not path.exists():
        raise DataError(f"data file not found: '{path}'")
    if fmt == "text":
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as err:
            raise DataError(
                f"data file is not UTF-8 text: '{path}' ({err.reason} at byte {err.start})"
            ) from None
        if text.strip():  # an empty file is no document, so an empty corpus is reported as such
            yield text
    elif fmt == "jsonl":
        with open(path, encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    raise DataError(f"bad JSON in '{path}' line {lineno}") from None
                if text_field not in row:
                    raise DataError(f"text_field '{text_field}' missing in '{path}' line {lineno}")
                yield str(row[text_field])
    elif fmt == "parquet":
        import pyarrow.parquet as pq

        table = pq.read_table(path, columns=[text_field])
        yield from (str(t) for t in table.column(text_field).to_pylist())
    else:
        raise ConfigError(f"format: unknown file format '{fmt}' (known: text, jsonl, parquet)")


def _files(spec: SourceSpec, split: str) -> Iterator[str]:
    opts = spec.options
    fmt = opts.get("format", "text")
    text_field = opts.get("text_field", "text")
    val_fraction = float(opts.get("val_fraction", 0.05))
    for path, rel in corpus_files(spec.name, opts):
        for i, doc in enumerate(_read_file_docs(path, fmt, text_field)):
            # keyed by the relative name, so a moved corpus keeps its split
            if _split_of(f"{rel}:{i}", val_fraction) == split:
                yield doc


def _hf(spec: SourceSpec, split: str) -> Iterator[str]:
    """A Hugging Face dataset through `datasets.load_dataset` (hub name or a local builder)."""
    import datasets

    opts = dict(spec.options)
    hf_split = opts.get("splits", {}).get(split, split)
    max_docs = opts.get("max_docs", {}).get(split)
    text_field = opts.get("text_field", "text")
    try:
        ds = datasets.load_dataset(
            opts["path"],
            split=hf_split,
            streaming=bool(opts.get("streaming", False)),
            **_hf_kwargs(opts),
        )
    except KeyError:
        raise ConfigError(f"sources.{spec.name}.path: missing dataset path") from None
    except Exception as err:  # hub unreachable, unknown split, missing files
        raise _hf_error(spec, f" split '{hf_split}'", err) from None
    for i, row in enumerate(ds):
        if max_docs is not None and i >= int(max_docs):
            break
        if text_field not in row:
            raise DataError(
                f"sources.{spec.name}.text_field: '{text_field}' not a column of '{opts['path']}'"
            )
        yield str(row[text_field])


def _hf_kwargs(opts: dict) -> dict:
    return {k: v for k, v in opts.items() if k in ("name", "data_files", "data_dir", "revision")}


def _hf_error(spec: SourceSpec, what: str, err: Exception) -> DataError:
    return DataError(
        f"sources.{spec.name}: could not load dataset '{spec.options.get('path')}'{what}: "
        f"{str(err).splitlines()[0] if str(err) else type(err).__name__}. "
        "Offline? Pre-cache it on a connected machine with datasets.load_dataset, "
        "then set HF_DATASETS_OFFLINE=1."
    )


def _data_file_entries(data_files: object) -> list[str]:
    """Every entry an `hf` source's `data_files` names (str, list, or split -> either)."""
    if isinstance(data_files, dict):
        return [e for v in data_files.values() for e in _data_file_entries(v)]
    if isinstance(data_files, (list, tuple)):
        return [e for v in data_files for e in _data_file_entries(v)]
    return [str(data_files)] if data_files is not None else []


def _local_data_files(data_files: object) -> list[Path]:
    """The local files among `data_files`' entries."""
    paths = [Path(e).expanduser() for e in _data_file_entries(data_files)]
    return [p for p in paths if p.is_file()]


def _relative_data_files(data_files: object) -> object | None:
    """`data_files` with every file named relative to the folder they share, or None unless
    every entry is a local file (a hub pattern or remote URL keeps its absolute form): what
    the data is, not where it sits, so a moved dataset keeps its run ids and caches."""
    files = _local_data_files(data_files)
    if not files or len(files) != len(_data_file_entries(data_files)):
        return None
    resolved = [p.resolve() for p in files]
    common = Path(os.path.commonpath([p.parent for p in resolved]))

    def rel(value: object) -> object:
        if isinstance(value, dict):
            return {k: rel(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [rel(v) for v in value]
        return Path(str(value)).expanduser().resolve().relative_to(common).as_posix()

    return rel(data_files)


_HF_BUILDERS: dict[str, tuple[str, str]] = {}


def _hf_content(spec: SourceSpec) -> str:
    """What an `hf` dataset is, beyond its options: the `datasets` builder's hash (its code) and
    config id, which covers the resolved data files (their commit on the hub, their size and
    mtime on disk; resolved once per process), plus the bytes of local data files, hashed
    whenever they change (an edit within the process, or one that restores the mtime)."""
    import datasets

    opts = dict(spec.options)
    if "path" not in opts:
        raise ConfigError(f"sources.{spec.name}.path: missing dataset path")
    # resolving the builder may ask the hub: once per process per dataset, not per cache key
    key = json.dumps([opts["path"], _hf_kwargs(opts)], sort_keys=True, default=str)
    if key not in _HF_BUILDERS:
        try:
            builder = datasets.load_dataset_builder(opts["path"], **_hf_kwargs(opts))
        except Exception as err:  # hub unreachable and not cached, unknown config, missing files
            raise _hf_error(spec, "", err) from None
        _HF_BUILDERS[key] = (str(builder.hash), str(builder.config_id))
    builder_hash, config_id = _HF_BUILDERS[key]
    local = _relative_data_files(opts.get("data_files"))
    # the config id hashes the files' absolute paths: left out where every file is local,
    # whose relative layout (in keyed_options) and bytes (below) say what the data is
    h = hashlib.sha256(f"{builder_hash}\0{config_id if local is None else ''}\0".encode())
    for path in _local_data_files(opts.get("data_files")):
        name = str(path.resolve()) if local is None else path.name
        h.update(name.encode() + b"\0" + file_sha256(path).encode() + b"\0")
    return h.hexdigest()[:16]


_FILE_HASHES: dict[tuple, str] = {}


def file_sha256(path: Path) -> str:
    """sha256 of a file's bytes, once per process per (path, size, mtime, ctime, inode): any
    write since, even one that restores size and mtime, changes the ctime."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)
    if key not in _FILE_HASHES:
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
        _FILE_HASHES[key] = h.hexdigest()
    return _FILE_HASHES[key]


def source_content(spec: SourceSpec) -> str | None:
    """What a source's text is, beyond its options: for `files`, a hash of every file's
    relative name and bytes (so replacing a corpus, even at the same size and mtime, is a
    different input, and moving it is not); for `hf`,
    the dataset's builder fingerprint (`_hf_content`); for `stdlib_code`, the Python version
    and the stdlib's bytes (`stdlib_content`). The toy world is pinned by its options: None."""
    if spec.kind == "hf":
        return _hf_content(spec)
    if spec.kind == "stdlib_code":
        return stdlib_content()
    if spec.kind != "files":
        return None
    h = hashlib.sha256()
    for path, rel in corpus_files(spec.name, spec.options):
        h.update(rel.encode() + b"\0" + file_sha256(path).encode() + b"\0")
    return h.hexdigest()[:16]


def keyed_options(spec: SourceSpec) -> dict:
    """A source's options as they key run ids and caches: a `files` source's `paths` say
    where the corpus is, not what it is (its content hash, by relative name, says that), so
    they are left out and a moved corpus keeps its ids and token caches."""
    if spec.kind == "hf":
        local = _relative_data_files(spec.options.get("data_files"))
        return {**spec.options, "data_files": local} if local is not None else dict(spec.options)
    if spec.kind != "files":
        return dict(spec.options)
    return {k: v for k, v in spec.options.items() if k != "paths"}


def source_fingerprint(spec: SourceSpec) -> str:
    """A content key for the spec: options, plus its content (`source_content`) for a `files`,
    `hf` or `stdlib_code` source, so an edited corpus never reuses a stale token cache."""
    payload: dict = {"name": spec.name, "kind": spec.kind, "options": keyed_options(spec)}
    content = source_content(spec)
    if content is not None:
        payload["content"] = content
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[
        :16
    ]
