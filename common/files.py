"""Reading files that someone else may have planted: only regular files, never blocking."""

from __future__ import annotations

import os
import stat
from pathlib import Path


class NotRegularFile(OSError):
    """The path is a FIFO, device, directory or socket, or larger than the caller allows."""


def read_regular(path: Path | str, limit: int) -> bytes | None:
    """The bytes of `path`, or None when it does not exist. NotRegularFile when it is not a
    regular file or holds more than `limit` bytes. Opened with O_NONBLOCK and checked on the
    open descriptor (no race between check and open), so a FIFO, or a link to /dev/zero, in
    place of a record never hangs the reader or fills its memory."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise NotRegularFile(f"{path} is not a regular file")
        if st.st_size > limit:
            raise NotRegularFile(f"{path} has {st.st_size} bytes (more than {limit})")
        with os.fdopen(fd, "rb", closefd=False) as fh:
            return fh.read(limit + 1)[:limit]
    finally:
        os.close(fd)
