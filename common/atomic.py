"""Atomic file writes: a reader never sees a half-written artifact.

Everything is written to a temporary name in the same directory, flushed to disk and
renamed over the target (rename is atomic on POSIX within one filesystem).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def shareable(path: Path, is_dir: bool = False) -> None:
    """Give a mkstemp/mkdtemp result the mode a plain open()/mkdir() would have had
    (they create 0600/0700, which would hide records and checkpoints from a research group)."""
    os.chmod(path, (0o777 if is_dir else 0o666) & ~_current_umask())


@contextmanager
def atomic_path(target: Path | str) -> Iterator[Path]:
    """Yield a temporary path beside `target`; on success rename it over `target`.

    The temporary name ends with the target's suffix, so writers that infer a format from
    it (matplotlib, pandas) behave as they would on the target.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{target.name}.", suffix=".tmp" + target.suffix, dir=target.parent
    )
    os.close(fd)
    tmp_path = Path(tmp)
    shareable(tmp_path)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_text(target: Path | str, text: str) -> None:
    """Write `text` to `target` atomically."""
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(target: Path | str, obj: Any) -> None:
    """Write `obj` as indented JSON to `target` atomically."""
    write_text(target, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")
