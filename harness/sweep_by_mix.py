"""`python -m harness.sweep_by_mix out_root=DIR data=MIX,MIX [overrides]`: one `harness run -m`
process per data mix, side by side (`make demo`), stopped together.

Each process gets `data=<mix> train.num_threads=1 out_root=DIR` and its own Hydra folder
(`DIR/hydra/<time>-<mix>`); all but the last run without a progress bar, so one bar is shown,
and each process's lines are prefixed with its mix (`[harness toy_code] ...`).

Signals: the processes run in their own process groups, so a terminal's Ctrl-C reaches only
this launcher, which passes it (and SIGTERM; SIGHUP as SIGTERM) on to every process exactly
once: each saves its run's checkpoint and ends its sweep. A second Ctrl-C is passed on too and
stops them at once. Started from a shell's `&` a process would inherit SIGINT ignored and
outlive a Ctrl-C; here each starts with the default SIGINT. On Linux each also gets SIGTERM
if this launcher dies (kill -9). Exit status: 128 + the first signal passed on, else the first
non-zero status of a process, else 0.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from common.log import TAG_ENV

FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_PR_SET_PDEATHSIG = 1


def commands(args: list[str], stamp: str) -> list[tuple[list[str], dict[str, str]]]:
    """(argv, environment) of each mix's process; `args` must hold `out_root=` and `data=`."""
    opts = {a.partition("=")[0]: a.partition("=")[2] for a in args if "=" in a}
    out, mixes = opts.get("out_root"), [m for m in opts.get("data", "").split(",") if m]
    if not out or not mixes:
        raise SystemExit("error: sweep_by_mix needs out_root=DIR and data=MIX[,MIX...]")
    rest = [a for a in args if a.partition("=")[0] not in ("out_root", "data")]
    cmds = []
    for i, mix in enumerate(mixes):
        argv = [sys.executable, "-m", "harness.cli", "run", "-m", *rest, f"data={mix}"]
        argv += ["train.num_threads=1", f"out_root={out}"]
        argv += [f"hydra.sweep.dir={Path(out) / 'hydra' / f'{stamp}-{mix}'}"]
        env = dict(os.environ)
        env[TAG_ENV] = mix  # the processes share a terminal: each line says its mix
        if i < len(mixes) - 1:
            env["HARNESS_NO_PROGRESS"] = "1"
        cmds.append((argv, env))
    return cmds


def _child_setup() -> None:
    """In the child before exec: its own process group (a terminal's Ctrl-C reaches only the
    launcher), SIGINT at its default (exec keeps an ignored signal ignored), the launcher's
    blocked signals unblocked (exec keeps the mask), and SIGTERM when the launcher dies
    (Linux; elsewhere skipped). Popen's process_group needs Python 3.11."""
    os.setpgid(0, 0)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, FORWARDED)
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    except (OSError, AttributeError):
        pass


def run_together(cmds: list[tuple[list[str], dict[str, str]]]) -> int:
    """Start every command, pass stop signals on to all, wait for all; the exit status."""
    received: list[int] = []
    procs: list[subprocess.Popen] = []

    def forward(signum: int, frame) -> None:
        received.append(signum)
        # a hang-up (terminal closed) as SIGTERM: harness runs save their checkpoint on that
        to_send = signal.SIGTERM if signum == signal.SIGHUP else signum
        for p in procs:
            if p.returncode is None:  # not poll(): the main thread may be in p.wait()
                try:
                    os.kill(p.pid, to_send)
                except ProcessLookupError:
                    pass

    for sig in FORWARDED:
        signal.signal(sig, forward)
    # held back while starting: a signal then reaches every process once, after the last start
    signal.pthread_sigmask(signal.SIG_BLOCK, FORWARDED)
    try:
        for argv, env in cmds:
            # preexec_fn: setpgid, two signal calls and a prctl, nothing that takes a lock
            proc = subprocess.Popen(argv, env=env, preexec_fn=_child_setup)
            procs.append(proc)
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, FORWARDED)
    codes = [p.wait() for p in procs]
    if received:
        return 128 + received[0]
    bad = [c if c > 0 else 128 - c for c in codes if c != 0]
    return bad[0] if bad else 0


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    return run_together(commands(args, time.strftime("%Y%m%d-%H%M%S")))


if __name__ == "__main__":
    sys.exit(main())
