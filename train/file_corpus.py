"""Which files a `files` source reads, and under which relative name.

`paths` lists files, folders (every file under them, hidden ones left out) and glob patterns
(`~/corpus/*.md`, `corpus/**/*.txt`), with `~` expanded. Each file gets a relative name: a
plain file its own name, a file found under a folder or by a pattern its path below that
folder (or below the pattern's fixed leading folders). Those names, not absolute paths, key
the train/val split and the source's content hash, so a corpus copied or moved elsewhere is
the same corpus (same split, same run ids).
"""

from __future__ import annotations

import glob
from pathlib import Path

from common.errors import ConfigError, DataError

# Every option a `files` source takes (README "Running sweeps" documents each).
FILES_OPTIONS = ("paths", "format", "text_field", "val_fraction")
_GLOB_CHARS = "*?["


def check_files_options(name: str, options: dict) -> None:
    """One line for an option a `files` source does not take (`path:` for `paths:`)."""
    for key in options:
        if key not in FILES_OPTIONS:
            raise ConfigError(
                f"sources.{name}.{key}: unknown option of a files source "
                f"(known: {', '.join(FILES_OPTIONS)})"
            )


def corpus_files(name: str, options: dict) -> list[tuple[Path, str]]:
    """(file, relative name) for every file the source reads, in reading order: the `paths`
    entries in their order, the files of a folder or pattern sorted by relative name. A file
    named twice is read once."""
    check_files_options(name, options)
    entries = options.get("paths") or []
    if isinstance(entries, str):
        entries = [entries]
    if not entries:
        raise ConfigError(f"sources.{name}.paths: no files given")
    out, seen = [], set()
    for entry in entries:
        for path, rel in _expand(name, str(entry)):
            if path.resolve() not in seen:
                seen.add(path.resolve())
                out.append((path, rel))
    return out


def _expand(name: str, entry: str) -> list[tuple[Path, str]]:
    pattern = str(Path(entry).expanduser())
    if any(c in pattern for c in _GLOB_CHARS):
        base = _fixed_prefix(pattern)
        found = [Path(p) for p in glob.glob(pattern, recursive=True) if Path(p).is_file()]
        if not found:
            raise ConfigError(f"sources.{name}.paths: '{entry}' matches no file")
        return sorted(((p, p.relative_to(base).as_posix()) for p in found), key=lambda x: x[1])
    path = Path(pattern)
    if path.is_dir():
        found = [
            p
            for p in path.rglob("*")
            if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts)
        ]
        if not found:
            raise ConfigError(f"sources.{name}.paths: folder '{entry}' has no files")
        return sorted(((p, p.relative_to(path).as_posix()) for p in found), key=lambda x: x[1])
    if not path.is_file():
        raise DataError(f"data file not found: '{entry}'")
    return [(path, path.name)]


def _fixed_prefix(pattern: str) -> Path:
    """The leading folders of a glob pattern before its first wildcard: what a matched
    file's relative name is taken from."""
    parts = Path(pattern).parts
    fixed = []
    for part in parts[:-1]:
        if any(c in part for c in _GLOB_CHARS):
            break
        fixed.append(part)
    return Path(*fixed) if fixed else Path(".")
