"""Build-once artifacts shared by concurrent runs (SLURM array tasks, parallel launchers).

An artifact lives at a content-keyed path. The first process to take the lock builds it
into a temporary name and renames it into place; the others wait for the lock and find it.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from common.atomic import shareable


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock on `path` (created if absent), released on exit or death."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def build_once(target: Path, build: Callable[[Path], None]) -> Path:
    """Return `target`, calling `build(target)` first if it does not exist yet.

    `build` must itself write atomically (temp + rename); the lock only stops two processes
    from doing the same expensive work twice.
    """
    if target.exists():
        return target
    with file_lock(target.with_name(target.name + ".lock")):
        if not target.exists():
            build(target)
    return target


def build_dir_once(
    target: Path,
    fill: Callable[[Path], None],
    move: Callable[[Path, Path], None] = os.rename,
) -> Path:
    """`build_once` for a folder: `fill(tmp)` writes it under a temporary name beside `target`
    (`.<name>.build.<random>`), then `move(tmp, target)` puts it in place. Nothing half-written
    stays: a failed fill (a full disk, Ctrl-C) removes its folder, and one left by a builder
    that died is removed by the next one (under the lock, only a dead builder's can exist)."""

    def build(t: Path) -> None:
        for stale in t.parent.glob(f".{t.name}.build.*"):
            shutil.rmtree(stale, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{t.name}.build.", dir=t.parent))
        try:
            shareable(tmp, is_dir=True)
            fill(tmp)
            move(tmp, t)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)  # already gone after the move

    target.parent.mkdir(parents=True, exist_ok=True)
    return build_once(target, build)
