"""Per-item predictions (`eval.log_samples=true`): each evaluated checkpoint's items, as
lm-eval logged them, in `runs/<run_id>/samples/step_<N>.parquet` (zstd).

One file per checkpoint, written atomically before the record names the checkpoint, so a
file is either whole or absent, and a resumed run drops the files after its resume step
exactly as the record drops those entries (`drop_after`); `harness eval` adds the tasks it
backfills to the files of the checkpoints it scores (`merge_samples`). Columns: run_id, step,
tokens, task, doc_id, doc_hash, prompt (the context scored, few-shot examples included), choices
and loglik (per choice, multiple-choice tasks), gold (index of the correct choice), target
and response (as text, any task), and one column per lm-eval metric of the item (acc,
acc_norm, ...).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from common.atomic import atomic_path
from eval.continuous import choice_logliks, request_args

SAMPLES_DIR = "samples"
_PREFIX = "step_"


def samples_path(run_path: Path, step: int) -> Path:
    return Path(run_path) / SAMPLES_DIR / f"{_PREFIX}{step}.parquet"


def sample_steps(run_path: Path) -> list[int]:
    """The steps whose per-item file exists, in order."""
    folder = Path(run_path) / SAMPLES_DIR
    steps = []
    for p in folder.glob(f"{_PREFIX}*.parquet"):
        num = p.stem[len(_PREFIX) :]
        if num.isdigit():
            steps.append(int(num))
    return sorted(steps)


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, (list, tuple)) and len(value) == 1:
        value = value[0]
    return str(value)


def _metric(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)) and math.isfinite(value):
        return float(value)
    return None


def _context(sample: dict[str, Any]) -> str | None:
    args = request_args(sample)
    try:
        return str(args[0][0]) if args else None
    except (IndexError, TypeError, KeyError):
        return None


def sample_row(sample: dict[str, Any]) -> dict[str, Any]:
    """One item of one task: its identity, prompt, per-choice log-likelihoods and metrics."""
    scored = choice_logliks(sample)
    row: dict[str, Any] = {
        "doc_id": int(sample["doc_id"]),
        "doc_hash": sample.get("doc_hash"),
        "prompt": _context(sample),
        "choices": scored[1] if scored else None,
        "loglik": scored[0] if scored else None,
        "gold": scored[2] if scored else None,
        "target": _text(sample.get("target")),
        "response": None if scored else _text(sample.get("filtered_resps")),
    }
    for name in sample.get("metrics") or []:
        row[name] = _metric(sample.get(name))
    return row


def sample_rows(
    run_id: str, step: int, tokens: int | float | None, samples: dict[str, list[dict[str, Any]]]
) -> list[dict[str, Any]]:
    """Every item of every task scored at one checkpoint, one row each."""
    return [
        {"run_id": run_id, "step": step, "tokens": tokens, "task": task, **sample_row(s)}
        for task, items in sorted(samples.items())
        for s in items
    ]


def write_samples(run_path: Path, step: int, rows: list[dict[str, Any]]) -> Path:
    """The checkpoint's file, written to a temporary name and renamed over the target."""
    import pandas as pd

    target = samples_path(run_path, step)
    frame = pd.DataFrame(rows)
    with atomic_path(target) as tmp:
        frame.to_parquet(tmp, index=False, compression="zstd")
    return target


def merge_samples(run_path: Path, step: int, rows: list[dict[str, Any]]) -> Path:
    """Add the items of tasks scored later (`harness eval`) to the checkpoint's file: the
    rows of those tasks replace any kept before, the other tasks' rows stay."""
    import pandas as pd

    path = samples_path(run_path, step)
    if not path.exists():
        return write_samples(run_path, step, rows)
    new = pd.DataFrame(rows)
    old = pd.read_parquet(path)
    kept = old[~old["task"].isin(set(new["task"]))]
    merged = pd.concat([kept, new], ignore_index=True)
    with atomic_path(path) as tmp:
        merged.to_parquet(tmp, index=False, compression="zstd")
    return path


def drop_after(run_path: Path, step: int) -> None:
    """Remove the files of steps after `step`: a resumed run scores them again, as the record
    drops its entries after the resume step (`RunRecord.keep_until`)."""
    for s in sample_steps(run_path):
        if s > step:
            samples_path(run_path, s).unlink(missing_ok=True)


def read_samples(run_path: Path, step: int):
    """The checkpoint's items as a DataFrame."""
    import pandas as pd

    return pd.read_parquet(samples_path(run_path, step))
