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
- SIGINT (Ctrl-C) outside SLURM: like SIGTERM (checkpoint, then stop); a second Ctrl-C stops
  at once (KeyboardInterrupt; the run resumes from its last complete checkpoint). Under SLURM
  SIGINT keeps Python's default: nothing here would ever end the job after it.
Outside SLURM a stop also ends the sweep: a signal that reached a run is remembered for the
process, and `stop_sweep_if_signalled` (called by the launcher around each run) ends the
process so Hydra's basic launcher, which catches a run's exceptions and goes on to the next
run, starts none.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")
WARNING_SIGNALS = (signal.SIGUSR1, signal.SIGUSR2)
# the signal that stopped (or will stop) a run of this process; see stop_sweep_if_signalled
_SIGNALLED: list[int] = []


def under_slurm() -> bool:
    return os.environ.get("SLURM_JOB_ID") is not None


class Preemption:
    """A stop flag for the training loop that remembers the handlers it replaced."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def install(self) -> None:
        clear_signalled()  # a new run starts: what stopped an earlier one is not its stop
        sigs = [signal.SIGTERM, *WARNING_SIGNALS]
        # SIGINT ignored (a background job of a non-interactive shell) stays ignored
        if not under_slurm() and signal.getsignal(signal.SIGINT) != signal.SIG_IGN:
            sigs.append(signal.SIGINT)
        for sig in sigs:
            try:
                self._previous[sig] = signal.signal(sig, self._handler)
            except ValueError:  # not the main thread: signals can't be caught here
                pass

    def _handler(self, signum: int, frame) -> None:
        if signum == signal.SIGINT and self.signum is not None:
            raise KeyboardInterrupt  # a second Ctrl-C: stop now, without the checkpoint
        if signum == signal.SIGINT:
            _say("\nCtrl-C: stopping after this step's checkpoint (Ctrl-C again: stop now)\n")
        if self.signum is None or signum in WARNING_SIGNALS:
            self.signum = signum
        if not _SIGNALLED:
            _SIGNALLED.append(signum)

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


def _say(text: str) -> None:
    """Write from a signal handler: os.write, since print may be mid-write to the same stream
    (the progress bar) and a buffered stream refuses a reentrant write."""
    try:
        os.write(2, text.encode())
    except OSError:
        pass


def signalled() -> int | None:
    """The stop signal a run of this process received since `clear_signalled`, if any."""
    return _SIGNALLED[0] if _SIGNALLED else None


def clear_signalled() -> None:
    _SIGNALLED.clear()


def stop_sweep_if_signalled(log: Callable[[str], None]) -> None:
    """End the process when a run received a stop signal, outside SLURM (under SLURM the job is
    requeued or ended by SLURM itself): Ctrl-C as KeyboardInterrupt (exit 130), any other
    signal as SystemExit(128 + signal). Both pass through Hydra's launcher, which catches only
    Exception, so no further run of a sweep starts. Called after a run returned or raised
    (a signal during the last step lets that run complete; the sweep still stops)."""
    signum = signalled()
    if signum is None or under_slurm():
        return
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    log(
        f"stopped by signal {signum} ({signal.Signals(signum).name}): no further run starts; "
        "relaunch the same command to resume"
    )
    raise SystemExit(128 + signum)


def stop_sweep_on_signal(launch: Callable[[], T]) -> T:
    """`launch()` (one run of a sweep), then `stop_sweep_if_signalled`: whether the run
    returned or raised (Preempted, KeyboardInterrupt), a stop signal it received ends the
    process instead of letting the launcher start the next run."""
    from common.log import log

    clear_signalled()
    try:
        result = launch()
    except BaseException:
        stop_sweep_if_signalled(log)
        raise
    stop_sweep_if_signalled(log)
    return result
