"""Fault injection: SIGKILL a demo-sized run at random points, relaunch, compare records.

    python tests/fault_injection.py [--workdir DIR] [--kills 5] [--seed 0] [--steps 300]

An uninterrupted reference run goes first (it also builds the shared caches, so every kill
lands in training). Then the same run is launched into a second out_root and killed with
SIGKILL (no handler, no final checkpoint: the harshest preemption) once `train_log.jsonl`
reaches each of `--kills` random steps (seeded), plus a random sub-second delay so kills
land anywhere in a step: mid-forward, mid-checkpoint, mid-record write. A last launch runs
to completion; its record must equal the reference within 1e-6. Exit status 0 on success.
Also imported by tests/test_reliability_faults.py.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TOL = 1e-6


def demo_overrides(cache: Path, out: Path, steps: int = 300) -> list[str]:
    """A cpu-100k run of `steps` steps at batch 8 x seq 64, checkpointing every 10 steps."""
    return [
        f"cache_dir={cache}",
        f"out_root={out}",
        "model=cpu-100k",
        "eval=none",
        "sources.toyworld.n_entities=120",
        "sources.toyworld.docs.train=400",
        "sources.toyworld.docs.val=40",
        "sources.toyworld.docs.shifted=40",
        "tokenizer.vocab_size=512",
        "tokenizer.train_docs=300",
        f"train.tokens={steps * 8 * 64}",
        "train.tokens_per_param=null",
        "train.batch_size=8",
        "train.seq_len=64",
        "train.log_every=5",
        "train.checkpoint_every=10",
        "train.keep_checkpoints=2",
        # one thread: CPU results are bitwise reproducible only at a fixed thread count
        "train.num_threads=1",
        "validation.max_tokens=2048",
        "eval.num_checkpoints=3",
    ]


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(
        os.environ,
        HARNESS_NO_PROGRESS="1",
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        WANDB_MODE="offline",
        PYTHONPATH=str(ROOT),
    )
    env.update(extra or {})
    return env


def harness_cmd(overrides: list[str]) -> list[str]:
    return [sys.executable, "-m", "harness.cli", "run", *overrides]


def with_default_sigint(cmd: list[str]) -> list[str]:
    """`cmd` started with SIGINT at its default action. A process started in the background by
    a non-interactive shell inherits SIGINT ignored, and Python then never raises
    KeyboardInterrupt; a test that sends Ctrl-C must not depend on how pytest was launched."""
    reset = "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
    return [sys.executable, "-c", reset + "os.execv(sys.argv[1], sys.argv[1:])", *cmd]


def only_run_dir(out: Path) -> Path:
    runs = [p for p in (out / "runs").iterdir() if p.is_dir()]
    assert len(runs) == 1, runs
    return runs[0]


def _log_max_step(log: Path, since_ns: int) -> int:
    """Highest step in the log, counting only a file this launch has touched (a relaunch first
    sees the previous launch's lines until it truncates the log to its resume step)."""
    try:
        if log.stat().st_mtime_ns < since_ns:
            return -1
        lines = log.read_text().splitlines()
    except FileNotFoundError:
        return -1
    for ln in reversed(lines):
        try:
            return int(json.loads(ln)["step"])
        except (ValueError, KeyError):
            continue  # a line caught mid-write
    return -1


def run_to_step_then_kill(
    overrides: list[str], run_log: Path, step: int, delay: float, timeout: float = 120.0
) -> str:
    """Launch the run; SIGKILL it `delay` s after its log reaches `step`. Returns what happened."""
    since = time.time_ns()
    proc = subprocess.Popen(
        harness_cmd(overrides),
        cwd=ROOT,
        env=child_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.time() + timeout
    try:
        while proc.poll() is None and time.time() < deadline:
            if _log_max_step(run_log, since) >= step:
                time.sleep(delay)
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                return f"killed at step >= {step} (+{delay:.3f}s)"
            time.sleep(0.01)
        if proc.poll() is None:
            proc.kill()
            raise RuntimeError(f"run did not reach step {step} within {timeout}s")
    finally:
        err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
        if proc.stderr:
            proc.stderr.close()
    if proc.returncode != 0:
        raise RuntimeError(f"run exited {proc.returncode} before the kill:\n{err[-2000:]}")
    return f"finished before step {step} was seen"


def run_to_end(overrides: list[str], timeout: float = 300.0) -> None:
    res = subprocess.run(
        harness_cmd(overrides),
        cwd=ROOT,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if res.returncode != 0:
        raise RuntimeError(f"harness run exited {res.returncode}:\n{res.stderr[-3000:]}")


def train_losses(run: Path) -> list[tuple[int, float]]:
    return [
        (r["step"], r["loss"])
        for r in map(json.loads, (run / "train_log.jsonl").read_text().splitlines())
    ]


def record_differences(ref: Path, got: Path, tol: float = TOL) -> list[str]:
    """What differs between two runs' results (fields that differ by nature are ignored:
    wall times, throughput, host, resumed_from_step)."""
    a = json.loads((ref / "record.json").read_text())
    b = json.loads((got / "record.json").read_text())
    diffs: list[str] = []
    for key in ("status", "run_id", "config", "model", "data", "seed", "failure"):
        if a.get(key) != b.get(key):
            diffs.append(f"{key}: {a.get(key)!r} != {b.get(key)!r}")
    if [c["step"] for c in a["checkpoints"]] != [c["step"] for c in b["checkpoints"]]:
        diffs.append(
            f"checkpoint steps {[c['step'] for c in a['checkpoints']]} != "
            f"{[c['step'] for c in b['checkpoints']]}"
        )
    for ca, cb in zip(a["checkpoints"], b["checkpoints"], strict=False):  # lengths checked above
        for k in ("tokens", "flops"):
            if ca[k] != cb[k]:
                diffs.append(f"step {ca['step']} {k}: {ca[k]} != {cb[k]}")
        for name in set(ca["val_loss"]) | set(cb["val_loss"]):
            va, vb = ca["val_loss"].get(name), cb["val_loss"].get(name)
            if va is None or vb is None or abs(va - vb) > tol:
                diffs.append(f"step {ca['step']} val_loss {name}: {va} != {vb}")
        for task in set(ca.get("tasks", {})) | set(cb.get("tasks", {})):
            ma, mb = ca["tasks"].get(task, {}), cb["tasks"].get(task, {})
            for m in set(ma) | set(mb):
                if m not in ma or m not in mb or abs(ma[m] - mb[m]) > tol:
                    diffs.append(f"step {ca['step']} {task}/{m}: {ma.get(m)} != {mb.get(m)}")
    for k in ("tokens", "steps", "flops"):
        if a["compute"].get(k) != b["compute"].get(k):
            diffs.append(f"compute.{k}: {a['compute'].get(k)} != {b['compute'].get(k)}")
    la, lb = train_losses(ref), train_losses(got)
    if [s for s, _ in la] != [s for s, _ in lb]:
        diffs.append(f"train_log steps differ: {len(la)} vs {len(lb)} rows")
    else:
        for (s, x), (_, y) in zip(la, lb, strict=True):
            if abs(x - y) > tol:
                diffs.append(f"train_log step {s}: loss {x} != {y}")
    return diffs


@dataclass
class Outcome:
    events: list[str] = field(default_factory=list)
    differences: list[str] = field(default_factory=list)
    seconds: float = 0.0


def inject(
    workdir: Path, kills: int = 5, seed: int = 0, steps: int = 300, cache: Path | None = None
) -> Outcome:
    """Reference run, then `kills` SIGKILLs at seeded random steps, then a final relaunch."""
    t0 = time.time()
    cache = cache or workdir / "cache"
    ref_out, out = workdir / "reference", workdir / "killed"
    run_to_end(demo_overrides(cache, ref_out, steps))
    ref_run = only_run_dir(ref_out)
    log = out / "runs" / ref_run.name / "train_log.jsonl"
    rng = random.Random(seed)
    targets = sorted(rng.sample(range(3, steps - 5), kills))
    result = Outcome()
    for step in targets:
        result.events.append(
            run_to_step_then_kill(
                demo_overrides(cache, out, steps), log, step, delay=rng.uniform(0.0, 0.05)
            )
        )
    run_to_end(demo_overrides(cache, out, steps))
    got = json.loads((out / "runs" / ref_run.name / "record.json").read_text())
    result.events.append(f"final launch resumed from step {got['compute']['resumed_from_step']}")
    result.differences = record_differences(ref_run, out / "runs" / ref_run.name)
    result.seconds = time.time() - t0
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--kills", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=300)
    args = ap.parse_args()
    if args.workdir is None:
        import tempfile

        args.workdir = Path(tempfile.mkdtemp(prefix="fault_injection."))
    res = inject(args.workdir, args.kills, args.seed, args.steps)
    for e in res.events:
        print(e)
    if res.differences:
        print(
            "FAIL: the relaunched run differs from the uninterrupted one:\n  "
            + "\n  ".join(res.differences)
        )
        return 1
    print(
        f"OK: {args.kills} kills, final record equals the uninterrupted one "
        f"({res.seconds:.0f} s, {args.workdir})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
