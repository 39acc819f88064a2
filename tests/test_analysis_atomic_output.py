"""All-or-nothing analysis outputs (analysis.output.folder): a real `kill -9` of a real
`harness analyze`, a re-analysis that leaves nothing stale, `harness plot` refusing an
output without its completion marker, and a full disk (injected, and a real small tmpfs
where this machine lets us mount one) as one line with the previous output unchanged."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pandas as pd
import pytest

from analysis.config import AnalysisConfig
from analysis.errors import AnalysisError
from analysis.output.folder import MARKER
from analysis.pipeline import analyze
from tests.conftest import cli_in_process
from tests.fixtures.analysis_make import sweep_records, sweep_table, write_records

FAST = [
    "analysis.bootstrap.n_resamples=40",
    "analysis.bootstrap.loss_law_resamples=10",
    "analysis.plot.max_flip_figures=2",
]


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """`harness <args>` in-process, from `cwd`: these tests check exit codes, stderr and the
    files written (the kill test below needs a real process and starts one)."""
    here = os.getcwd()
    os.chdir(cwd)
    try:
        code, out, err = cli_in_process(*args)
    finally:
        os.chdir(here)
    return subprocess.CompletedProcess(args, code, out, err)


def _snapshot(out: Path) -> dict[str, bytes]:
    """Every file of the output except staging/trash folders of a killed analysis."""
    return {
        str(p.relative_to(out)): p.read_bytes()
        for p in sorted(out.rglob("*"))
        if p.is_file() and not p.relative_to(out).parts[0].startswith(".analysis.")
    }


@pytest.fixture(scope="module")
def analysed(tmp_path_factory):
    """A sweep analysed once through the CLI (the 'previous complete output')."""
    root = tmp_path_factory.mktemp("atomic")
    write_records(root / "sweep", sweep_records())
    r = _cli("analyze", f"root={root / 'sweep'}", f"out={root / 'out'}", *FAST, cwd=root)
    assert r.returncode == 0, r.stderr[-2000:]
    return root


def test_kill_9_mid_analysis_keeps_previous_then_rerun_leaves_nothing_stale(analysed, tmp_path):
    out = tmp_path / "out"
    os.system(f"cp -a {analysed / 'out'} {out}")
    # what an older analysis left that this one does not write: must not survive
    (out / "tables" / "calibration.csv").write_text("task,label\nold,predictable\n")
    (out / "figures" / "flip_9_old_vs_older.png").write_bytes(b"\x89PNG old")
    before = _snapshot(out)
    sweep = tmp_path / "sweep"
    recs = sweep_records()
    write_records(sweep, recs[:-2])  # another sweep: the new output would differ

    proc = subprocess.Popen(
        [sys.executable, "-m", "harness.cli", "analyze", f"root={sweep}", f"out={out}", *FAST],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 240
    staged = []
    while time.time() < deadline and proc.poll() is None:
        staged = list(out.glob(".analysis.tmp-*/tables/trends.csv"))
        if staged:  # new tables written, figures and report still to come
            break
        time.sleep(0.05)
    assert staged and proc.poll() is None, "the analysis finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL

    assert _snapshot(out) == before  # the previous output, byte for byte
    r = _cli("plot", f"out={out}", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]

    r = _cli("analyze", f"root={sweep}", f"out={out}", *FAST, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert not list(out.glob(".analysis.*")), "a killed analysis's staging folder survived"
    assert not (out / "tables" / "calibration.csv").exists()
    assert not (out / "figures" / "flip_9_old_vs_older.png").exists()
    assert (out / "tables" / MARKER).is_file()
    runs = pd.read_csv(out / "tables" / "runs.csv")
    assert set(runs["run_id"]) == {r["run_id"] for r in recs[:-2]}


def test_plot_refuses_an_output_without_its_marker(analysed, tmp_path):
    out = tmp_path / "out"
    os.system(f"cp -a {analysed / 'out'} {out}")
    (out / "tables" / MARKER).unlink()
    r = _cli("plot", f"out={out}", cwd=tmp_path)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "incomplete" in lines[0] and "Traceback" not in r.stderr


def test_analysis_into_the_sweep_root_keeps_the_runs(tmp_path):
    """out defaults to the sweep's root: only the analysis entries are ever replaced."""
    write_records(tmp_path, sweep_records(n_sizes=3, mixes=("toy",), tasks=("predictable",)))
    runs = _snapshot(tmp_path / "runs")
    cfg = AnalysisConfig.from_dict({"bootstrap": {"n_resamples": 20, "loss_law_resamples": 5}})
    table = sweep_table(n_sizes=3, mixes=("toy",), tasks=("predictable",))
    for _ in range(2):
        analyze(table, tmp_path, cfg)
    assert _snapshot(tmp_path / "runs") == runs
    assert (tmp_path / "tables" / MARKER).is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "analysis_config.json",
        "figures",
        "report.md",
        "runs",
        "tables",
    ]


