"""The prepared GPU check: everything the CUDA path promises, on one card, most valuable
numbers first, in at most BUDGET_S seconds, as one JSON and one printed table.

    python3 bench/gpu_check.py [--out outputs/gpu_check/gpu_check.json] [--budget-s 360]
    python3 bench/gpu_check.py --dry-run        # CPU: every phase at tiny sizes (CI)

Phases, in this order, each a subprocess in its own process group, killed as a group at its
cap (CAPS, and never past the budget):
 1. versions: torch, transformers, datasets, pyarrow, ..., the card; every module the later
    phases import (bench/gpu_versions.py). A failing import stops the check here, in seconds;
    without CUDA (and no --dry-run) it stops with one line, exit 2, writing nothing.
 2. bench_d512: d512/L8 (seq 1024, vocab 50304, batch 64): the harness `train()` beside
    transformers compiled and the minimal compiled reference (bench/train_throughput.py).
 3. bench_d256: d256/L6 (batch 32): the harness and its chunked-loss variant beside the
    minimal compiled reference.
 4. bench_large: d768/L12 and d1024/L24: the harness at both sizes first, then the references
    where time allows.
 5. tests: `pytest -m gpu tests/test_gpu.py` (2-GPU tests skip on one card).
 6. harness_run: `harness run train=gpu model=gpu-d256-l6` on the toy sources, through
    validation losses and lm-eval scoring of the toy tasks.

Nothing measured is lost: the bench saves each row as it is measured and this script merges
the rows into the JSON every POLL_S seconds (an atomic rewrite), so a check stopped by its
budget, a signal (SIGTERM/SIGINT/SIGHUP: the running phase's group is killed, the JSON
finished and the table printed) or even SIGKILL keeps every row measured so far. Outputs of
an earlier check in the same folder (the harness run's folder, tests.xml, throughput_*.json,
logs) are removed first, so a rerun never reports old numbers as new. Every phase's output
goes to <out folder>/<phase>.log and, unbuffered, to this script's output.

--dry-run: on CPU, every phase's code path at tiny sizes with the CUDA-only switches on
(bf16 autocast, torch.compile via aot_eager, fused AdamW: train/cuda_paths.py); the gpu tests
themselves skip there (they need CUDA), the rest runs for real; figures are meaningless.
Targets (issue 15), from the bench's ratios: harness >= 1.15x transformers compiled and
>= 1.0x the minimal reference at the three larger sizes, >= 1.5x the minimal reference at
d256/L6.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.throughput_ratios import size_ratios, small_ratios  # noqa: E402
from common.atomic import write_text  # noqa: E402

BUDGET_S = 360
# Seconds each phase may use at most (less when the budget has less left). Estimates for one
# H200 with cold caches from the anchor's measured compile times (transformers' model: 25 s
# at d512/L8, 50 s at d768/L12, 84 s at d1024/L24): not yet measured on a lent card.
CAPS = {
    "versions": 45,
    "bench_d512": 100,
    "bench_d256": 60,
    "bench_large": 75,
    "tests": 45,
    "harness_run": 45,
}
PHASES = tuple(CAPS)
DRY_RUN_CAP_S = 300  # per phase on CPU: generous, the dry run checks code paths, not speed
POLL_S = 2.0
# (d, L, reference kind, minimum ratio harness / reference)
TARGETS = [
    (d, L, ref, need)
    for d, L in ((512, 8), (768, 12), (1024, 24))
    for ref, need in (("hf_compile", 1.15), ("mini_compile", 1.0))
] + [(256, 6, "mini_compile", 1.5)]
HARNESS_RUN = [
    "train=gpu",
    "model=gpu-d256-l6",
    "data=toy_code",
    "eval=toy",
    "train.tokens=4000000",
    "train.tokens_per_param=null",
    "eval.num_checkpoints=2",
    "eval.n_per_task=100",
]
# the same phase on CPU at seconds' size: train=gpu's switches, a tiny model and world
HARNESS_RUN_DRY = [
    "train=gpu",
    "train.device=cpu",
    "model=cpu-50k",
    "data=toy",
    "eval=toy",
    "sources.toyworld.n_entities=120",
    "sources.toyworld.docs.train=400",
    "sources.toyworld.docs.val=40",
    "sources.toyworld.docs.shifted=40",
    "tokenizer.vocab_size=512",
    "tokenizer.train_docs=300",
    "train.tokens=8192",
    "train.tokens_per_param=null",
    "train.batch_size=8",
    "train.seq_len=64",
    "train.log_every=2",
    "validation.max_tokens=2048",
    "eval.num_checkpoints=1",
    "eval.n_per_task=16",
    "eval.tasks=[toy_recall]",
]
STALE = ("tests.xml", "throughput_*.json", "*.log")


class Stopped(Exception):
    """A stop signal arrived while the check ran."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def _raise_stopped(signum: int, _frame: Any) -> None:
    raise Stopped(signum)


