"""Issue 25.7: a stop signal stops everything. Real signals to real processes: SIGTERM or
Ctrl-C to `harness run -m` ends the sweep once the current run's checkpoint is saved (Hydra's
basic launcher used to start the next run), and `make demo`'s two processes stop together on
Ctrl-C and on SIGTERM (the background one used to inherit SIGINT ignored and train on)."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.sweep_by_mix import commands
from tests.conftest import ROOT, tiny_overrides
from tests.fault_injection import child_env, harness_cmd, with_default_sigint
from train.checkpoint import checkpoint_steps


def long(tokens: int = 400000) -> list[str]:
    """782 steps of 512 tokens by default, checkpointed only where evaluated (steps 391 and
    782) or stopped."""
    return [f"train.tokens={tokens}", "train.checkpoint_every=0", "eval.num_checkpoints=2"]


def _record(run: Path) -> dict:
    return json.loads((run / "record.json").read_text())


def _runs(out: Path) -> list[Path]:
    return sorted(p for p in (out / "runs").glob("*") if p.is_dir())


def _logged(run: Path) -> int:
    log = run / "train_log.jsonl"
    return log.read_text().count("\n") if log.exists() else 0


def _wait_training(out: Path, n_runs: int, proc: subprocess.Popen, timeout: float = 300) -> None:
    """Until `n_runs` runs under `out` have each logged two training steps."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        runs = _runs(out) if (out / "runs").exists() else []
        if len(runs) >= n_runs and all(_logged(r) >= 2 for r in runs):
            return
        if proc.poll() is not None:
            said = proc.stdout.read() if proc.stdout else ""
            raise AssertionError(f"exited {proc.returncode} before training:\n{said}")
        time.sleep(0.2)
    raise AssertionError(f"{n_runs} run(s) did not start training within {timeout}s")


def _pids_mentioning(text: str) -> list[int]:
    """Live processes whose command line names `text` (this test's output folder)."""
    pids = []
    for d in Path("/proc").glob("[0-9]*"):
        try:
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (d / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if text in cmd and state != "Z" and int(d.name) != os.getpid():
            pids.append(int(d.name))
    return pids


def _kill_leftovers(text: str) -> None:
    for pid in _pids_mentioning(text):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _assert_stopped_with_checkpoint(run: Path, sig: int) -> None:
    rec = _record(run)
    assert rec["status"] == "interrupted", rec
    want = "interrupted by Ctrl-C" if sig == signal.SIGINT else f"stopped: signal {int(sig)}"
    assert rec["failure"].startswith(want), rec["failure"]
    stop = re.search(r"at step (\d+); checkpoint saved", rec["failure"])
    assert stop, f"stopped without saving a checkpoint: {rec['failure']}"
    assert int(stop[1]) in checkpoint_steps(run / "checkpoints")


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "ctrl-c"])
def test_signal_stops_the_sweep_after_saving_the_current_run(shared_cache, tmp_path, sig):
    out = tmp_path / "out"
    over = tiny_overrides(shared_cache, out) + long()
    proc = subprocess.Popen(
        with_default_sigint([*harness_cmd(["-m", *over, "seed=0,1"])]),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=child_env(),
    )
    try:
        _wait_training(out, 1, proc)
        os.kill(proc.pid, sig)
        output, _ = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 128 + sig, output[-3000:]
    runs = _runs(out)
    assert len(runs) == 1, f"a next run started after the signal: {runs}\n{output[-3000:]}"
    _assert_stopped_with_checkpoint(runs[0], sig)
    assert "Traceback" not in output, output[-3000:]


