"""`harness status` / `harness cancel`: a sweep's runs from its run directories and squeue."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

from omegaconf import DictConfig

from common.errors import ConfigError
from harness.store import is_dead, iter_run_dirs, read_record


def squeue_jobs() -> dict[str, str]:
    """{job id: state} of this user's SLURM jobs; empty when SLURM is absent or unreachable."""
    if shutil.which("squeue") is None:
        return {}
    try:
        out = subprocess.run(
            ["squeue", "-h", "--me", "-o", "%i %T"], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return {}
    jobs = {}
    for line in out.stdout.splitlines():
        parts = line.split()
        if len(parts) == 2:
            jobs[parts[0]] = parts[1]
    return jobs


def _last_log(path: Path) -> dict:
    """The last complete line of train_log.jsonl; a torn last line (a kill mid-write) or any
    undecodable line is passed over. Only the file's tail is read, and only a regular file."""
    log = path / "train_log.jsonl"
    try:
        fd = os.open(log, os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return {}
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fh.fileno())
        if not stat.S_ISREG(st.st_mode):
            return {}
        fh.seek(max(0, st.st_size - 65536))
        lines = fh.read(65536).splitlines()
    for line in reversed(lines):
        try:
            row = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue
        if isinstance(row, dict):
            return row
    return {}


def status_rows(root: Path) -> list[dict]:
    jobs = squeue_jobs()
    rows = []
    for path in iter_run_dirs(root):
        rec = read_record(path)
        last = _last_log(path)
        job = rec.slurm_job_id if rec else None
        state = rec.status if rec else "pending"
        if state == "running" and job and job not in jobs:
            state = "interrupted"  # record says running but no live job: relaunch to resume
        elif state == "running" and not job and is_dead(path):
            state = "interrupted"  # a local run whose process is gone (killed): relaunch to resume
        val = rec.final.val_loss if rec and rec.final else {}
        first = next(iter(val.items()), (None, None))
        rows.append(
            {
                "run_id": path.name,
                "size": (rec.model.size if rec else None) or "?",
                "mix": (rec.data.mix if rec else None) or "?",
                "seed": rec.seed if rec else "?",
                "state": state,
                "step": last.get("step", 0),
                "tokens": last.get("tokens", 0),
                "val_loss": f"{first[0]}={first[1]:.4f}" if first[0] else "-",
                "slurm_job": f"{job} ({jobs[job]})" if job in jobs else (job or "-"),
            }
        )
    return rows


def print_status(cfg: DictConfig) -> None:
    if not cfg.get("root"):
        raise ConfigError("root: required (the sweep's output directory)")
    if not Path(cfg.root).is_dir():
        raise ConfigError(f"root: no such directory '{cfg.root}'")
    rows = status_rows(Path(cfg.root))
    if not rows:  # nothing found is an error: a mistyped root must not look like an idle sweep
        raise ConfigError(f"root: no runs under '{cfg.root}' (expected {cfg.root}/runs/<run_id>/)")
    cols = list(rows[0])
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in cols}
    print("  ".join(c.ljust(widths[c]) for c in cols))
    for r in rows:
        print("  ".join(str(r[c]).ljust(widths[c]) for c in cols))
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["state"]] = counts.get(r["state"], 0) + 1
    print(", ".join(f"{n} {s}" for s, n in sorted(counts.items())))


def cancel(cfg: DictConfig) -> None:
    """scancel every live SLURM job recorded by a run of this sweep."""
    if not cfg.get("root"):
        raise ConfigError("root: required (the sweep's output directory)")
    if not Path(cfg.root).is_dir():
        raise ConfigError(f"root: no such directory '{cfg.root}'")
    runs = list(iter_run_dirs(Path(cfg.root)))
    if not runs:  # as `status`: a mistyped root is bad input, not an idle sweep (exit 2)
        raise ConfigError(f"root: no runs under '{cfg.root}' (expected {cfg.root}/runs/<run_id>/)")
    jobs = squeue_jobs()
    recorded = {job for p in runs if (rec := read_record(p)) and (job := rec.slurm_job_id)}
    ids = sorted(recorded & set(jobs))
    if not ids:  # a sweep with nothing live: not bad input, but no success a script could trust
        print(f"nothing to cancel: no live SLURM jobs recorded under {cfg.root}", file=sys.stderr)
        raise SystemExit(1)
    subprocess.run(["scancel", *ids], check=False, timeout=30)
    print(f"cancelled {len(ids)} job(s): {' '.join(ids)}")
