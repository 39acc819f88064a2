"""The harness's progress lines: one prefix, on stderr, flushed (SLURM logs stay in order).

`HARNESS_LOG_TAG` names the process in that prefix (`[harness toy_code] ...`): processes that
share a terminal (`make demo` runs one per data mix) keep their lines apart.
"""

from __future__ import annotations

import os
import sys

TAG_ENV = "HARNESS_LOG_TAG"


def log(msg: str) -> None:
    tag = os.environ.get(TAG_ENV)
    print(f"[harness {tag}] {msg}" if tag else f"[harness] {msg}", file=sys.stderr, flush=True)