def _fake_venv(tmp_path: Path) -> Path:
    """What the Makefile needs of $(VENV), pointing at this interpreter: `make demo` then skips
    its install step."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    for name, cmd in (("python", ""), ("harness", "-m harness.cli ")):
        script = venv / "bin" / name
        script.write_text(f'#!/bin/sh\nexec {sys.executable} {cmd}"$@"\n')
        script.chmod(0o755)
    (venv / ".installed").touch()
    return venv


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
@pytest.mark.parametrize("how", ["ctrl-c", "sigterm"])
def test_make_demo_processes_stop_together(shared_cache, tmp_path, how):
    """Ctrl-C: SIGINT to make's whole process group, as a terminal sends it. SIGTERM: to make
    alone, as `kill` or `timeout` sends it (make passes it on to its recipe's process)."""
    out = tmp_path / "out"
    over = [o for o in tiny_overrides(shared_cache, out) if not o.startswith("out_root=")]
    # long enough that one mix's run is still training when the other's starts
    sweep_args = " ".join([*over, *long(1600000), "eval.tasks=[]", "seed=0,1"])
    proc = subprocess.Popen(
        ["make", "-C", str(ROOT), "demo", f"VENV={_fake_venv(tmp_path)}", f"OUT={out}"]
        + [f"SWEEP_ARGS={sweep_args}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=child_env(),
        start_new_session=True,  # its own process group, like a shell's foreground job
    )
    try:
        _wait_training(out, 2, proc)
        if how == "ctrl-c":
            os.killpg(proc.pid, signal.SIGINT)
        else:
            os.kill(proc.pid, signal.SIGTERM)
        output, _ = proc.communicate(timeout=300)
        time.sleep(2)  # anything still alive now was left running
        left = _pids_mentioning(str(out))
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        _kill_leftovers(str(out))
    assert proc.returncode != 0, output[-3000:]
    assert not left, f"processes left running after make ended: {left}\n{output[-3000:]}"
    runs = _runs(out)
    assert len(runs) == 2, f"expected one run per mix, found {runs}\n{output[-3000:]}"
    sig = signal.SIGINT if how == "ctrl-c" else signal.SIGTERM
    for run in runs:
        _assert_stopped_with_checkpoint(run, sig)


def test_sweep_by_mix_commands():
    cmds = commands(["sweep=demo", "data=toy_code,toy", "out_root=/o", "seed=1"], "T")
    assert [c[0][c[0].index("run") :] for c in cmds] == [
        ["run", "-m", "sweep=demo", "seed=1", f"data={m}", "train.num_threads=1", "out_root=/o"]
        + [f"hydra.sweep.dir=/o/hydra/T-{m}"]
        for m in ("toy_code", "toy")
    ]
    assert cmds[0][1]["HARNESS_NO_PROGRESS"] == "1"  # one progress bar: the last process's
    assert cmds[1][1].get("HARNESS_NO_PROGRESS") == os.environ.get("HARNESS_NO_PROGRESS")
    assert [c[1]["HARNESS_LOG_TAG"] for c in cmds] == ["toy_code", "toy"]  # lines say their mix
    with pytest.raises(SystemExit, match="out_root=DIR and data="):
        commands(["sweep=demo"], "T")


@pytest.mark.slow
def test_sweep_by_mix_runs_both_mixes_to_completion(shared_cache, tmp_path):
    out = tmp_path / "out"
    over = [o for o in tiny_overrides(shared_cache, out) if not o.startswith("out_root=")]
    res = subprocess.run(
        [sys.executable, "-m", "harness.sweep_by_mix", "data=toy_code,toy", f"out_root={out}"]
        + over,
        cwd=ROOT,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    records = [_record(r) for r in _runs(out)]
    assert sorted(r["data"]["mix"] for r in records) == ["toy", "toy_code"]
    assert all(r["status"] == "complete" for r in records)
    hydra_dirs = sorted(p.name.split("-", 2)[2] for p in (out / "hydra").iterdir())
    assert hydra_dirs == ["toy", "toy_code"]  # <time>-<mix>: each process keeps its own logs
    # the two processes share stderr: every step line says its process's mix and its run
    steps = [ln for ln in res.stderr.splitlines() if " step " in ln and "val loss" in ln]
    ids = {r["data"]["mix"]: r["run_id"] for r in records}
    assert len(steps) == 4  # 2 checkpoints per run
    for line in steps:
        mix = line.split("]")[0].removeprefix("[harness ")
        assert line.startswith(f"[harness {mix}] run {ids[mix]} step "), line


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGHUP, signal.SIGKILL], ids=["hangup", "kill-9"])
def test_sweep_by_mix_stops_both_on_hangup_or_its_own_death(shared_cache, tmp_path, sig):
    """A closed terminal (SIGHUP) reaches the processes as SIGTERM; a launcher killed with -9
    takes them down too (PR_SET_PDEATHSIG): each saves its checkpoint, none is orphaned."""
    out = tmp_path / "out"
    over = [o for o in tiny_overrides(shared_cache, out) if not o.startswith("out_root=")]
    log = (tmp_path / "log").open("w")  # a file: an orphan never blocks on a full pipe
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness.sweep_by_mix", "data=toy_code,toy", f"out_root={out}"]
        + [*over, *long(1600000), "seed=0,1"],
        cwd=ROOT,
        env=child_env(),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        _wait_training(out, 2, proc)
        os.kill(proc.pid, sig)
        proc.wait(timeout=300)
        deadline = time.time() + 120  # after a kill -9 nobody waits for them: poll
        while _pids_mentioning(str(out)) and time.time() < deadline:
            time.sleep(0.5)
        left = _pids_mentioning(str(out))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        _kill_leftovers(str(out))
        log.close()
    said = (tmp_path / "log").read_text()[-3000:]
    assert not left, f"processes left running: {left}\n{said}"
    runs = _runs(out)
    assert len(runs) == 2, f"{runs}\n{said}"
    for run in runs:
        _assert_stopped_with_checkpoint(run, signal.SIGTERM)


def test_under_slurm_a_stop_is_left_to_slurm(monkeypatch):
    """Under SLURM, Ctrl-C keeps Python's default and a SIGTERM ends no sweep here (SLURM
    requeues or ends the job); outside, the same SIGTERM ends the process with 143."""
    from harness import preemption

    monkeypatch.setenv("SLURM_JOB_ID", "123")
    default_int = signal.getsignal(signal.SIGINT)
    stop = preemption.Preemption()
    stop.install()
    try:
        assert signal.getsignal(signal.SIGINT) is default_int
        os.kill(os.getpid(), signal.SIGTERM)  # handled: sets the flag
        time.sleep(0.1)
        assert stop.signum == signal.SIGTERM
        preemption.stop_sweep_if_signalled(lambda m: None)  # returns
        monkeypatch.delenv("SLURM_JOB_ID")
        with pytest.raises(SystemExit) as stopped:
            preemption.stop_sweep_if_signalled(lambda m: None)
        assert stopped.value.code == 128 + signal.SIGTERM
    finally:
        stop.restore()
        preemption.clear_signalled()


@pytest.mark.parametrize("tag, prefix", [(None, "[harness] "), ("toy_code", "[harness toy_code] ")])
def test_log_lines_carry_the_process_tag(monkeypatch, capsys, tag, prefix):
    from common.log import log

    if tag is None:
        monkeypatch.delenv("HARNESS_LOG_TAG", raising=False)
    else:
        monkeypatch.setenv("HARNESS_LOG_TAG", tag)
    log("step 4: val loss toy 5.000")
    assert capsys.readouterr().err == prefix + "step 4: val loss toy 5.000\n"
