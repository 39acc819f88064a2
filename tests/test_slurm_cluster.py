"""Smoke tests of the SLURM cluster the sweeps run on.

Locally: `bash slurm/local_cluster.sh start`.

All tests are marked ``slurm`` and skip with the reason from ``slurm_available()`` when no cluster
answers. Accounting is off in the local cluster (no slurmdbd), so job states come from
``scontrol show job`` (finished jobs stay visible for MinJobAge) and from output files; the
``sacct`` that submitit polls is local_cluster.sh's stand-in answering from ``scontrol``.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.slurm_util import (
    cancel,
    job_info,
    slurm_available,
    submit,
    wait_for_file_lines,
    wait_for_state,
)

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

WAIT_S = 60  # every wait on the scheduler is bounded by this


@pytest.fixture(scope="module", autouse=True)
def _require_slurm() -> None:
    ok, reason = slurm_available()
    if not ok:
        pytest.skip(f"no SLURM cluster: {reason}")


def test_sbatch_wrap_completes(tmp_path: Path) -> None:
    out = tmp_path / "wrap.out"
    job_id = submit(
        [
            "--job-name=smoke-wrap",
            "--partition=debug",
            "--time=2",
            f"--chdir={tmp_path}",
            f"--output={out}",
            "--wrap",
            'echo "hello from $SLURM_JOB_ID on $SLURM_JOB_PARTITION"',
        ]
    )
    try:
        state = wait_for_state(job_id, {"COMPLETED"}, timeout=WAIT_S)
        assert state == "COMPLETED", f"job {job_id} ended in {state}: {job_info(job_id)}"
        assert out.read_text().strip() == f"hello from {job_id} on debug"
        assert job_info(job_id).get("ExitCode") == "0:0"
    finally:
        cancel(job_id)


def _executor(tmp_path: Path, name: str):
    submitit = pytest.importorskip("submitit")
    executor = submitit.AutoExecutor(folder=tmp_path / "submitit", cluster="slurm")
    executor.update_parameters(
        name=name,
        timeout_min=5,
        nodes=1,
        tasks_per_node=1,
        cpus_per_task=1,
        slurm_partition="debug",
    )
    return executor


def test_submitit_job_returns_result(tmp_path: Path) -> None:

    def probe(x: int) -> dict[str, object]:
        # defined locally so cloudpickle ships it by value (the job cannot import this module)
        import os
        import sys

        return {
            "value": x * x,
            "executable": sys.executable,
            "prefix": sys.prefix,
            "job_id": os.environ.get("SLURM_JOB_ID"),
            "partition": os.environ.get("SLURM_JOB_PARTITION"),
        }

    job = _executor(tmp_path, "smoke-submitit").submit(probe, 7)
    try:
        deadline = time.monotonic() + WAIT_S
        while not job.done() and time.monotonic() < deadline:
            time.sleep(0.5)
        assert job.done(), (
            f"submitit job {job.job_id} not done after {WAIT_S}s: {job_info(job.job_id)}"
        )
        result = job.result()
    finally:
        cancel(job.job_id)
    assert result["value"] == 49
    assert result["job_id"] == str(job.job_id)
    assert result["partition"] == "debug"
    # the job ran with this interpreter (the venv's), not the system python
    assert result["prefix"] == sys.prefix
    assert Path(str(result["executable"])) == Path(sys.executable)


def test_submitit_notices_job_killed_without_result(tmp_path: Path) -> None:
    """A job that dies without writing its result must end submitit's wait (no hang in sweeps).

    submitit learns the final state from sacct only, so this needs a working sacct (real
    accounting, or the stand-in installed by slurm/local_cluster.sh).
    """
    submitit = pytest.importorskip("submitit")

    def die() -> None:
        import os
        import signal

        os.kill(os.getpid(), signal.SIGKILL)

    job = _executor(tmp_path, "smoke-submitit-killed").submit(die)
    try:
        probe = subprocess.run(
            ["sacct", "-n", "-X", "-P", "-o", "State", "-j", str(job.job_id)],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if probe.returncode != 0:
            pytest.skip(f"sacct does not work here: {(probe.stderr or probe.stdout).strip()}")
        deadline = time.monotonic() + WAIT_S
        while not job.done(force_check=True) and time.monotonic() < deadline:
            time.sleep(1)
        assert job.done(), f"killed job {job.job_id} still not done after {WAIT_S}s: {job.state}"
        assert job.state in {"FAILED", "CANCELLED", "NODE_FAIL"}, job.state
        with pytest.raises(submitit.core.utils.UncompletedJobError):
            job.result()
    finally:
        cancel(job.job_id)


def test_requeue_restarts_running_job(tmp_path: Path) -> None:
    starts = tmp_path / "starts.txt"
    script = tmp_path / "requeue.sh"
    script.write_text(
        "#!/bin/bash\n"
        f'echo "start restart_count=${{SLURM_RESTART_COUNT:-0}}" >> "{starts}"\n'
        # first run: wait to be requeued; after a restart: finish at once
        'if [ "${SLURM_RESTART_COUNT:-0}" -ge 1 ]; then exit 0; fi\n'
        "sleep 300\n"
    )
    job_id = submit(
        [
            "--job-name=smoke-requeue",
            "--partition=debug",
            "--time=10",
            "--requeue",
            f"--chdir={tmp_path}",
            f"--output={tmp_path / 'requeue-%j.out'}",
            str(script),
        ]
    )
    try:
        lines = wait_for_file_lines(starts, 1, timeout=WAIT_S)
        assert lines, f"job {job_id} did not start within {WAIT_S}s: {job_info(job_id)}"
        assert wait_for_state(job_id, {"RUNNING"}, timeout=WAIT_S) == "RUNNING"

        proc = subprocess.run(
            ["scontrol", "requeue", job_id], capture_output=True, text=True, timeout=30, check=False
        )
        assert proc.returncode == 0, f"scontrol requeue failed: {proc.stderr}"

        # the requeued job waits AuthInfo=cred_expire (20 s locally) before it may start again
        lines = wait_for_file_lines(starts, 2, timeout=WAIT_S)
        assert len(lines) == 2, (
            f"job {job_id} not restarted within {WAIT_S}s: {lines} {job_info(job_id)}"
        )
        assert lines == ["start restart_count=0", "start restart_count=1"]
        state = wait_for_state(job_id, {"COMPLETED"}, timeout=WAIT_S)
        assert state == "COMPLETED", f"job {job_id} ended in {state}: {job_info(job_id)}"
        assert job_info(job_id).get("Restarts") == "1"
    finally:
        cancel(job_id)


def test_unknown_partition_is_rejected(tmp_path: Path) -> None:
    proc = subprocess.run(
        ["sbatch", "--partition=no_such_partition", f"--chdir={tmp_path}", "--wrap", "true"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode != 0, f"sbatch accepted an unknown partition: {proc.stdout}"
    assert "partition" in proc.stderr.lower(), proc.stderr
