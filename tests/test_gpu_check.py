"""The prepared GPU check (bench/gpu_check.py): without CUDA it stops at once with one line;
its verdicts read the bench's ratios against the issue's targets."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from gpu_check import TARGETS, junit_counts, table, verdicts  # noqa: E402


@pytest.mark.skipif(
    torch.cuda.is_available(), reason="checks the no-CUDA exit; this machine has CUDA"
)
def test_without_cuda_one_line_and_exit_2(tmp_path):
    res = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "gpu_check.py"), "--out", str(tmp_path / "g.json")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 2
    assert res.stderr.strip().startswith("error: gpu-check: no CUDA device (torch ")
    assert len(res.stderr.strip().splitlines()) == 1 and not (tmp_path / "g.json").exists()


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
