"""The harness's progress lines: one prefix, on stderr, flushed (SLURM logs stay in order)."""

from __future__ import annotations

import sys


def log(msg: str) -> None:
    print(f"[harness] {msg}", file=sys.stderr, flush=True)
