"""How `make test` hands the suite to its pytest-xdist workers (`-n 2 --dist loadfile`; any
`pytest -n N` but `--dist each` gets the same units).

Each test file is one unit of work, so a module-scoped fixture (a trained run, an analysed
sweep) is built once, not once per worker. The two SLURM files are one unit together: they
share one cluster of 2 CPUs and time their waits on it. Units go out in the order collected,
which conftest.pytest_collection_modifyitems sets: the SLURM unit first (its waits overlap the
other worker's work), then the long files (LONG_FILES), then the rest; Makefile passes
--no-loadscope-reorder so that xdist keeps that order.

A scheduler rather than xdist_group marks: --dist loadgroup reads the marks by rewriting node
ids, which pytest 9.2 no longer honours (pytest-xdist issue #1386), and the groups were
silently ignored.
"""

from __future__ import annotations

import pytest

SLURM_FILES = ("test_slurm_cluster.py", "test_slurm_sweep.py")

# The files that take longest (30-140 s each on 2 cores: runs trained and killed in
# subprocesses), handed out first so that none is left for the end while the other worker
# idles. The order only changes when a file runs, never what it checks.
LONG_FILES = (
    "test_gpu_check.py",
    "test_signals.py",
    "test_fsdp.py",
    "test_reliability_faults.py",
    "test_plan_truth.py",
    "test_analysis_atomic_output.py",
    "test_verified_runs.py",
    "test_reliability_concurrency.py",
)


def unit_of(nodeid: str) -> str:
    """The unit of work a test belongs to: "slurm", or its file's path."""
    path = nodeid.split("::", 1)[0]
    return "slurm" if path.rsplit("/", 1)[-1] in SLURM_FILES else path


def start_rank(item: pytest.Item) -> int:
    """Where a test's unit goes in the queue: lower first."""
    name = item.path.name
    if name in SLURM_FILES:
        return -1
    return LONG_FILES.index(name) if name in LONG_FILES else len(LONG_FILES)


def make_scheduler(config: pytest.Config, log):
    from xdist.scheduler import LoadFileScheduling

    class FileUnits(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return unit_of(nodeid)

    return FileUnits(config, log)
