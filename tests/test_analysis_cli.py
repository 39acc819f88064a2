"""`harness analyze` with a testbed source: bad input is one line and exit 2."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


BAD = [
    (["source=nosuch"], "source: unknown source 'nosuch'"),
    (
        ["source=gadre2024", "path=/nonexistent/exp_data"],
        "path: '/nonexistent/exp_data' does not exist",
    ),
    (["source=gadre2024", "path={empty}"], "is not a Gadre testbed"),
    (
        [
            "source=gadre2024",
            "analysis.calibration.labels=/nonexistent.tsv",
            "analysis.bootstrap.n_resamples=0",
        ],
        "calibration.labels: no such file",
    ),
]


@pytest.mark.parametrize("args,message", BAD)
def test_bad_testbed_input_is_one_line_exit_2(tmp_path, args, message, run_cli, monkeypatch):
    empty = tmp_path / "empty"
    empty.mkdir()
    args = [a.format(empty=empty) for a in args] + [f"out={tmp_path / 'out'}"]
    monkeypatch.chdir(ROOT)
    code, _, err = run_cli("analyze", *args)
    assert code == 2, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and message in lines[0], err
    assert not (tmp_path / "out" / "report.md").exists()


def test_shipped_testbed_needs_no_path(tmp_path):
    # the registry points at the copy inside the package, not at ../shared
    from analysis.testbeds import get

    bed = get("gadre2024")
    assert bed.shipped.is_dir() and ROOT in bed.shipped.parents
    assert (bed.shipped.parent / "LICENSE.txt").is_file()
    assert (bed.shipped.parent / "PROVENANCE.md").is_file()
    table = bed.load()
    assert table["run_id"].nunique() == 104
    assert table.loc[table["kind"] == "task", "name"].nunique() == 46
