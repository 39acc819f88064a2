"""What a run does when SLURM (or a user) asks it to stop.

The training loop only checks `.signum` at step boundaries and, when it is set, saves a
complete checkpoint and raises `Preempted`. This module decides what happens next:
- SIGUSR1/SIGUSR2: the pre-time-limit warning (`--signal`). Under submitit, its own handler
  (saved when ours is installed) re-pickles the job and requeues it; outside submitit we
  requeue with `scontrol requeue`. The requeued job resumes from the checkpoint.
- SIGTERM inside a SLURM job: SLURM is requeueing, preempting or cancelling the job and
  kills it after KillWait; we wait for that instead of exiting, so submitit writes no
  result and the requeued job runs the same submission again.
- SIGTERM outside SLURM: exit; relaunching the same command resumes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

WARNING_SIGNALS = (signal.SIGUSR1, signal.SIGUSR2)


class Preemption:
    """A stop flag for the training loop that remembers the handlers it replaced."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def install(self) -> None:
        for sig in (signal.SIGTERM, *WARNING_SIGNALS):
            try:
                self._previous[sig] = signal.signal(sig, self._handler)
            except ValueError:  # not the main thread: signals can't be caught here
                pass

    def _handler(self, signum: int, frame) -> None:
        if self.signum is None or signum in WARNING_SIGNALS:
            self.signum = signum

    def restore(self) -> None:
        for sig, prev in self._previous.items():
            signal.signal(sig, prev if prev is not None else signal.SIG_DFL)

    def after_checkpoint(self, log: Callable[[str], None]) -> None:
        """Called once the checkpoint is on disk. Returns only outside SLURM."""
        job = os.environ.get("SLURM_JOB_ID")
        if job is None or self.signum is None:
            return
        if self.signum in WARNING_SIGNALS:
            prev = self._previous.get(self.signum)
            if callable(prev):  # submitit: checkpoint the submission, requeue, exit
                log(f"job {job}: time limit near; handing over to submitit to requeue")
                prev(self.signum, None)
                return
            log(f"job {job}: time limit near; requeueing")
            subprocess.run(["scontrol", "requeue", job], check=False, timeout=60)
        log(f"job {job}: checkpoint saved; waiting for SLURM to stop this job")
        sys.stdout.flush()
        sys.stderr.flush()
        while True:  # SLURM sends SIGKILL after KillWait
            time.sleep(1)