@pytest.mark.parametrize("fail_at", [1, 8, 18])
def test_disk_full_injected_is_one_error_previous_unchanged(
    analysed, tmp_path, fail_at, monkeypatch
):
    """ENOSPC at the n-th file the analysis writes (table, figure or report)."""
    import common.atomic as atomic

    out = tmp_path / "out"
    os.system(f"cp -a {analysed / 'out'} {out}")
    before = _snapshot(out)
    real = atomic.os.replace
    calls = {"n": 0}

    def replace(src, dst):
        if ".analysis.tmp-" in str(dst):
            calls["n"] += 1
            if calls["n"] == fail_at:
                raise OSError(errno.ENOSPC, "No space left on device", str(dst))
        return real(src, dst)

    monkeypatch.setattr(atomic.os, "replace", replace)
    cfg = AnalysisConfig.from_dict({"bootstrap": {"n_resamples": 20, "loss_law_resamples": 5}})
    with pytest.raises(AnalysisError, match="disk full") as err:
        analyze(sweep_table(), out, cfg)
    assert "\n" not in str(err.value)
    monkeypatch.setattr(atomic.os, "replace", real)
    assert _snapshot(out) == before
    assert not list(out.glob(".analysis.*"))


def test_disk_full_into_a_fresh_folder_leaves_nothing(tmp_path, monkeypatch):
    import common.atomic as atomic

    real = atomic.os.replace

    def replace(src, dst):
        if str(dst).endswith("trends.csv"):
            raise OSError(errno.ENOSPC, "No space left on device", str(dst))
        return real(src, dst)

    monkeypatch.setattr(atomic.os, "replace", replace)
    cfg = AnalysisConfig.from_dict({"bootstrap": {"n_resamples": 20, "loss_law_resamples": 5}})
    with pytest.raises(AnalysisError, match="disk full"):
        analyze(sweep_table(n_sizes=3, mixes=("toy",)), tmp_path / "new", cfg)
    assert not (tmp_path / "new").exists()


@pytest.fixture
def small_tmpfs(tmp_path):
    """A real 900 KiB tmpfs (root and mount permission needed, else the test is skipped):
    room for one analysis output of the fixture sweep (~610 KiB, figures at 200 dpi) but
    not for two."""
    mnt = tmp_path / f"mnt_{uuid.uuid4().hex[:6]}"
    mnt.mkdir()
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=900k", "tmpfs", str(mnt)],
        capture_output=True,
        text=True,
    )
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


def test_disk_full_on_a_real_tmpfs_is_one_line(small_tmpfs, tmp_path):
    sweep = tmp_path / "sweep"
    write_records(sweep, sweep_records())
    out = small_tmpfs / "out"
    r = _cli("analyze", f"root={sweep}", f"out={out}", *FAST, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]  # one output fits
    before = _snapshot(out)
    r = _cli("analyze", f"root={sweep}", f"out={out}", *FAST, cwd=tmp_path)
    assert r.returncode == 2, r.stderr[-2000:]  # old + new do not
    lines = r.stderr.strip().splitlines()
    assert "Traceback" not in r.stderr
    assert "disk full" in lines[-1] and str(out) in lines[-1]
    assert _snapshot(out) == before
    assert not list(out.glob(".analysis.*"))


def test_several_sources_summary_is_replaced_whole(tmp_path, monkeypatch):
    """The several-testbed summary (summary.md + summary/) is staged and swapped in too:
    a figure of a testbed no longer summarised does not survive."""
    from analysis import testbeds
    from analysis.pipeline import run_sources

    for name in ("fx_a", "fx_b"):
        bed = testbeds.Testbed(
            name=name,
            loader=lambda _p: sweep_table(n_sizes=3, mixes=("toy",), tasks=("predictable",)),
            shipped=tmp_path,
            description="fixture sweep",
        )
        monkeypatch.setitem(testbeds.TESTBEDS, name, bed)
    cfg = AnalysisConfig.from_dict({"bootstrap": {"n_resamples": 20, "loss_law_resamples": 5}})
    out = tmp_path / "out"
    run_sources(["fx_a", "fx_b"], cfg, out)
    stale = out / "summary" / "most_flipped_gone.png"
    stale.write_bytes(b"\x89PNG old")
    run_sources(["fx_a", "fx_b"], cfg, out)
    assert not stale.exists()
    assert (out / "summary" / MARKER).is_file() and (out / "summary.md").is_file()
    assert not list(out.glob(".analysis.*"))
