"""Chance accuracy of tasks without a given one: a custom multiple-choice task's chance is
uniform guessing among each item's choices (before, `chance: None`, and no chance line)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from eval.lm_eval_runner import TaskRunner
from tests.conftest import local_mc_task

pytestmark = pytest.mark.slow  # builds lm-eval tasks (local files only)

ITEMS = [  # 2, 4, 4 and 5 choices: chance (1/2 + 1/4 + 1/4 + 1/5) / 4 = 0.3
    {"q": "a?", "choices": ["x", "y"], "gold": 0},
    {"q": "b?", "choices": ["w", "x", "y", "z"], "gold": 1},
    {"q": "c?", "choices": ["w", "x", "y", "z"], "gold": 2},
    {"q": "d?", "choices": ["v", "w", "x", "y", "z"], "gold": 3},
]


def _task(name: str, data: Path, **extra) -> dict:
    return local_mc_task(
        name,
        data,
        doc_to_target="gold",
        doc_to_choice="choices",
        metric_list=[{"metric": "acc"}],
        **extra,
    )


@pytest.fixture
def task_dir(tmp_path):
    data = tmp_path / "items.jsonl"
    data.write_text("".join(json.dumps(i) + "\n" for i in ITEMS))
    folder = tmp_path / "tasks"
    folder.mkdir()
    tasks = {
        "c_mc": _task("c_mc", data),
        "c_declared": _task("c_declared", data, metadata={"chance": 0.1}),
    }
    for name, cfg in tasks.items():
        (folder / f"{name}.yaml").write_text(yaml.safe_dump(cfg))
    return folder


@pytest.mark.parametrize(
    "task, limit, chance",
    [
        ("c_mc", None, 0.3),
        ("c_mc", 2, 0.375),  # only the items scored: (1/2 + 1/4) / 2
        ("c_declared", None, 0.1),  # a YAML's metadata.chance wins
    ],
)
def test_chance_of_a_custom_task(task_dir, task, limit, chance):
    runner = TaskRunner([task], (str(task_dir),), batch_size=4, limit=limit)
    assert runner.info()[task].chance == pytest.approx(chance)


def test_a_given_chance_is_kept(task_dir):
    runner = TaskRunner(["c_mc"], (str(task_dir),), batch_size=4, chance={"c_mc": 0.5})
    assert runner.info()["c_mc"].chance == 0.5