def _die_with_parent() -> None:
    """In the phase's process: killed when the check dies, even by SIGKILL (Linux)."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def kill_group(pgid: int, grace_s: float = 3.0) -> None:
    """SIGTERM the phase's process group, then SIGKILL whatever is left of it."""
    for sig, wait in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 0.0)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        end = time.time() + wait
        while time.time() < end:
            try:
                os.killpg(pgid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.1)


class LogTail:
    """Echoes the new lines of a phase's log to this script's output, prefixed."""

    def __init__(self, path: Path, name: str):
        self.path, self.name, self.pos = path, name, 0

    def echo(self) -> None:
        try:
            with open(self.path, "rb") as fh:
                fh.seek(self.pos)
                data = fh.read()
        except FileNotFoundError:
            return
        end = data.rfind(b"\n") + 1  # whole lines only; the rest on the next call
        for line in data[:end].decode(errors="replace").splitlines():
            print(f"[{self.name}] {line}", flush=True)
        self.pos += end


class Check:
    """One check: its phases, its JSON (rewritten whenever something new is measured)."""

    def __init__(self, out: Path, budget_s: float, dry_run: bool):
        self.out: Path | None = None  # set once the check may write (CUDA is there)
        self.work = out.parent
        self.budget_s, self.dry_run = budget_s, dry_run
        self.t0 = time.time()
        self.phases: list[dict[str, Any]] = []
        self.versions: dict[str, Any] = {}
        self.status = "running"
        self.env = {
            **os.environ,
            "HF_HUB_OFFLINE": "1",
            "HF_DATASETS_OFFLINE": "1",
            "WANDB_MODE": "offline",
            "HARNESS_NO_PROGRESS": "1",
            "PYTHONUNBUFFERED": "1",
            "PYTHONPATH": os.pathsep.join(
                [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
            ),
        }
        if dry_run:
            self.env["HARNESS_CUDA_PATHS_ON_CPU"] = "1"
        self.written = ""

    def left(self) -> float:
        return self.budget_s - (time.time() - self.t0)

    def run_phase(self, name: str, cmd: list[str]) -> dict[str, Any]:
        """Run one phase in its own process group until it ends or its cap; its output to
        <work>/<name>.log and, line by line, to this script's output."""
        cap = max(CAPS[name], DRY_RUN_CAP_S) if self.dry_run else CAPS[name]
        timeout = min(cap, self.left())
        entry: dict[str, Any] = {"phase": name, "status": "running", "cap_s": round(timeout, 1)}
        self.phases.append(entry)
        if timeout < 10:
            entry.update(status="skipped: budget spent", seconds=0.0)
            self.save()
            return entry
        log = self.work / f"{name}.log"
        entry["log"] = str(log)
        print(f"[{name}] start (cap {timeout:.0f} s): {' '.join(cmd[1:])}", flush=True)
        t0 = time.time()
        with open(log, "wb") as fh:
            proc = subprocess.Popen(
                cmd,
                cwd=ROOT,
                env=self.env,
                stdout=fh,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own group: killed whole (pytest's, FSDP's children)
                preexec_fn=_die_with_parent,
            )
        entry["pid"] = proc.pid
        self.save()
        tail = LogTail(log, name)
        try:
            while True:
                try:
                    rc = proc.wait(timeout=POLL_S)
                    entry["status"] = "ok" if rc == 0 else f"failed (exit {rc})"
                    break
                except subprocess.TimeoutExpired:
                    pass
                tail.echo()
                self.save()
                if time.time() - t0 >= timeout:
                    entry["status"] = f"timed out after {timeout:.0f} s"
                    break
        except Stopped as stop:
            entry["status"] = f"stopped by signal {stop.signum}"
            raise
        finally:
            kill_group(proc.pid)  # at its cap, on a signal, and any child left behind
            proc.wait()
            entry["seconds"] = round(time.time() - t0, 1)
            tail.echo()
            self.save()
        print(f"[{name}] {entry['status']} ({entry['seconds']} s)", flush=True)
        return entry

    def collect(self) -> dict[str, Any]:
        bench = merge_bench(self.work)
        return {
            "status": self.status,
            "dry_run": self.dry_run,
            "card": self.versions.get("card") or ("cpu (dry run)" if self.dry_run else None),
            "torch": self.versions.get("torch"),
            "versions": self.versions,
            "budget_s": self.budget_s,
            "seconds": round(time.time() - self.t0, 1),
            "phases": self.phases,
            "bench": bench,
            "targets": verdicts(bench),
            "tests": test_results(self.work),
            "run": run_record(self.work / "run"),
        }

    def save(self) -> dict[str, Any]:
        """Rewrite the JSON (temp + rename) when anything in it changed."""
        results = self.collect()
        text = json.dumps({**results, "seconds": None}, default=str)
        if self.out is not None and text != self.written:
            write_text(self.out, json.dumps(results, indent=1, default=str))
            self.written = text
        return results


def merge_bench(work: Path) -> dict[str, Any]:
    """The bench phases' rows (throughput_<phase>.json, saved row by row), in phase order,
    with their ratios recomputed from the merged rows."""
    sizes: list[dict] = []
    small: list[dict] = []
    info = None
    for name in PHASES:
        path = work / f"throughput_{name}.json"
        if not path.exists():
            continue
        try:
            got = json.loads(path.read_text())
        except json.JSONDecodeError:  # cannot happen with write_text's rename; never fatal
            continue
        info = info or got.get("info")
        sizes += got.get("sizes", {}).get("rows", [])
        small += got.get("small", {}).get("rows", [])
    if info is None:
        return {}
    return {
        "info": info,
        "sizes": {"rows": sizes, "ratios": size_ratios(sizes)},
        "small": {"rows": small, "ratios": small_ratios(small)},
    }


def junit_counts(path: Path) -> dict[str, Any]:
    """Passed / failed / skipped test names from pytest's junit XML."""
    if not path.exists():
        return {}
    out: dict[str, list[str]] = {"passed": [], "failed": [], "skipped": []}
    for case in ET.parse(path).getroot().iter("testcase"):
        name = case.get("name", "?")
        if case.find("failure") is not None or case.find("error") is not None:
            out["failed"].append(name)
        elif case.find("skipped") is not None:
            out["skipped"].append(f"{name}: {case.find('skipped').get('message', '')}")
        else:
            out["passed"].append(name)
    return out


_VERBOSE = re.compile(r"^\S+::(\S+) (PASSED|FAILED|ERROR|SKIPPED|XFAIL|XPASS)(.*)$")


def log_counts(path: Path) -> dict[str, Any]:
    """The same from pytest -v's lines, for a run cut before it wrote its XML (at the end)."""
    if not path.exists():
        return {}
    out: dict[str, list[str]] = {"passed": [], "failed": [], "skipped": []}
    for line in path.read_text(errors="replace").splitlines():
        m = _VERBOSE.match(line.strip())
        if not m:
            continue
        name, what, rest = m.groups()
        if what in ("PASSED", "XPASS", "XFAIL"):
            out["passed"].append(name)
        elif what == "SKIPPED":
            out["skipped"].append(f"{name}: {rest.strip()}")
        else:
            out["failed"].append(name)
    return out if any(out.values()) else {}


def test_results(work: Path) -> dict[str, Any]:
    xml = junit_counts(work / "tests.xml")
    if xml:
        return {**xml, "from": "junit"}
    partial = log_counts(work / "tests.log")
    return {**partial, "from": "log (cut before the end)"} if partial else {}


def run_record(out_root: Path) -> dict[str, Any]:
    """The harness run's record, reduced to what the check reports."""
    if not out_root.is_dir():
        return {}
    from harness.store import iter_run_dirs, read_record  # records are read as RunRecord

    recs = [rec for path in iter_run_dirs(out_root) if (rec := read_record(path)) is not None]
    if not recs:
        return {}
    rec, last = recs[-1], recs[-1].final
    return {
        "status": rec.status,
        "failure": rec.failure,
        "compute": vars(rec.compute) if rec.compute else None,
        "final_val_loss": last.val_loss if last else None,
        "final_acc": {t: m.get("acc") for t, m in (last.tasks if last else {}).items()},
    }


def verdicts(bench: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target against the bench's measured ratio: met, missed (by how much), or missing."""
    ratios = {(r["d"], r["L"]): r for r in bench.get("sizes", {}).get("ratios", [])}
    small = {(r["d"], r["L"]): r for r in bench.get("small", {}).get("ratios", [])}
    out = []
    for d, L, ref, need in TARGETS:
        got = ratios.get((d, L), {}).get(f"harness/{ref}")
        if got is None:
            got = small.get((d, L), {}).get(f"best/{ref}")
        verdict = (
            "missing" if got is None else ("met" if got >= need else f"missed by {need - got:.3f}")
        )
        out.append({"d": d, "L": L, "vs": ref, "target": need, "ratio": got, "verdict": verdict})
    return out


def table(results: dict[str, Any]) -> str:
    lines = [
        f"# gpu-check on {results['card']} (torch {results['torch']}), {results['seconds']:.0f} s"
        + (f": {results['status']}" if results.get("status") not in (None, "complete") else ""),
        "",
        "| phase | status | seconds |",
        "|---|---|---|",
    ]
    lines += [
        f"| {p['phase']} | {p['status']} | {p.get('seconds', '')} |" for p in results["phases"]
    ]
    tests = results.get("tests") or {}
    if tests:
        lines += [
            "",
            f"tests: {len(tests['passed'])} passed, {len(tests['failed'])} failed, "
            f"{len(tests['skipped'])} skipped"
            + (f" (failed: {', '.join(tests['failed'])})" if tests["failed"] else ""),
        ]
    run = results.get("run") or {}
    if run:
        c = run.get("compute") or {}
        peak_gib = (c.get("peak_memory_bytes") or 0) / 2**30
        lines += [
            "",
            f"harness run: {run.get('status')}, "
            f"{c.get('tokens_per_second') or 0:,.0f} tok/s steady "
            f"(warm-up {c.get('warmup_seconds')} s), peak {peak_gib:.2f} GiB, "
            f"val loss {run.get('final_val_loss')}, acc {run.get('final_acc')}",
        ]
    bench = results.get("bench") or {}
    nominal = (bench.get("info") or {}).get("nominal_tflops")
    for section in ("sizes", "small"):
        rows = bench.get(section, {}).get("rows", [])
        if not rows:
            continue
        lines += [
            "",
            f"| {section} | d | L | tok/s | MFU (nominal {nominal or 'unknown'}) | warm-up s "
            "| peak GiB |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in rows:
            if "error" in r:
                lines.append(
                    f"| {r['kind']} | {r['d']} | {r['L']} | error: {r['error'][:60]} | | | |"
                )
                continue
            mfu = "n/a" if r.get("mfu_vs_nominal") is None else f"{r['mfu_vs_nominal']:.3f}"
            warm = "" if r.get("warmup_s") is None else f"{r['warmup_s']:.1f}"
            lines.append(
                f"| {r['kind']} | {r['d']} | {r['L']} | {r['tokens_per_s']:,.0f} | {mfu} | "
                f"{warm} | {r['peak_mem_gib']:.2f} |"
            )
    if results.get("targets"):
        lines += [
            "",
            "| d | L | harness / | target | measured | verdict |",
            "|---|---|---|---|---|---|",
        ]
        for v in results["targets"]:
            got = "n/a" if v["ratio"] is None else f"{v['ratio']:.3f}"
            lines.append(
                f"| {v['d']} | {v['L']} | {v['vs']} | {v['target']} | {got} | {v['verdict']} |"
            )
    return "\n".join(lines)


def phase_commands(work: Path, dry_run: bool) -> dict[str, list[str]]:
    py = sys.executable
    bench = [py, "bench/train_throughput.py", *(["--dry-run"] if dry_run else [])]
    # the dry run's one tiny size stands for each phase's sizes (the same code path), one
    # harness variant on the small model (the plain one runs in bench_d512)
    d512, d256, large = ("32x2", "64x2", "128x4") if dry_run else ("512x8", "256x6", "")
    large = large or "768x12,1024x24"
    variants = "harness+chunked_ce" if dry_run else "harness,harness+chunked_ce"
    return {
        "versions": [py, "bench/gpu_versions.py", "--out", str(work / "versions.json")],
        "bench_d512": [
            *bench,
            *("--sections", "sizes", "--sizes", d512, "--refs", "hf_compile,mini_compile"),
            *("--out", str(work / "throughput_bench_d512.json")),
        ],
        "bench_d256": [
            *bench,
            *("--sections", "small", "--sizes", d256, "--small-refs", "mini_compile"),
            *("--small-variants", variants),
            *("--out", str(work / "throughput_bench_d256.json")),
        ],
        "bench_large": [
            *bench,
            *("--sections", "sizes", "--sizes", large, "--harness-first"),
            *("--refs", "mini_compile" if dry_run else "hf_compile,mini_compile"),
            *("--out", str(work / "throughput_bench_large.json")),
        ],
        "tests": [
            *(py, "-m", "pytest", "-v", "-rs", "-p", "no:cacheprovider", "-m", "gpu"),
            *("tests/test_gpu.py", f"--junitxml={work / 'tests.xml'}"),
        ],
        "harness_run": [
            *(py, "-m", "harness.cli", "run"),
            *(HARNESS_RUN_DRY if dry_run else HARNESS_RUN),
            f"out_root={work / 'run'}",
            f"cache_dir={work / 'cache'}",
        ],
    }


def remove_stale(work: Path, out: Path) -> None:
    """An earlier check's outputs in this folder: a rerun must not report them as its own
    (the harness would skip its run as complete; old rows would merge in). The token cache
    (cache/) is kept: it is keyed by content."""
    shutil.rmtree(work / "run", ignore_errors=True)
    for pattern in STALE:
        for path in work.glob(pattern):
            if path.name != "versions.log":  # this check's own, written already
                path.unlink()
    out.unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=ROOT / "outputs" / "gpu_check" / "gpu_check.json")
    ap.add_argument("--budget-s", type=float, default=None, help=f"default {BUDGET_S}")
    ap.add_argument("--dry-run", action="store_true", help="CPU, tiny sizes, every phase")
    ap.add_argument("--phases", default=",".join(PHASES), help="a subset, run in the fixed order")
    args = ap.parse_args(argv)
    wanted = [p for p in args.phases.split(",") if p]
    for p in wanted:
        if p not in PHASES:
            print(f"error: --phases: unknown '{p}' (known: {', '.join(PHASES)})", file=sys.stderr)
            return 2
    budget = args.budget_s or (len(PHASES) * DRY_RUN_CAP_S if args.dry_run else BUDGET_S)
    out = args.out.resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    check = Check(out, budget, args.dry_run)
    cmds = phase_commands(out.parent, args.dry_run)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, _raise_stopped)
    (out.parent / "versions.json").unlink(missing_ok=True)
    try:
        # the versions phase runs before anything is removed or written: without CUDA an
        # earlier check's results stay as they were
        first = check.run_phase("versions", cmds["versions"])
        vpath = out.parent / "versions.json"
        check.versions = json.loads(vpath.read_text()) if vpath.exists() else {}
        if first["status"] != "ok":
            print(
                f"error: gpu-check: the versions/imports phase {first['status']}: "
                f"see {first.get('log')}",
                file=sys.stderr,
            )
            return 3
        if not check.versions.get("cuda") and not args.dry_run:
            print(
                f"error: gpu-check: no CUDA device (torch {check.versions.get('torch')} sees none)",
                file=sys.stderr,
            )
            return 2
        remove_stale(out.parent, out)
        check.out = out
        check.save()
        for name in PHASES[1:]:
            if name in wanted:
                check.run_phase(name, cmds[name])
        check.status = "complete"
    except Stopped as stop:
        check.status = f"stopped by signal {stop.signum}"
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)  # finish the JSON and the table first
        results = check.save()
        print(table(results), flush=True)
        if check.out is not None:
            print(f"\nwritten: {out} ({check.status})", flush=True)
        return 128 + stop.signum
    results = check.save()
    print(table(results))
    print(f"\nwritten: {out}")
    return 0 if all(p["status"] == "ok" for p in check.phases) else 1


if __name__ == "__main__":
    sys.exit(main())
