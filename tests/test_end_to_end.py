"""The whole pipeline once: a 2-run sweep (Hydra multirun) -> records -> analysis -> plots."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from tests.conftest import harness_process as harness
from tests.conftest import tiny_overrides

pytestmark = pytest.mark.slow  # end to end: a sweep, analysis and plots in subprocesses


def test_sweep_then_analyze_then_plot(tmp_path):
    out = tmp_path / "sweep"
    overrides = [
        a for a in tiny_overrides(tmp_path / "cache", out, tasks=True) if not a.startswith("model=")
    ]
    res = harness("run", "-m", "model=cpu-50k,cpu-100k", "sweep_name=e2e", *overrides, cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    records = [json.loads(p.read_text()) for p in out.glob("runs/*/record.json")]
    assert len(records) == 2 and all(r["status"] == "complete" for r in records)
    assert {r["model"]["size"] for r in records} == {"cpu-50k", "cpu-100k"}
    assert all(r["sweep"] == "e2e" for r in records)

    # relaunching the same sweep skips both runs
    again = harness(
        "run", "-m", "model=cpu-50k,cpu-100k", "sweep_name=e2e", *overrides, cwd=tmp_path
    )
    assert again.returncode == 0 and again.stderr.count("complete") >= 2 and "skip" in again.stderr

    res = harness("analyze", f"root={out}", "analysis.bootstrap.n_resamples=50", cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    assert (out / "report.md").read_text().startswith("#")
    for table in ("runs.parquet", "trends.csv", "flips.csv", "extrapolation.csv", "fits.csv"):
        assert (out / "tables" / table).exists(), table
    runs = pd.read_parquet(out / "tables" / "runs.parquet")
    assert set(runs["run_id"]) == {r["run_id"] for r in records}
    assert {"toy", "toy_shifted", "code"} <= set(runs.loc[runs["kind"] == "val_loss", "name"])
    figures = sorted(p.name for p in (out / "figures").glob("*.png"))
    assert "loss_vs_compute.png" in figures and any(f.startswith("task_grid") for f in figures)

    before = {p: p.stat().st_mtime_ns for p in (out / "figures").glob("*.png")}
    res = harness("plot", f"out={out}", cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    assert all(p.stat().st_mtime_ns > t for p, t in before.items())
