"""The run store: `<out_root>/runs/<run_id>/{config.yaml, record.json, train_log.jsonl,
checkpoints/}`. Records are the source of truth; every write is atomic.

The store owns record.json: it is read and written here only, as a `RunRecord`
(common/record.py, which defines and validates the schema).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

from common.atomic import write_json
from common.errors import RecordError
from common.files import read_regular
from common.record import MAX_RECORD_BYTES, SCHEMA_VERSION, STATUSES, RunRecord

__all__ = [
    "SCHEMA_VERSION",
    "STATUSES",
    "RunRecord",
    "git_sha",
    "is_complete",
    "iter_run_dirs",
    "read_record",
    "run_dir",
    "write_record",
]


HEARTBEAT = "heartbeat.json"


def run_dir(out_root: Path, run_id: str) -> Path:
    return Path(out_root) / "runs" / run_id


def read_record(path: Path) -> RunRecord | None:
    """The record at `path` (a run dir or a record.json), or None when absent or unreadable
    (said on stderr: the run is then treated as not done and redone or resumed)."""
    path = Path(path)
    if path.is_dir():
        path = path / "record.json"
    text = _read_regular(path, MAX_RECORD_BYTES)
    if text is None:
        return None
    try:
        rec = json.loads(text.decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        print(
            f"warning: corrupt record {path}: {err}; treating the run as not done", file=sys.stderr
        )
        return None
    try:
        return RunRecord.from_json(rec)
    except RecordError as err:
        print(f"warning: {path}: {err}; treating the run as not done", file=sys.stderr)
        return None


def _read_regular(path: Path, limit: int) -> bytes | None:
    """read_regular, with anything unreadable said on stderr and treated as absent."""
    try:
        return read_regular(path, limit)
    except OSError as err:
        print(f"warning: {err}; skipped", file=sys.stderr)
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
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
        return sha + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def iter_run_dirs(out_root: Path) -> list[Path]:
    runs = Path(out_root) / "runs"
    return sorted(p for p in runs.iterdir() if p.is_dir()) if runs.exists() else []


def write_heartbeat(run_path: Path) -> None:
    """Say which process runs this run (`heartbeat.json`: pid, host, time), so `harness
    status` can tell a live local run from a dead one."""
    write_json(
        Path(run_path) / HEARTBEAT,
        {"pid": os.getpid(), "host": socket.gethostname(), "time": round(time.time(), 3)},
    )


def is_dead(run_path: Path) -> bool:
    """True when a run whose record says `running` certainly has no live process: the run's
    lock is free (the runner holds it from start to finish; the kernel releases it on any
    death), or its heartbeat names a process on this host that no longer exists."""
    import fcntl

    run_path = Path(run_path)
    try:
        fd = os.open(run_path / ".lock", os.O_RDWR)
    except OSError:
        fd = None
    if fd is not None:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return False  # held: a live process runs (or backfills) it
        else:
            fcntl.flock(fd, fcntl.LOCK_UN)
            return True
        finally:
            os.close(fd)
    raw = _read_regular(run_path / HEARTBEAT, 4096)
    try:
        beat = json.loads(raw) if raw else None
    except (json.JSONDecodeError, UnicodeDecodeError):
        beat = None
    if not isinstance(beat, dict) or beat.get("host") != socket.gethostname():
        return False
    try:
        os.kill(int(beat["pid"]), 0)
    except ProcessLookupError:
        return True
    except (OSError, KeyError, TypeError, ValueError):
        return False
    return False


def remove_leftovers(ckpt_root: Path) -> None:
    """Delete temporary checkpoint directories (`.step_<N>.*`) an interrupted save left behind;
    called under the run's lock, so no live writer owns them."""
    if not Path(ckpt_root).is_dir():
        return
    for p in Path(ckpt_root).iterdir():
        if p.name.startswith(".step_") and p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
