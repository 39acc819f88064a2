"""Standard lm-eval suites and their setup variants, on local stand-in tasks (no hub access)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from common.errors import ConfigError
from eval.lm_eval_runner import TaskRunner, _spec, task_manager
from harness.config import run_spec
from harness.run_setup import _TASK_RUNNERS
from harness.runner import execute
from tests.conftest import ROOT, compose, tiny_overrides
from tests.fixtures.eval_standin import write_standin

pytestmark = pytest.mark.slow  # lm-eval task indexing and runs scored on stand-in suites

CORE = [
    "hellaswag",
    "arc_easy",
    "arc_challenge",
    "piqa",
    "winogrande",
    "openbookqa",
    "boolq",
    "copa",
    "lambada_openai",
    "sciq",
    "mmlu",
]
STANDIN_TASKS = [
    "arc_easy",
    "arc_easy@mc",
    "arc_easy@5shot",
    "arc_easy@2shot",
    "hellaswag",
    "hellaswag@5shot",
]


def test_core_suites_compose_and_every_name_resolves():
    core = compose(["eval=core"]).eval
    assert list(core.tasks) == CORE and isinstance(core.batch_size, int)
    variants = compose(["eval=core_variants"]).eval
    assert set(CORE) < set(variants.tasks) and {
        "hellaswag@5shot",
        "arc_easy@mc",
        "mmlu@cloze",
    } <= set(variants.tasks)
    tm = task_manager(tuple(variants.include_paths))
    for name in variants.tasks:
        _spec(name, tm)  # raises ConfigError for a name lm-eval would not know
    # variants do not join the base task's tag (`ai2_arc` stays the two real ARC tasks)
    assert tm.task_index["ai2_arc"].tags == {"arc_easy", "arc_challenge"}
    # and exist only where the suite's include path is used
    assert "arc_easy__mc" not in task_manager(()).task_index


def test_offline_empty_cache_names_the_dataset(tmp_path):
    env = dict(
        os.environ,
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        HF_HOME=str(tmp_path / "hf"),
        HF_DATASETS_CACHE=str(tmp_path / "hf" / "datasets"),
    )
    code = (
        "from harness.cli_checks import guard; from eval.lm_eval_runner import TaskRunner; "
        f"guard(lambda: TaskRunner({CORE!r}))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    line = proc.stderr.strip().splitlines()[-1]
    assert "dataset Rowan/hellaswag for task 'hellaswag' could not be loaded while offline" in line
    assert "datasets.load_dataset('Rowan/hellaswag')" in line


@pytest.fixture(scope="module")
def standin_run(tmp_path_factory):
    cache = tmp_path_factory.mktemp("suitecache")
    out = tmp_path_factory.mktemp("suiteout")
    root = write_standin(tmp_path_factory.mktemp("standin"))
    ov = tiny_overrides(cache, out) + [
        f"eval.tasks=[{','.join(STANDIN_TASKS)}]",
        f"eval.include_paths=[{root}]",
        "eval.batch_size=16",
    ]
    spec = run_spec(compose(ov))
    outcome = execute(spec, out)
    return spec, outcome, root


def test_suite_variants_are_scored_and_stored_separately(standin_run):
    spec, outcome, root = standin_run
    rec = json.loads((outcome.path / "record.json").read_text())
    final = rec["checkpoints"][-1]["tasks"]
    assert set(final) == set(STANDIN_TASKS)
    # chance of a multiple-choice task without a declared one: 1/n choices, averaged over items
    test_items = (root / "arc" / "arc_easy.test.jsonl").read_text().splitlines()
    odds = [1 / len(json.loads(ln)["choices"]["text"]) for ln in test_items]
    for name, m in final.items():
        for key in ("acc", "acc_norm", "logprob", "bpb", "prob_correct", "brier"):
            assert key in m and math.isfinite(m[key]), (name, key)
    assert final["arc_easy"] != final["arc_easy@mc"]
    meta = rec["tasks_meta"]
    assert meta["arc_easy@mc"] | {"n_samples": 0, "chance": 0} == {
        "name": "arc_easy@mc",
        "task": "arc_easy",
        "setup": "mc",
        "chance": 0,
        "n_samples": 0,
        "num_fewshot": 0,
    }
    assert meta["arc_easy@mc"]["chance"] == pytest.approx(sum(odds) / len(odds), abs=1e-6)
    assert meta["arc_easy"]["chance"] == meta["arc_easy@mc"]["chance"]
    assert [
        meta[n]["num_fewshot"]
        for n in ("arc_easy", "arc_easy@5shot", "arc_easy@2shot", "hellaswag@5shot")
    ] == [0, 5, 2, 5]


def test_variant_prompts_follow_their_setup(standin_run):
    spec, _, _ = standin_run
    runner = _TASK_RUNNERS[(tuple(spec.eval.tasks), tuple(spec.eval.include_paths), "16", None)]
    ctx, cont = _first_request(runner, "arc_easy@mc")
    # ARC labels are letters or (for a few questions) digits; the prompt lists them either way
    assert (
        ("\nA. " in ctx or "\n1. " in ctx)
        and ctx.endswith("Answer:")
        and cont.strip() in "ABCDE12345"
    )
    ctx0, _ = _first_request(runner, "arc_easy")
    ctx5, _ = _first_request(runner, "arc_easy@5shot")
    assert ctx0.count("Answer:") == 1 and ctx5.count("Answer:") == 6


def _first_request(runner, name):
    args = runner.last_samples[name][0]["arguments"]
    pair = next(iter(args.values())) if isinstance(args, dict) else args[0]
    return tuple(pair.values()) if isinstance(pair, dict) else tuple(pair)


def test_requests_are_built_once_and_scores_repeat(standin_run):
    from harness.backfill import _load_checkpoint
    from train.checkpoint import latest_complete

    spec, outcome, _ = standin_run
    runner = _TASK_RUNNERS[(tuple(spec.eval.tasks), tuple(spec.eval.include_paths), "16", None)]
    model, tok = _load_checkpoint(latest_complete(outcome.path / "checkpoints"))
    tasks = runner.task_dict
    before = {k: id(t._instances) for k, t in tasks.items()}
    first = runner.evaluate(model, tok, max_length=256)
    second = runner.evaluate(model, tok, max_length=256)
    assert {k: id(t._instances) for k, t in tasks.items()} == before  # not rebuilt
    assert first == second
    rec = json.loads((outcome.path / "record.json").read_text())
    assert rec["checkpoints"][-1]["tasks"]["hellaswag"]["acc"] == pytest.approx(
        first["hellaswag"]["acc"]
    )


BASE = {
    "task": "t_ok",
    "dataset_path": "json",
    "output_type": "multiple_choice",
    "doc_to_text": "q",
    "doc_to_target": "gold",
    "doc_to_choice": "choices",
}


def _dir(tmp_path: Path, files: dict[str, dict | str]) -> Path:
    d = tmp_path / "tasks"
    d.mkdir(exist_ok=True)
    for name, cfg in files.items():
        (d / name).write_text(
            cfg if isinstance(cfg, str) else yaml.safe_dump(cfg), encoding="utf-8"
        )
    return d


@pytest.mark.parametrize(
    "files, tasks, message",
    [
        (
            {"a.yaml": {k: v for k, v in BASE.items() if k != "doc_to_text"}},
            ["t_ok"],
            "a.yaml: task YAML missing required field 'doc_to_text'",
        ),
        (
            {"a.yaml": {k: v for k, v in BASE.items() if k != "doc_to_choice"}},
            ["t_ok"],
            "a.yaml: task YAML missing required field 'doc_to_choice'",
        ),
        (
            {"a.yaml": BASE, "b.yaml": BASE},
            ["t_ok"],
            "b.yaml: task name 't_ok' is already registered by",
        ),
        ({"a.yaml": "task: [unclosed"}, ["t_ok"], "a.yaml: unreadable task YAML"),
        (
            {"a.yaml": {"include": "{lm_eval_tasks}/no/such.yaml", "task": "x__5shot"}},
            ["x@5shot"],
            "a.yaml: unreadable task YAML",
        ),
        (None, ["t_ok"], "eval.include_paths: 'no/such/dir' is not a directory"),
    ],
)
def test_bad_task_yaml(tmp_path, files, tasks, message):
    include = (str(_dir(tmp_path, files)),) if files is not None else ("no/such/dir",)
    with pytest.raises(ConfigError) as err:
        TaskRunner(tasks, include)
    assert message in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize(
    "name, message",
    [
        ("arc_easy@mcc", "eval.tasks: unknown task 'arc_easy@mcc' (did you mean: arc_easy@mc"),
        ("mmlu@5shot", "'mmlu' is a group or tag - define a variant YAML"),
    ],
)
def test_bad_suite_task_names(name, message):
    with pytest.raises(ConfigError, match=None) as err:
        TaskRunner([name], ("eval/suites/core",))
    assert message in str(err.value)


def test_bad_include_exits_2_without_a_record(standin_run, run_cli, tmp_path):
    spec, _, _ = standin_run
    bad = _dir(tmp_path, {"a.yaml": {k: v for k, v in BASE.items() if k != "output_type"}})
    out = tmp_path / "out"
    code, _, err = run_cli(
        "run",
        *tiny_overrides(Path(spec.cache_dir), out),
        "eval.tasks=[t_ok]",
        f"eval.include_paths=[{bad}]",
    )
    assert code == 2 and "a.yaml: task YAML missing required field 'output_type'" in err
    assert not list(out.glob("runs/*/record.json"))


def test_relative_include_paths_resolve_against_the_project_root(monkeypatch, tmp_path):
    from eval.suites.paths import resolve_include_path

    monkeypatch.chdir(tmp_path)
    assert resolve_include_path("eval/suites/core") == ROOT / "eval" / "suites" / "core"
