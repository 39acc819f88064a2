"""Issue 24's own study, end to end: a study in its own folder (its conf groups, a corpus by
glob, its own lm-eval task on a local JSONL) goes from `plan` to `run` to `analyze` with no
file written inside the checkout, and moving the corpus keeps every run id."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT, harness_process, local_mc_task

pytestmark = pytest.mark.slow  # trains two tiny models and indexes lm-eval in subprocesses

# what the test's own interpreter and pytest may write; everything else counts
_IGNORED = {".git", "__pycache__", ".pytest_cache", ".ruff_cache"}


def _checkout_files() -> dict[str, tuple[int, int]]:
    """Every file of the checkout with its size and mtime."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(ROOT):
        dirnames[:] = [d for d in dirnames if d not in _IGNORED]
        for name in filenames:
            st = (Path(dirpath) / name).stat()
            out[str(Path(dirpath, name).relative_to(ROOT))] = (st.st_size, st.st_mtime_ns)
    return out


def _write_study(study: Path, corpus: Path) -> None:
    words = "node edge graph tree leaf root path cycle degree weight".split()
    for i in range(4):
        sub = corpus / ("part2" if i == 3 else "")
        sub.mkdir(parents=True, exist_ok=True)
        lines = [" ".join(words[(i + j + k) % 10] for k in range(12)) + "." for j in range(60)]
        (sub / f"doc{i}.md").write_text("\n".join(lines) + "\n")
    conf = study / "conf"
    files = {
        "sources/mine.yaml": {
            "defaults": ["default"],
            "node": {"kind": "files", "paths": [f"{corpus}/**/*.md"], "val_fraction": 0.25},
        },
        "data/node.yaml": {"name": "node", "weights": {"node": 1.0}},
        "validation/node.yaml": {
            "max_tokens": 2048,
            "sets": {"node": {"source": "node", "split": "val"}},
        },
        "tokenizer/node.yaml": {
            "kind": "bpe",
            "vocab_size": 384,
            "train_sources": ["node"],
            "train_docs": 300,
        },
        "eval/mine.yaml": {
            "suite": "mine",
            "toy_tasks": False,
            "n_per_task": 0,
            "tasks": ["graph_qa"],
            "include_paths": [str(study / "tasks")],
            "limit": None,
            "batch_size": 8,
            "num_checkpoints": 2,
            "every_tokens": None,
            "tasks_at": "all",
        },
    }
    for rel, body in files.items():
        (conf / rel).parent.mkdir(parents=True, exist_ok=True)
        (conf / rel).write_text(yaml.safe_dump(body))
    tasks = study / "tasks"
    tasks.mkdir()
    rows = [
        {"q": f"A {w} is part of a", "gold": i % 2, "choices": ["graph", "tree"]}
        for i, w in enumerate(words)
    ]
    (tasks / "graph_qa.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tasks / "graph_qa.yaml").write_text(
        yaml.safe_dump(local_mc_task("graph_qa", tasks / "graph_qa.jsonl"))
    )


def _harness(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    # the checkout's code (child_env's PYTHONPATH) without writing its bytecode there
    return harness_process(*args, cwd=cwd, env={"PYTHONDONTWRITEBYTECODE": "1"})


def _run_ids(plan_stdout: str) -> dict[str, str]:
    """run id -> action, from `harness plan`'s table (read by the header's columns)."""
    lines = plan_stdout.splitlines()
    header = next(i for i, ln in enumerate(lines) if ln.startswith("run_id"))
    at = lines[header].index("action")
    rows = []
    for ln in lines[header + 1 :]:
        if not ln.strip():  # the table ends at the first blank line (the data lines follow)
            break
        rows.append(ln)
    return {ln.split()[0]: ln[at:].strip() for ln in rows if len(ln) > at}


def test_own_study_plan_run_analyze_writes_nothing_in_the_checkout(tmp_path):
    study = tmp_path / "mystudy"
    corpus = study / "corpus"
    _write_study(study, corpus)
    sweep = [
        "-m",
        "--config-dir",
        str(study / "conf"),
        "sources=mine",
        "data=node",
        "tokenizer=node",
        "validation=node",
        "eval=mine",
        "model=cpu-40k,cpu-50k",
        "train.tokens=8192",
        "train.batch_size=8",
        "train.seq_len=64",
        "sweep_name=graphs",
    ]
    before = _checkout_files()

    plan = _harness("plan", *sweep, cwd=study)
    assert plan.returncode == 0, plan.stderr[-2000:]
    assert "warning" not in plan.stderr  # tokenizer and validation cover the corpus
    planned = _run_ids(plan.stdout)
    assert len(planned) == 2 and set(planned.values()) == {"train"}, plan.stdout

    run = _harness("run", *sweep, cwd=study)
    assert run.returncode == 0, run.stderr[-3000:]
    out = study / "outputs" / "graphs"
    records = [json.loads(p.read_text()) for p in out.glob("runs/*/record.json")]
    assert {r["run_id"] for r in records} == set(planned)
    assert all(r["status"] == "complete" for r in records)
    final = records[0]["checkpoints"][-1]
    assert set(final["val_loss"]) == {"node"} and "graph_qa" in final["tasks"]

    analysis = _harness(
        "analyze", "root=outputs/graphs", "analysis.bootstrap.n_resamples=20", cwd=study
    )
    assert analysis.returncode == 0, analysis.stderr[-2000:]
    assert (out / "report.md").read_text().startswith("#")

    # the corpus moved elsewhere (cluster scratch): the same runs, complete
    moved = tmp_path / "scratch" / "graph-corpus"
    shutil.move(str(corpus), moved)
    again = _harness("plan", *sweep, f"sources.node.paths=[{moved}/**/*.md]", cwd=study)
    assert again.returncode == 0, again.stderr[-2000:]
    assert _run_ids(again.stdout) == {rid: "skip (complete)" for rid in planned}

    after = _checkout_files()
    assert after == before, sorted(set(after.items()) ^ set(before.items()))[:10]
