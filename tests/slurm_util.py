"""Helpers for tests that need a SLURM cluster (see slurm/local_cluster.sh).

Import as ``from tests.slurm_util import slurm_available`` (tests/ is a package).
"""

from __future__ import annotations

import functools
import re
import shutil
import subprocess
import time
from pathlib import Path

SINFO_TIMEOUT_S = 5
# node states (sinfo %t, compact form) in which the node can run jobs
USABLE_NODE_STATES = {"idle", "mix", "alloc", "comp", "idle~", "mix-", "alloc+", "plnd"}
FINAL_JOB_STATES = {
    "COMPLETED",
    "FAILED",
    "CANCELLED",
    "TIMEOUT",
    "NODE_FAIL",
    "PREEMPTED",
    "OUT_OF_MEMORY",
    "BOOT_FAIL",
    "DEADLINE",
}


def _run(cmd: list[str], timeout: float = SINFO_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)


@functools.lru_cache(maxsize=1)
def slurm_available() -> tuple[bool, str]:
    """(ok, reason): ok iff ``sinfo -h`` answers within a few seconds with at least one usable node.

    reason explains what is missing, suitable for ``pytest.skip(reason)``.
    """
    if shutil.which("sinfo") is None or shutil.which("sbatch") is None:
        return (
            False,
            "SLURM client tools (sinfo/sbatch) not installed; "
            "run `bash slurm/local_cluster.sh start`",
        )
    try:
        proc = _run(["sinfo", "-h", "-N", "-o", "%N %P %t"])
    except subprocess.TimeoutExpired:
        return False, f"`sinfo -h` did not answer within {SINFO_TIMEOUT_S}s (slurmctld down?)"
    except OSError as exc:
        return False, f"`sinfo` could not run: {exc}"
    if proc.returncode != 0:
        msg = (proc.stderr or proc.stdout).strip().splitlines()
        return False, f"`sinfo -h` failed (rc={proc.returncode}): {msg[-1] if msg else 'no output'}"
    lines = [ln.split() for ln in proc.stdout.splitlines() if ln.strip()]
    if not lines:
        return False, "`sinfo -h` answered but lists no nodes"
    usable = [ln for ln in lines if len(ln) >= 3 and ln[2] in USABLE_NODE_STATES]
    if not usable:
        states = ", ".join(" ".join(ln) for ln in lines)
        return False, f"SLURM answers but no node is usable ({states})"
    return True, f"SLURM cluster up: {', '.join(' '.join(ln) for ln in usable)}"


def submit(args: list[str], timeout: float = 30) -> str:
    """Run ``sbatch --parsable ARGS`` and return the job id; raises RuntimeError on failure."""
    proc = _run(["sbatch", "--parsable", *args], timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(
            f"sbatch {' '.join(args)} failed (rc={proc.returncode}): {proc.stderr.strip()}"
        )
    return proc.stdout.strip().split(";")[0]


def job_info(job_id: str) -> dict[str, str]:
    """Fields of ``scontrol show job -o JOB`` as a dict ({} when the job is unknown)."""
    proc = _run(["scontrol", "show", "job", "-o", str(job_id)], timeout=15)
    if proc.returncode != 0:
        return {}
    info: dict[str, str] = {}
    for m in re.finditer(r"(\w[\w:/]*)=(\S*)", proc.stdout):
        info.setdefault(m.group(1), m.group(2))
    return info


def job_state(job_id: str) -> str:
    """Job state from scontrol (kept MinJobAge s after the end), else sacct, else 'UNKNOWN'."""
    state = job_info(job_id).get("JobState")
    if state:
        return state
    proc = _run(["sacct", "-n", "-X", "-P", "-o", "State", "-j", str(job_id)], timeout=15)
    if proc.returncode == 0 and proc.stdout.strip():
        return proc.stdout.split()[0]
    return "UNKNOWN"


def wait_for_state(job_id: str, states: set[str], timeout: float = 60, poll: float = 0.5) -> str:
    """Poll until the job's state is in ``states`` (or final); returns the last state seen."""
    deadline = time.monotonic() + timeout
    state = "UNKNOWN"
    while time.monotonic() < deadline:
        state = job_state(job_id)
        if state in states or state in FINAL_JOB_STATES:
            return state
        time.sleep(poll)
    return state


def wait_for_file_lines(path: Path, n: int, timeout: float = 60, poll: float = 0.5) -> list[str]:
    """Poll until ``path`` has at least ``n`` lines; returns the lines read last."""
    deadline = time.monotonic() + timeout
    lines: list[str] = []
    while time.monotonic() < deadline:
        if path.exists():
            lines = path.read_text().splitlines()
            if len(lines) >= n:
                break
        time.sleep(poll)
    return lines


def cancel(job_id: str) -> None:
    """Best-effort scancel."""
    try:
        _run(["scancel", str(job_id)], timeout=15)
    except (subprocess.TimeoutExpired, OSError):
        pass
