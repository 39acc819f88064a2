"""Reliability (issue 6): the bad-input matrix through the real CLI, each case asserting the
one-line message and the exit code (test_config.py covers unknown config-group options)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from tests.conftest import tiny_overrides
from tests.fault_injection import record_differences
from train.checkpoint import checkpoint_steps


def _files_source(path: Path) -> list[str]:
    return [
        f"+sources.mine={{kind: files, paths: ['{path}'], format: text, val_fraction: 0.0}}",
        "~data.weights.toyworld",
        "+data.weights.mine=1.0",
    ]


def _bad_utf8(p: Path) -> None:
    p.write_bytes(b"ok text\n\xff\xfe not utf-8\n")


@pytest.mark.parametrize(
    "extra, prepare, message",
    [
        (["+data.weights.nosuch=1"], None, "data.weights.nosuch: unknown source 'nosuch'"),
        (
            ["data.weights.toyworld=-1"],
            None,
            "data.weights.toyworld: weight must be a finite number >= 0",
        ),
        (["data.weights.toyworld=0"], None, "data.weights: all weights are zero"),
        (
            ["data.weights.toyworld=nan"],
            None,
            "data.weights.toyworld: weight must be a finite number >= 0, got nan",
        ),
        (
            ["validation.sets.toy.source=nosuch"],
            None,
            "validation.sets.toy.source: unknown source 'nosuch'",
        ),
        (
            ["+validation.sets.extra={source: toyworld, split: test}"],
            None,
            "validation.sets.extra.split: unknown split 'test'",
        ),
        ("files", None, "data file not found"),
        (
            "files",
            lambda p: p.write_text(""),
            "sources.mine: split 'train' is empty (no documents)",
        ),
        ("files", _bad_utf8, "data file is not UTF-8 text"),
    ],
    ids=[
        "unknown-source",
        "negative-weight",
        "zero-weights",
        "nan-weight",
        "unknown-val-source",
        "unknown-val-split",
        "missing-file",
        "empty-file",
        "non-utf8-file",
    ],
)
def test_run_bad_input(run_cli, tmp_path, shared_cache, extra, prepare, message):
    if extra == "files":
        data = tmp_path / "data.txt"
        if prepare:
            prepare(data)
        extra = _files_source(data)
    code, _, err = run_cli("run", *tiny_overrides(shared_cache, tmp_path / "out"), *extra)
    assert code == 2, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: ") and message in last
    # input is checked before any record is written
    assert not list((tmp_path / "out").glob("runs/*/record.json"))


def test_run_unknown_task(run_cli, tmp_path, shared_cache):
    code, _, err = run_cli(
        "run", *tiny_overrides(shared_cache, tmp_path, tasks=True), "eval.tasks=[toy_nope]"
    )
    assert code == 2 and "eval.tasks: unknown task 'toy_nope'" in err


@pytest.fixture
def finished(finished_ckpt4):
    """The session's finished tiny run (a checkpoint every 4 steps): its sweep folder and run
    id, to damage copies of."""
    _, outcome = finished_ckpt4
    return outcome.path.parent.parent, outcome.run_id


@pytest.mark.slow
def test_corrupt_record_is_reported_and_rebuilt(run_cli, finished, tmp_path, shared_cache):
    out, rid = finished
    copy = tmp_path / "sweep"
    shutil.copytree(out, copy)
    (copy / "runs" / rid / "record.json").write_text('{"status": "complete", "checkpo')
    code, _, err = run_cli("run", *tiny_overrides(shared_cache, copy), "train.checkpoint_every=4")
    assert code == 0, err
    assert f"warning: corrupt record {copy / 'runs' / rid / 'record.json'}" in err
    assert not record_differences(out / "runs" / rid, copy / "runs" / rid)


@pytest.mark.slow
def test_corrupt_newest_checkpoint_resumes_from_the_previous(
    run_cli, finished, tmp_path, shared_cache
):
    """As if killed while the final record was being written, with the newest checkpoint damaged."""
    out, rid = finished
    copy = tmp_path / "sweep"
    shutil.copytree(out, copy)
    run = copy / "runs" / rid
    rec = json.loads((run / "record.json").read_text())
    rec["status"] = "running"
    (run / "record.json").write_text(json.dumps(rec))
    newest = run / "checkpoints" / f"step_{checkpoint_steps(run / 'checkpoints')[-1]}"
    with open(newest / "trainer_state.pt", "r+b") as fh:
        fh.seek(10)
        fh.write(b"XXXX")
    code, _, err = run_cli("run", *tiny_overrides(shared_cache, copy), "train.checkpoint_every=4")
    assert code == 0, err
    assert (
        f"warning: skipping checkpoint {newest}: file trainer_state.pt does not match its sha256"
        in err
    )
    rec = json.loads((run / "record.json").read_text())
    assert rec["status"] == "complete" and rec["compute"]["resumed_from_step"] == 28
    assert not record_differences(out / "runs" / rid, run)


@pytest.mark.slow
def test_cached_task_file_missing_a_field(run_cli, tmp_path, shared_cache):
    from harness.config import run_spec
    from harness.data_prep import toy_task_dir
    from tests.conftest import compose

    args = tiny_overrides(tmp_path / "cache", tmp_path / "out", tasks=True)
    folder, _ = toy_task_dir(run_spec(compose(args)))
    task_yaml = sorted(folder.rglob("*.yaml"))[0]
    cfg = yaml.safe_load(task_yaml.read_text())
    del cfg["doc_to_text"]
    task_yaml.write_text(yaml.safe_dump(cfg))
    code, _, err = run_cli("run", *args)
    assert code == 2 and "missing required field 'doc_to_text'" in err and str(task_yaml) in err


# --- analysis ----------------------------------------------------------------------------


def _analyze(run_cli, root: Path) -> tuple[int, str, str]:
    # in-process: run_cli prints warnings to stderr as the CLI's own process does
    return run_cli("analyze", f"root={root}", f"out={root / 'an'}")


@pytest.mark.slow
def test_analysis_root_without_complete_records(tmp_path, run_cli):
    (tmp_path / "runs" / "a").mkdir(parents=True)
    (tmp_path / "runs" / "a" / "record.json").write_text(
        json.dumps({"status": "failed", "failure": "x"})
    )
    (tmp_path / "runs" / "b").mkdir()
    (tmp_path / "runs" / "b" / "record.json").write_text('{"trunc')
    code, _, err = _analyze(run_cli, tmp_path)
    assert code == 2
    errors = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert errors == [f"error: no usable run records under {tmp_path / 'runs'} (2 found)"]


@pytest.mark.slow
def test_analysis_skips_corrupt_and_failed_records(tmp_path, run_cli):
    from tests.fixtures.analysis_make import sweep_records, write_records

    recs = sweep_records(n_sizes=3, mixes=("toy",), n_ckpt=2, tasks=("predictable",))
    write_records(tmp_path, recs)
    good = recs[0]
    for name, text in [
        ("truncated", json.dumps(good)[:80]),
        (
            "failed",
            json.dumps(
                {
                    **good,
                    "run_id": "failed",
                    "status": "failed",
                    "failure": "diverged: loss is nan at step 3",
                }
            ),
        ),
    ]:
        (tmp_path / "runs" / name).mkdir()
        (tmp_path / "runs" / name / "record.json").write_text(text)
    code, _, err = _analyze(run_cli, tmp_path)
    assert code == 0, err
    assert "skipping unreadable record runs/truncated/record.json" in err
    assert "skipping runs/failed/record.json: status is 'failed'" in err
    # one line each, `warning: <message>`: no Python file:line, category or source line
    skips = [ln for ln in err.splitlines() if "skipping" in ln]
    assert skips and all(ln.startswith("warning: skipping ") for ln in skips), err
    assert "AnalysisWarning" not in err and ".py:" not in err
    assert (tmp_path / "an" / "report.md").exists()
