"""`make test` runs on pytest-xdist workers, --dist loadfile with tests/xdist_schedule.py's
units: a real inner run on two workers shows which worker ran what, and in which order."""

from __future__ import annotations

import os
import re
import textwrap

import pytest

from tests import xdist_schedule
from tests.conftest import ROOT

pytest_plugins = ["pytester"]

FILES = xdist_schedule.SLURM_FILES + ("test_a.py", "test_b.py", "test_c.py")


def test_every_slurm_marked_file_is_in_the_slurm_unit():
    marked = {
        p.name
        for p in (ROOT / "tests").glob("test_*.py")
        if re.search(r"pytest\.mark\.slurm\b", p.read_text())
    }
    assert marked == set(xdist_schedule.SLURM_FILES)
    assert all((ROOT / "tests" / name).is_file() for name in xdist_schedule.LONG_FILES)


@pytest.mark.parametrize(
    ("nodeid", "unit"),
    [
        ("tests/test_slurm_sweep.py::test_x[a::b]", "slurm"),
        ("tests/test_slurm_cluster.py::Cls::test_y", "slurm"),
        ("tests/test_fsdp.py::test_z[1-2]", "tests/test_fsdp.py"),
        ("tests/sub/test_slurm_sweep_more.py::test_w", "tests/sub/test_slurm_sweep_more.py"),
    ],
)
def test_unit_of(nodeid, unit):
    assert xdist_schedule.unit_of(nodeid) == unit


def test_each_file_on_one_worker_and_the_slurm_files_first(pytester, monkeypatch):
    """A pytest -n 2 run of five small files with this suite's hooks: each file on one
    worker, the two SLURM files on the same one, before anything else there."""
    log = pytester.path / "log"
    log.mkdir()
    body = textwrap.dedent(
        f"""
        import os, time
        import pytest

        @pytest.mark.parametrize("i", range(4))
        def test_where(i, request):
            name = request.node.path.name
            with open(os.path.join({str(log)!r}, os.environ["PYTEST_XDIST_WORKER"]), "a") as f:
                f.write(name + "\\n")
            time.sleep(0.05)
        """
    )
    for name in FILES:
        pytester.makepyfile(**{name[:-3]: body})
    pytester.makeconftest(
        "from tests.conftest import pytest_xdist_make_scheduler, pytest_collection_modifyitems"
    )
    paths = [str(ROOT), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(paths))
    res = pytester.runpytest_subprocess(
        "-n", "2", "--dist", "loadfile", "--no-loadscope-reorder", "-p", "no:cacheprovider"
    )
    res.assert_outcomes(passed=4 * len(FILES))
    ran = {w.name: w.read_text().split() for w in log.iterdir()}
    assert len(ran) == 2, ran  # both workers had work
    where = {name: {w for w, names in ran.items() if name in names} for name in FILES}
    assert all(len(workers) == 1 for workers in where.values()), where
    slurm = where["test_slurm_cluster.py"]
    assert where["test_slurm_sweep.py"] == slurm  # one unit
    first = ran[next(iter(slurm))][: 4 * len(xdist_schedule.SLURM_FILES)]
    assert set(first) == set(xdist_schedule.SLURM_FILES), first  # and handed out first
