"""The prepared GPU check (bench/gpu_check.py): without CUDA it stops after its versions phase
with one line; its verdicts read the bench's ratios against the issue's targets; the dry run
takes every phase's code path on CPU; a check killed mid-way keeps what it measured; and the
lent machine's offline install (`make gpu-check-device`) works in a stand-in for its Python."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from gpu_check import TARGETS, junit_counts, log_counts, table, verdicts  # noqa: E402
from gpu_check import main as gpu_check_main  # noqa: E402

NO_CUDA = pytest.mark.skipif(
    torch.cuda.is_available(), reason="checks the CPU paths; this machine has CUDA"
)
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HARNESS_NO_PROGRESS": "1"}


def check_cmd(out: Path, *args: str, python: str = sys.executable) -> list[str]:
    return [python, str(ROOT / "bench" / "gpu_check.py"), "--out", str(out), *args]


@NO_CUDA
def test_without_cuda_versions_first_then_one_line_and_exit_2(tmp_path):
    (tmp_path / "g.json").write_text('{"status": "complete"}')  # an earlier check's result
    res = subprocess.run(
        check_cmd(tmp_path / "g.json"),
        cwd=ROOT,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 2
    assert res.stderr.strip().startswith("error: gpu-check: no CUDA device (torch ")
    assert len(res.stderr.strip().splitlines()) == 1
    # the versions and the imports of every phase came first; the old result is untouched
    assert "[versions] pyarrow: " in res.stdout and "[versions] imports: ok" in res.stdout
    assert (tmp_path / "g.json").read_text() == '{"status": "complete"}'


def test_unknown_phase_is_named(tmp_path, capsys):
    # in-process: the arguments are checked before any phase, signal handler or file
    code = gpu_check_main(["--out", str(tmp_path / "g.json"), "--phases", "bench_d512,bench_huge"])
    assert code == 2
    assert capsys.readouterr().err.startswith(
        "error: --phases: unknown 'bench_huge' (known: versions, "
    )
    assert not list(tmp_path.iterdir())


def bench_with(ratio_large: float, ratio_small: float) -> dict:
    sizes = [
        {"d": d, "L": L, "harness/hf_compile": ratio_large, "harness/mini_compile": ratio_large}
        for d, L in ((512, 8), (768, 12))
    ]  # d1024/L24 absent: a row that failed
    small = [{"d": 256, "L": 6, "best_variant": "harness", "best/mini_compile": ratio_small}]
    return {"sizes": {"ratios": sizes, "rows": []}, "small": {"ratios": small, "rows": []}}


def test_verdicts_against_the_targets():
    got = {(v["d"], v["L"], v["vs"]): v["verdict"] for v in verdicts(bench_with(1.1, 1.6))}
    assert len(got) == len(TARGETS) == 7
    assert got[(512, 8, "hf_compile")] == "missed by 0.050"  # needs 1.15
    assert got[(512, 8, "mini_compile")] == "met"  # needs 1.0
    assert got[(1024, 24, "hf_compile")] == "missing"
    assert got[(256, 6, "mini_compile")] == "met"  # needs 1.5
    assert {v["verdict"] for v in verdicts(bench_with(1.2, 1.4)) if v["d"] == 256} == {
        "missed by 0.100"
    }


def test_junit_counts_and_table(tmp_path):
    xml = tmp_path / "t.xml"
    xml.write_text(
        '<testsuites><testsuite><testcase name="a"/><testcase name="b"><failure/></testcase>'
        '<testcase name="c"><skipped message="needs 2 GPUs (found 1)"/></testcase>'
        "</testsuite></testsuites>"
    )
    counts = junit_counts(xml)
    assert counts == {"passed": ["a"], "failed": ["b"], "skipped": ["c: needs 2 GPUs (found 1)"]}
    out = table(
        {
            "card": "X",
            "torch": "t",
            "seconds": 1.0,
            "phases": [{"phase": "tests", "status": "ok", "seconds": 1.0}],
            "tests": counts,
            "run": {},
            "bench": {},
            "targets": verdicts(bench_with(1.2, 1.6)),
        }
    )
    assert "tests: 1 passed, 1 failed, 1 skipped (failed: b)" in out
    assert "| 256 | 6 | mini_compile | 1.5 | 1.600 | met |" in out


def test_partial_test_results_from_the_verbose_log(tmp_path):
    log = tmp_path / "tests.log"
    log.write_text(
        "tests/test_gpu.py::test_a PASSED                        [ 14%]\n"
        "tests/test_gpu.py::test_b FAILED                        [ 28%]\n"
        "tests/test_gpu.py::test_c[fsdp] SKIPPED (needs 2 GPUs)  [ 42%]\n"
        "tests/test_gpu.py::test_d "  # cut here: the check's cap
    )
    assert log_counts(log) == {
        "passed": ["test_a"],
        "failed": ["test_b"],
        "skipped": ["test_c[fsdp]: (needs 2 GPUs)  [ 42%]"],
    }


def stale_outputs(work: Path) -> None:
    """What an earlier check leaves in its folder: none of it may be reported as new."""
    (work / "run" / "runs" / "old").mkdir(parents=True)
    (work / "tests.xml").write_text(
        '<testsuites><testsuite><testcase name="test_old"/></testsuite></testsuites>'
    )
    row = {"kind": "harness", "d": 999, "L": 1, "tokens_per_s": 1.0}
    (work / "throughput_bench_large.json").write_text(
        json.dumps({"info": {}, "sizes": {"rows": [row], "ratios": []}})
    )


@NO_CUDA
@pytest.mark.slow  # every phase as a subprocess: ~4 minutes on a loaded 2-core box
def test_dry_run_takes_every_phase_on_cpu(tmp_path):
    out = tmp_path / "gpu_check" / "gpu_check.json"
    out.parent.mkdir()
    stale_outputs(out.parent)
    res = subprocess.run(
        check_cmd(out, "--dry-run"), cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=1500
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    got = json.loads(out.read_text())
    assert got["status"] == "complete" and got["dry_run"] is True
    assert [(p["phase"], p["status"]) for p in got["phases"]] == [
        (name, "ok")
        for name in ("versions", "bench_d512", "bench_d256", "bench_large", "tests", "harness_run")
    ]
    assert got["versions"]["import_errors"] == {} and got["versions"]["datasets_smoke"] == "ok"
    # the anchor's rows come too where ../shared/anchors sits beside the checkout
    sizes, small = (
        [r for r in got["bench"][part]["rows"] if not r["kind"].startswith("anchor:")]
        for part in ("sizes", "small")
    )
    assert not [r for r in sizes + small if "error" in r]
    assert [(r["kind"], r["d"]) for r in sizes] == [
        ("harness", 32),
        ("hf_compile", 32),
        ("mini_compile", 32),
        ("harness", 128),  # bench_large: the harness first
        ("mini_compile", 128),
    ]
    assert [r["kind"] for r in small] == ["harness+chunked_ce", "mini_compile"]
    # the bench's harness rows ran with the CUDA-only switches (bf16, compile, fused AdamW)
    assert got["bench"]["info"]["dry_run"] is True
    assert {
        r["d"]: set(r) >= {"harness/hf_compile", "harness/mini_compile"}
        for r in got["bench"]["sizes"]["ratios"]
    }[32]
    # the gpu tests ran their pytest and skipped without CUDA; nothing of the stale check
    tests = got["tests"]
    assert tests["from"] == "junit" and not tests["passed"] and not tests["failed"]
    assert tests["skipped"] and all("needs CUDA" in s or "2 GPUs" in s for s in tests["skipped"])
    run = got["run"]
    assert run["status"] == "complete" and run["compute"]["warmup_steps"] == 3
    assert run["compute"]["tokens_per_second"] > 0 and run["final_acc"]["toy_recall"] >= 0
    assert not (out.parent / "run" / "runs" / "old").exists()
    assert "| harness_run | ok |" in res.stdout


def wait_for(predicate, timeout: float, what: str):
    end = time.time() + timeout
    while time.time() < end:
        got = predicate()
        if got:
            return got
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def rows_in(out: Path) -> list[dict]:
    try:
        got = json.loads(out.read_text())
    except (FileNotFoundError, json.JSONDecodeError):  # a torn JSON would fail below
        return []
    return got.get("bench", {}).get("sizes", {}).get("rows", [])


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


@NO_CUDA
@pytest.mark.slow  # ~1 minute: the versions phase and the first bench row
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_a_check_killed_mid_way_keeps_the_rows_measured(tmp_path, sig):
    """A real signal to the real process while the d512 phase runs (the first of its three
    rows measured): the JSON holds that row. SIGTERM: the phase's process group is killed
    and the JSON finished; SIGKILL (no handler runs): the phase dies with its parent and the
    JSON, as last merged, is whole and never says complete."""
    out = tmp_path / "g.json"
    proc = subprocess.Popen(
        check_cmd(out, "--dry-run", "--phases", "bench_d512"),
        cwd=ROOT,
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        first = wait_for(lambda: rows_in(out), 900, "the first row in the JSON")
        running = json.loads(out.read_text())["phases"][-1]
        assert running["phase"] == "bench_d512" and running["status"] == "running"
        os.kill(proc.pid, sig)
        stdout, _ = proc.communicate(timeout=120)
    finally:
        proc.kill()
    got = json.loads(out.read_text())
    rows = got["bench"]["sizes"]["rows"]
    assert 1 <= len(rows) < 3 and rows[0] == first[0]  # mid-way: the rest was not measured
    wait_for(lambda: not group_alive(running["pid"]), 30, "the phase's group to be gone")
    if sig == signal.SIGTERM:
        assert proc.returncode == 128 + signal.SIGTERM
        assert got["status"] == "stopped by signal 15"
        assert got["phases"][-1]["status"] == "stopped by signal 15"
        assert "| bench_d512 | stopped by signal 15 |" in stdout
    else:
        assert proc.returncode == -signal.SIGKILL and got["status"] == "running"


def wheel_folder(tmp_path: Path) -> Path:
    """The carried wheels: the checkout's .gpu-wheels when `make gpu-wheels` made it, else
    made now (that needs the package index; without it the test cannot run)."""
    if (ROOT / ".gpu-wheels").is_dir():
        return ROOT / ".gpu-wheels"
    dest = tmp_path / "wheels"
    res = subprocess.run(
        ["make", "-s", "gpu-wheels", f"GPU_WHEELS={dest}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if res.returncode != 0:
        pytest.skip(f"make gpu-wheels failed (no package index?): {res.stderr[-300:]}")
    return dest


@NO_CUDA
@pytest.mark.slow  # a fresh venv, the offline install, then a dry run there: ~2 minutes
def test_device_command_offline_in_a_stand_in_for_the_lent_python(tmp_path):
    """`make gpu-check-device` with DEVICE_PY a fresh venv that sees only the device image's
    packages (tests/device_sim.py: its torch is this machine's CPU build), no index and no
    network: the carried wheels install with pip --no-index beside that torch, the versions
    and every phase's imports come first, and the check stops at the no-CUDA exit. Then the
    dry run's tests and harness-run phases run in that environment."""
    from tests.device_sim import device_python

    wheels = wheel_folder(tmp_path)
    py = device_python(tmp_path / "device")
    unreachable = "http://127.0.0.1:9"  # any download attempt fails at once
    env = {k: v for k, v in ENV.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PIP_INDEX_URL")}
    env.update(
        PIP_CONFIG_FILE=os.devnull,
        http_proxy=unreachable,
        https_proxy=unreachable,
        PATH=env["PATH"],
    )
    res = subprocess.run(
        [
            "make",
            "gpu-check-device",
            f"DEVICE_PY={py}",
            f"GPU_WHEELS={wheels}",
            f"GPU_CHECK_ARGS=--out {tmp_path / 'g.json'}",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert "--no-index" in res.stdout  # make echoes the install command
    lines = res.stdout.splitlines()
    first = lines.index(f"[versions] torch: {torch.__version__}")
    assert lines[first : first + 4] == [
        f"[versions] torch: {torch.__version__}",
        f"[versions] transformers: {__import__('transformers').__version__}",
        "[versions] datasets: 5.2.0",
        f"[versions] pyarrow: {__import__('pyarrow').__version__}",
    ], res.stdout[-3000:] + res.stderr[-3000:]
    assert "[versions] imports: ok" in lines, res.stdout[-3000:]
    assert "error: gpu-check: no CUDA device (torch " in res.stderr
    assert not (tmp_path / "g.json").exists()
    # the packages came from the wheels, into the fresh venv, not from this machine's venv
    where = subprocess.run(
        [str(py), "-c", "import lm_eval, hydra; print(lm_eval.__file__, hydra.__file__)"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    assert where.count(str(tmp_path / "device" / "venv")) == 2, where
    # and what those packages must do at run time, not only import: the harness run through
    # lm-eval scoring, and the gpu tests' collection, in that environment (dry run, on CPU)
    dry = subprocess.run(
        check_cmd(tmp_path / "dry.json", "--dry-run", "--phases", "tests,harness_run", python=py),
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    got = json.loads((tmp_path / "dry.json").read_text())
    assert [(p["phase"], p["status"]) for p in got["phases"]] == [
        ("versions", "ok"),
        ("tests", "ok"),
        ("harness_run", "ok"),
    ], dry.stdout[-3000:]
    assert got["run"]["status"] == "complete" and "toy_recall" in got["run"]["final_acc"]


def test_ratios_from_whatever_rows_were_measured():
    from throughput_ratios import size_ratios, small_ratios

    rows = [
        {"kind": "harness", "d": 512, "L": 8, "tokens_per_s": 120.0},
        {"kind": "hf_compile", "d": 512, "L": 8, "tokens_per_s": 100.0},
        {"kind": "mini_compile", "d": 512, "L": 8, "error": "OutOfMemoryError()"},
        {"kind": "harness", "d": 768, "L": 12, "tokens_per_s": 50.0},  # its references: cut
        {"kind": "hf_compile", "d": 1024, "L": 24, "tokens_per_s": 9.0},  # harness row: cut
    ]
    assert size_ratios(rows) == [
        {"d": 512, "L": 8, "harness/hf_compile": 1.2},
        {"d": 768, "L": 12},
    ]
    small = [
        {"kind": "harness", "d": 256, "L": 6, "tokens_per_s": 30.0},
        {"kind": "harness+chunked_ce", "d": 256, "L": 6, "tokens_per_s": 40.0},
        {"kind": "mini_compile", "d": 256, "L": 6, "tokens_per_s": 20.0},
    ]
    assert small_ratios(small) == [
        {
            "d": 256,
            "L": 6,
            "best_variant": "harness+chunked_ce",
            "best/mini_compile": 2.0,
            "harness/mini_compile": 1.5,
        }
    ]


def test_size_section_harness_first_one_error_row_and_a_save_per_row(monkeypatch):
    """An OOM at d768's harness row is an error row; d1024 and every reference still run,
    the harness at both sizes before any reference; the rows are saved one by one."""
    import train_throughput as tt

    def fake_harness(name, ms, *args, **kw):
        if ms.d_model == 768:
            raise torch.OutOfMemoryError("CUDA out of memory")
        return {"kind": name, "d": ms.d_model, "L": ms.n_layers, "tokens_per_s": 2.0}

    def fake_ref(kind, shape, *args):
        return {"kind": kind, "d": shape[0], "L": shape[1], "tokens_per_s": 1.0}

    monkeypatch.setattr(tt, "bench_harness", fake_harness)
    monkeypatch.setattr(tt, "bench_ref", fake_ref)
    out = {"rows": [], "ratios": []}
    saved = []
    plan = tt.shape_plan(["768x12", "1024x24"], "cuda")
    refs = ("hf_compile", "mini_compile")
    tt.size_section(
        None,
        plan,
        1024,
        50304,
        2,
        1,
        "cuda",
        None,
        refs,
        out,
        lambda: saved.append(len(out["rows"])),
        harness_first=True,
    )
    assert [(r["kind"], r["d"], "error" in r) for r in out["rows"]] == [
        ("harness", 768, True),
        ("harness", 1024, False),
        ("hf_compile", 768, False),
        ("mini_compile", 768, False),
        ("hf_compile", 1024, False),
        ("mini_compile", 1024, False),
    ]
    assert "OutOfMemoryError" in out["rows"][0]["error"] and saved == [1, 2, 3, 4, 5, 6]
    assert out["ratios"] == [
        {"d": 1024, "L": 24, "harness/hf_compile": 2.0, "harness/mini_compile": 2.0}
    ]


def test_an_old_pyarrow_is_named_in_one_warning_line():
    from gpu_versions import pyarrow_note

    assert pyarrow_note("26.0.1", "5.2.0") is None and pyarrow_note("24.0.0", "5.2.0") is None
    note = pyarrow_note("19.0.1", "5.2.0")
    assert note.startswith("warning: pyarrow 19.0.1 is older than the 24 that datasets 5.2.0")
    assert "\n" not in note and pyarrow_note(None, "5.2.0").startswith("warning: pyarrow MISSING")
