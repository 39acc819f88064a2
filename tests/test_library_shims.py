"""What the harness assumes about lm-eval and Hydra beyond their public API, checked against the
installed versions: a minor upgrade that breaks an assumption fails here, by name, instead of
silently changing scores or launch behaviour."""

from __future__ import annotations

import inspect
from pathlib import Path

import lm_eval
import pytest
import yaml

from tests.conftest import ROOT, compose, local_mc_task


def test_lm_eval_evaluate_builds_then_reads_task_instances():
    """eval.lm_eval_runner._build_requests_once replaces build_all_requests per task and
    hands back `_instances`; evaluate must still call the one and read the other."""
    from lm_eval import evaluator
    from lm_eval.api.instance import Instance
    from lm_eval.api.task import Task

    src = inspect.getsource(evaluator.evaluate)
    version = lm_eval.__version__
    assert "task.build_all_requests(" in src, (
        f"lm-eval {version}: evaluate no longer builds requests per task"
    )
    assert "task.instances" in src, f"lm-eval {version}: evaluate no longer reads task.instances"
    prop = inspect.getsource(Task.instances.fget)
    assert "self._instances" in prop, (
        f"lm-eval {version}: Task.instances no longer returns _instances"
    )
    assert "self._instances =" in inspect.getsource(Task.build_all_requests), (
        f"lm-eval {version}: build_all_requests no longer stores its Instances in _instances"
    )
    fields = set(inspect.signature(Instance).parameters)
    assert {"resps", "filtered_resps"} <= fields, (
        f"lm-eval {version}: Instance lost resps/filtered_resps"
    )


@pytest.fixture(scope="module")
def task_dir(tmp_path_factory) -> Path:
    """One include path for both lm-eval tests below (indexing lm-eval's tasks takes seconds)."""
    root = tmp_path_factory.mktemp("shim_tasks")
    (root / "d.jsonl").write_text('{"q": "1+1=", "gold": 0, "choices": ["2", "3"]}\n' * 4)
    (root / "t_base.yaml").write_text(
        yaml.safe_dump(local_mc_task("t_base", root / "d.jsonl", tag=["my_tag"]))
    )
    (root / "t_gone.yaml").write_text(
        yaml.safe_dump(
            {
                "task": "t_gone",
                "dataset_path": str(root / "no_such_dataset"),
                "dataset_name": "cfg",
                "test_split": "test",
                "output_type": "multiple_choice",
                "doc_to_text": "q",
                "doc_to_target": 0,
                "doc_to_choice": ["a", "b"],
            }
        )
    )
    return root


@pytest.mark.slow  # indexing lm-eval's task files takes tens of seconds on a busy machine
def test_variant_yaml_derives_a_task_with_other_shots(task_dir):
    """@<N>shot variants are generated YAMLs that `include` the base task: public lm-eval."""
    from lm_eval.tasks import get_task_dict

    from eval.lm_eval_runner import _spec, task_manager

    tm = task_manager((str(task_dir),))
    spec = _spec("t_base@3shot", tm)
    variant = yaml.safe_load(Path(spec).read_text())
    assert variant == {
        "include": str(Path(tm.task_index["t_base"].yaml_path).resolve()),
        "task": "t_base__3shot",
        "num_fewshot": 3,
    }
    (task,) = get_task_dict([spec], tm).values()
    assert task.config.num_fewshot == 3 and task.config.task == "t_base__3shot"
    assert "t_base__3shot" not in tm.task_index


@pytest.mark.slow
def test_own_tasks_skip_indexing_lm_evals_tasks(task_dir):
    """Tasks all from our include paths get a manager without lm-eval's ~14k shipped YAMLs; a
    name from lm-eval itself still gets the full index (same manager as the slow test above)."""
    from eval.lm_eval_runner import _manager_for, task_manager

    local = _manager_for(["t_base", "t_base@3shot", "t_gone"], (str(task_dir),))
    assert "t_base" in local.task_index and "arc_easy" not in local.task_index
    full = _manager_for(["t_base", "arc_easy"], (str(task_dir),))
    assert full is task_manager((str(task_dir),)) and "arc_easy" in full.task_index


@pytest.mark.slow
def test_failed_dataset_is_named_without_tracebacks(task_dir):
    from common.errors import DataError
    from eval.lm_eval_runner import TaskRunner

    with pytest.raises(DataError, match=r"dataset .*no_such_dataset \(cfg\) for task 't_gone'"):
        TaskRunner(["t_base", "t_gone"], (str(task_dir),))


def test_local_launcher_is_hydras_basic_launcher_by_public_name():
    text = (ROOT / "conf" / "hydra" / "launcher" / "local.yaml").read_text()
    assert "_internal" not in text
    launcher = compose([], hydra_node=True).hydra.launcher
    assert launcher._target_.endswith("BasicLauncher")  # what Hydra's `basic` option resolves to


def test_task_yaml_reader_agrees_with_lm_evals_own(tmp_path):
    """eval/task_yaml.py reads task files as lm-eval's private reader does (includes merged, the
    including file winning, task_list not inherited, `!function` kept as the hook's path): the
    one place the private name `lm_eval.tasks._yaml_loader.load_yaml` is used."""
    from lm_eval.tasks._yaml_loader import load_yaml

    from eval.task_yaml import read_task_yaml

    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "base.yaml").write_text(
        "task: base\ndataset_path: json\noutput_type: multiple_choice\n"
        "doc_to_text: !function utils.doc_to_text\nnum_fewshot: 0\ntask_list: [a, b]\n"
        "metric_list:\n  - metric: acc\n"
    )
    (tmp_path / "mid.yaml").write_text("include: sub/base.yaml\nnum_fewshot: 2\n")
    top = tmp_path / "top.yaml"
    top.write_text("include: [mid.yaml]\ntask: top\n")
    ours = read_task_yaml(top)
    theirs = load_yaml(top, resolve_func=False, recursive=True)
    assert ours == theirs, f"lm-eval {lm_eval.__version__}: task YAML reading differs"
    assert ours["task"] == "top" and ours["num_fewshot"] == 2 and "task_list" not in ours
    assert ours["doc_to_text"] == str(tmp_path / "sub" / "utils.doc_to_text")
    twice = tmp_path / "twice.yaml"  # base along two branches: both readers refuse it
    twice.write_text(f"include: [mid.yaml, {tmp_path / 'sub' / 'base.yaml'}]\ntask: t\n")
    with pytest.raises(ValueError, match="(?i)include cycle"):
        load_yaml(twice, resolve_func=False, recursive=True)
    with pytest.raises(ValueError, match="include cycle"):
        read_task_yaml(twice)


def test_task_index_entries_name_their_yaml_and_kind(task_dir):
    """eval.lm_eval_runner._dataset_of reads `task_index[name].yaml_path` and `.kind.name`."""
    from eval.lm_eval_runner import _manager_for

    entry = _manager_for(["t_base"], (str(task_dir),)).task_index["t_base"]
    assert entry.kind.name == "TASK", f"lm-eval {lm_eval.__version__}: task_index kind changed"
    assert Path(entry.yaml_path).resolve() == (task_dir / "t_base.yaml").resolve()


def test_lm_eval_ships_its_task_yamls_beside_its_tasks_package():
    """eval/suites/paths.py substitutes `{lm_eval_tasks}` with lm_eval.tasks' folder."""
    from eval.suites.paths import lm_eval_tasks_dir

    assert (lm_eval_tasks_dir() / "arc" / "arc_easy.yaml").is_file()
