"""A relaunched sweep skips complete runs even when `eval.tasks` now names tasks they were
never scored on (tasks are not part of the run id). Say so, with the backfill command, and
let the user choose: retraining would give the same model, `harness eval` only scores."""

from __future__ import annotations

import sys
from pathlib import Path

from harness.identity import run_id
from harness.store import read_record, run_dir
from train.specs import RunSpec

_HINTED: set[tuple[str, tuple[str, ...]]] = set()  # one hint per sweep root and task list


def missing_tasks(spec: RunSpec, out_root: Path) -> list[str]:
    """Tasks of `spec.eval.tasks` that the run's complete record lacks ([] otherwise)."""
    rec = read_record(run_dir(out_root, run_id(spec)))
    if rec is None or not rec.is_complete or rec.final is None:
        return []
    return [t for t in spec.eval.tasks if t not in rec.final.tasks]


def hint_missing_tasks(spec: RunSpec, out_root: Path) -> None:
    missing = missing_tasks(spec, out_root)
    key = (str(out_root), tuple(missing))
    if not missing or key in _HINTED:
        return
    _HINTED.add(key)
    tasks = ",".join(missing)
    print(
        f"hint: complete run(s) under {out_root} lack task(s) {tasks}; they are skipped, not "
        f"retrained. Score them with: harness eval root={out_root} 'eval.tasks=[{tasks}]'",
        file=sys.stderr,
    )
