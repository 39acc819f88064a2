"""The benchmarks run (CPU smoke mode) and write their result tables; figures are not asserted
(speed targets are shown by the benches' printed ratios, never by timed tests)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # each bench runs as a subprocess

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "HARNESS_NO_PROGRESS": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}


def bench(script: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "bench" / script), *args],
        cwd=ROOT,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_train_throughput_smoke(tmp_path):
    """Stands alone: its references are this project's (bench/reference_models.py); the
    anchor in ../shared is an optional extra column."""
    res = bench("train_throughput.py", "--smoke", "--out", str(tmp_path / "t.json"))
    assert res.returncode == 0, res.stderr[-2000:]
    out = json.loads((tmp_path / "t.json").read_text())
    assert {"sizes", "small", "cpu_demo"} <= set(out)
    kinds = {r["kind"] for r in out["sizes"]["rows"] if "error" not in r}
    assert {"harness", "hf_eager", "mini_eager"} <= kinds
    assert all("harness/mini_eager" in r for r in out["sizes"]["ratios"])
    assert "after/before" in res.stdout


def test_train_throughput_explicit_missing_anchor_is_one_line(tmp_path):
    res = bench("train_throughput.py", "--smoke", "--anchor", str(tmp_path / "nope.py"))
    assert res.returncode == 2
    assert res.stderr.strip() == f"error: --anchor: '{tmp_path / 'nope.py'}' not found"


def test_tokenize_throughput_smoke(tmp_path):
    res = bench(
        "tokenize_throughput.py", "--mb", "0.3", "--repeats", "1", "--out", str(tmp_path / "k.json")
    )
    assert res.returncode == 0, res.stderr[-2000:]
    out = json.loads((tmp_path / "k.json").read_text())
    assert out["tokens"] > 0 and out["ratio"] > 0
