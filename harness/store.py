"""The run store: `<out_root>/runs/<run_id>/{config.yaml, record.json, train_log.jsonl,
checkpoints/}`. Records are the source of truth; every write is atomic.

The store owns record.json: it is read and written here only, as a `RunRecord`
(common/record.py, which defines and validates the schema).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from common.atomic import write_json
from common.errors import RecordError
from common.record import SCHEMA_VERSION, STATUSES, RunRecord

__all__ = ["SCHEMA_VERSION", "STATUSES", "RunRecord", "git_sha", "is_complete", "iter_run_dirs",
           "read_record", "run_dir", "write_record"]


def run_dir(out_root: Path, run_id: str) -> Path:
    return Path(out_root) / "runs" / run_id


def read_record(path: Path) -> RunRecord | None:
    """The record at `path` (a run dir or a record.json), or None when absent or unreadable
    (said on stderr: the run is then treated as not done and redone or resumed)."""
    path = Path(path)
    if path.is_dir():
        path = path / "record.json"
    if not path.exists():
        return None
    try:
        rec = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        print(f"warning: corrupt record {path}: {err}; treating the run as not done", file=sys.stderr)
        return None
    try:
        return RunRecord.from_json(rec)
    except RecordError as err:
        print(f"warning: {path}: {err}; treating the run as not done", file=sys.stderr)
        return None


def write_record(run_path: Path, record: RunRecord) -> None:
    write_json(Path(run_path) / "record.json", record.to_json())


def is_complete(run_path: Path) -> bool:
    rec = read_record(run_path)
    return rec is not None and rec.is_complete


def git_sha() -> str:
    """The project's commit, with '+dirty' when the tree has changes; 'unknown' outside git."""
    root = Path(__file__).resolve().parent.parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                             timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return sha + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def iter_run_dirs(out_root: Path) -> list[Path]:
    runs = Path(out_root) / "runs"
    return sorted(p for p in runs.iterdir() if p.is_dir()) if runs.exists() else []
