"""Downstream tasks scored by lm-eval on an in-memory model.

The `TaskManager` (which indexes every task YAML lm-eval ships, plus our include paths), the task
objects and each task's requests are built once per process and reused for every checkpoint and
run. Variant names: a task scored under another evaluation setup is registered with lm-eval as
`<task>__<setup>` and reported by the harness as `<task>@<setup>`; `<task>@<N>shot` works for any
task without a YAML of its own (a generated YAML that `include`s the base task's file and sets
num_fewshot: lm-eval's documented way to derive a task).

Only lm-eval's public API is used (TaskManager, get_task_dict, evaluate, HFLM, task attributes
without a leading underscore), except for the shims below; tests/test_library_shims.py checks
each one against the installed lm-eval, so an upgrade that breaks one fails there, by name:

- `_build_requests_once` reads and sets `Task._instances` (the cache behind `Task.instances`);
- `_dataset_of` reads `TaskManager.task_index` entries' `yaml_path` and `kind` (public
  attributes, undocumented);
- eval/suites/paths.py finds lm-eval's shipped task YAMLs beside `lm_eval.tasks.__file__`;
- task YAMLs are read by eval/task_yaml.py, which follows the rules of lm-eval's private
  `lm_eval.tasks._yaml_loader.load_yaml` (includes, `!function`) without importing it.
"""

from __future__ import annotations

import difflib
import functools
import logging
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from common.errors import ConfigError, DataError
from common.record import task_protocol
from eval.suites.paths import Registered, prepare_include_paths
from eval.task_yaml import TaskYamlError, read_task_yaml

VARIANT_SEP_LM_EVAL = "__"
VARIANT_SEP = "@"
_SHOT = re.compile(r"^(?P<base>.+)@(?P<n>\d+)shot$")


def to_lm_eval_name(name: str) -> str:
    return name.replace(VARIANT_SEP, VARIANT_SEP_LM_EVAL)


def to_harness_name(name: str) -> str:
    return name.replace(VARIANT_SEP_LM_EVAL, VARIANT_SEP, 1)


@dataclass(frozen=True)
class TaskInfo:
    """What the record keeps about a task: chance level, size, shots."""

    name: str
    task: str
    setup: str
    chance: float | None
    n_samples: int | None
    num_fewshot: int | None


_MANAGERS: dict[tuple[tuple[str, ...], bool], tuple[Any, dict[str, Registered]]] = {}


def task_manager(include_paths: tuple[str, ...]) -> Any:
    """A cached `TaskManager` for these include paths (indexing all tasks takes seconds)."""
    return _manager(include_paths)[0]


def _manager(
    include_paths: tuple[str, ...], include_defaults: bool = True
) -> tuple[Any, dict[str, Registered]]:
    key = (tuple(sorted(include_paths)), include_defaults)
    if key not in _MANAGERS:
        from lm_eval.tasks import TaskManager

        paths, registered = _prepared(key[0])
        logging.getLogger("lm_eval").setLevel(logging.ERROR)
        tm = TaskManager(include_path=list(paths) or None, include_defaults=include_defaults)
        _MANAGERS[key] = (tm, registered)
    return _MANAGERS[key]


_PREPARED: dict[tuple[str, ...], tuple[tuple[str, ...], dict[str, Registered]]] = {}


def _prepared(include_paths: tuple[str, ...]) -> tuple[tuple[str, ...], dict[str, Registered]]:
    """The include paths materialised and validated, once per process: lm-eval's indexer skips
    bad files and lets duplicates win, so every YAML is checked before lm-eval sees it."""
    key = tuple(sorted(include_paths))
    if key not in _PREPARED:
        _PREPARED[key] = prepare_include_paths(key)
    return _PREPARED[key]


def _manager_for(names: list[str], include_paths: tuple[str, ...]) -> Any:
    """The manager for these tasks: indexing every YAML lm-eval ships takes ~25 s of a demo run,
    so when each task is a plain task of our own include paths (or a `@<N>shot` of one) only
    those paths are indexed. Groups may name lm-eval's tasks, so they get the full index."""
    if include_paths:
        _, registered = _prepared(include_paths)

        def local(name: str) -> bool:
            shot = _SHOT.match(name)
            lm_name = to_lm_eval_name(name)
            entry = registered.get(lm_name) or (
                registered.get(shot["base"]) if shot and lm_name not in registered else None
            )
            return entry is not None and not entry.group

        if all(local(n) for n in names):
            return _manager(include_paths, include_defaults=False)[0]
    return _manager(include_paths)[0]


def resolve_tasks(
    names: list[str], include_paths: tuple[str, ...]
) -> tuple[Any, list[str | dict[str, Any]]]:
    """The task manager and what lm-eval loads for each of `names`, or a one-line ConfigError
    (a task listed twice, an unknown name, an include path that is not a folder). Indexes task
    YAMLs only, no dataset is loaded: `harness plan` runs it offline, `TaskRunner` before
    loading the datasets, so both reject the same input with the same line."""
    seen = set()
    for name in names:
        if name in seen:
            raise ConfigError(f"eval.tasks: task '{name}' is listed twice")
        seen.add(name)
    tm = _manager_for(list(names), tuple(include_paths))
    return tm, [_spec(name, tm) for name in names]


class TaskRunner:
    """Scores a fixed list of tasks; build once, call `evaluate` per checkpoint."""

    def __init__(
        self,
        tasks: list[str],
        include_paths: tuple[str, ...] = (),
        batch_size: int | str = 32,
        limit: int | None = None,
        chance: dict[str, float] | None = None,
    ):
        from lm_eval.tasks import get_task_dict

        self.names = list(tasks)
        tm, specs = resolve_tasks(self.names, tuple(include_paths))
        try:
            self.task_dict = get_task_dict(specs, tm)
        except Exception as err:  # noqa: BLE001 - dataset download failures surface here
            raise DataError(_failed_task_message(self.names, specs, tm, err)) from None
        for task in _leaf_tasks(self.task_dict).values():
            _build_requests_once(task)
        self.batch_size = batch_size
        self.limit = limit
        self.chance: dict[str, float | None] = dict(chance or {})
        self.last_samples: dict[str, list[dict[str, Any]]] = {}  # per-item logs of the last call

    def info(self) -> dict[str, TaskInfo]:
        out = {}
        for lm_name, task in _leaf_tasks(self.task_dict).items():
            name = to_harness_name(lm_name)
            base, _, setup = name.partition(VARIANT_SEP)
            n_docs = (
                len(task.eval_docs) if task.has_test_docs() or task.has_validation_docs() else None
            )
            if n_docs is not None and self.limit:
                n_docs = min(n_docs, self.limit)
            out[name] = TaskInfo(
                name, base, setup, self._chance_of(name, task), n_docs, task.config.num_fewshot or 0
            )  # lm-eval leaves 0-shot unset
        return out

    def _chance_of(self, name: str, task: Any) -> float | None:
        """The task's chance accuracy: given (the toy tasks'), declared in its YAML
        (`metadata: {chance: x}`), or for a multiple-choice task uniform guessing among each
        scored item's choices, 1/n averaged over items; None for other tasks."""
        if name not in self.chance:
            self.chance[name] = _declared_or_uniform_chance(task, self.limit)
        return self.chance[name]

    def protocols(self, names: list[str]) -> dict[str, dict[str, Any]]:
        """The protocol each of `names` (keys of an `evaluate` result) is scored with: a task's
        from `info`, a group's from its name and the limit (its items are its members')."""
        info = self.info()
        return {
            n: task_protocol(
                vars(info[n]) if n in info else {"setup": n.partition(VARIANT_SEP)[2]},
                self.limit,
            )
            for n in names
        }

    def evaluate(self, model, tokenizer, max_length: int) -> dict[str, dict[str, float]]:
        """{task: {metric: value, metric_stderr: value}} for the model as it is now."""
        from lm_eval.evaluator import evaluate as lm_eval_evaluate

        from eval.continuous import continuous_metrics

        # HFLM around an in-memory model only wraps it: cheap, so built per call.
        lm = _quiet_hflm()(
            pretrained=model,
            tokenizer=tokenizer,
            batch_size=self.batch_size,
            max_length=max_length,
            device=str(next(model.parameters()).device),
        )
        out = lm_eval_evaluate(
            lm=lm,
            task_dict=self.task_dict,
            limit=self.limit,
            log_samples=True,
            bootstrap_iters=100,
            verbosity="WARNING",
        )
        self.last_samples = {to_harness_name(k): v for k, v in out.get("samples", {}).items()}
        results: dict[str, dict[str, float]] = {}
        for lm_name, metrics in out["results"].items():
            name = to_harness_name(lm_name)
            row: dict[str, float] = {}
            for key, val in metrics.items():
                metric, _, filt = key.partition(",")
                if not filt or not isinstance(val, (int, float)):
                    continue
                row[metric] = float(val)
            samples = out.get("samples", {}).get(lm_name)
            if samples:
                row.update(continuous_metrics(samples, tokenizer))
            results[name] = row
        return results


def _declared_or_uniform_chance(task: Any, limit: int | None) -> float | None:
    metadata = getattr(task.config, "metadata", None) or {}
    declared = metadata.get("chance") if isinstance(metadata, dict) else None
    if isinstance(declared, (int, float)) and not isinstance(declared, bool):
        return float(declared)
    if task.config.output_type != "multiple_choice":
        return None
    if not (task.has_test_docs() or task.has_validation_docs()):
        return None
    docs = task.eval_docs
    n = len(docs) if limit is None else min(len(docs), limit)
    if n == 0:
        return None
    odds = [1.0 / len(task.doc_to_choice(docs[i])) for i in range(n)]
    return round(sum(odds) / n, 6)


def _spec(name: str, tm: Any) -> str | dict[str, Any]:
    """What lm-eval loads for harness task `name`: a registered name, or for an unregistered
    `<task>@<N>shot` the base task's full config with num_fewshot and the name overridden."""
    lm_name = to_lm_eval_name(name)
    index = tm.task_index
    if lm_name in index:
        return lm_name
    shot = _SHOT.match(name)
    if shot and shot["base"] in index:
        entry = index[shot["base"]]
        if entry.yaml_path is None or entry.kind.name != "TASK":
            raise ConfigError(
                f"eval.tasks: '{name}': only a single YAML task gets automatic @<N>shot "
                f"variants; '{shot['base']}' is a group or tag - define a variant YAML"
            )
        return str(_variant_yaml(lm_name, Path(entry.yaml_path), int(shot["n"])))
    near = difflib.get_close_matches(lm_name, index, n=5, cutoff=0.6)
    hint = f" (did you mean: {', '.join(to_harness_name(n) for n in near)})" if near else ""
    raise ConfigError(f"eval.tasks: unknown task '{name}'{hint}")


def _build_requests_once(task: Any) -> None:
    """THE shim (the adapter's one use of lm-eval internals): make `task.build_all_requests`,
    which lm-eval's `evaluate` calls on every call, build the prompts once and hand back the
    same Instances with fresh response slots afterwards. Rebuilding them costs more than
    scoring a tiny model; this keeps the adapter ~6x faster than the `lm_eval` command line
    (bench/eval_speed.py).

    lm-eval has no public way to reuse built requests. Not its `cache_requests`: that disk
    cache is keyed by task name and shots only, so a regenerated toy task with the same name
    would be served stale prompts, and it unpickles every call. New lists (not cleared ones)
    keep the previous call's logged samples intact.

    It relies on: `evaluate` calling `task.build_all_requests(**kwargs)` and then reading
    `task.instances`, which returns `task._instances`; Instances having `resps` and
    `filtered_resps`. tests/test_library_shims.py checks each against the installed lm-eval.
    """
    build = task.build_all_requests
    built: dict[str, Any] = {}

    def build_once(**kwargs: Any) -> None:
        key = repr(sorted(kwargs.items()))
        if built.get("key") != key:
            build(**kwargs)
            built.update(key=key, instances=task._instances)
        for inst in built["instances"]:
            inst.resps = []
            inst.filtered_resps = {}
        task._instances = built["instances"]

    task.build_all_requests = build_once


@functools.cache
def _quiet_hflm() -> type:
    """HFLM without its per-request progress bars, which would drown the run's own."""
    from lm_eval.models.huggingface import HFLM

    class QuietHFLM(HFLM):
        def loglikelihood(self, requests, disable_tqdm: bool = False):
            return super().loglikelihood(requests, disable_tqdm=True)

        def loglikelihood_rolling(self, requests, disable_tqdm: bool = False):
            return super().loglikelihood_rolling(requests, disable_tqdm=True)

        def generate_until(self, requests, disable_tqdm: bool = False):
            return super().generate_until(requests, disable_tqdm=True)

    return QuietHFLM


def _leaf_tasks(task_dict: dict) -> dict[str, Any]:
    out = {}
    for key, val in task_dict.items():
        if isinstance(val, dict):
            out.update(_leaf_tasks(val))
        else:
            out[getattr(key, "group_name", key) if not isinstance(key, str) else key] = val
    return out


_VARIANT_DIR: list[tempfile.TemporaryDirectory] = []  # held for the process; removed at exit


def _variant_dir() -> Path:
    """This process's folder of generated variant YAMLs."""
    if not _VARIANT_DIR:
        _VARIANT_DIR.append(tempfile.TemporaryDirectory(prefix="harness-lm-eval-variants-"))
    return Path(_VARIANT_DIR[0].name)


def _variant_yaml(lm_name: str, base_yaml: Path, num_fewshot: int) -> Path:
    """A task YAML deriving `lm_name` from the base task's YAML with another shot count. The base
    file is included, not copied: its relative `!function` and `include` paths keep working.
    A `tag` of the base does not make the variant a member: lm-eval drops tags when it builds a
    task from a file, and the file is never indexed."""
    path = _variant_dir() / f"{lm_name}.yaml"
    path.write_text(
        yaml.safe_dump(
            {"include": str(base_yaml.resolve()), "task": lm_name, "num_fewshot": num_fewshot},
            sort_keys=False,
        )
    )
    return path


def _dataset_of(spec: str | dict[str, Any], tm: Any) -> tuple[str | None, str | None]:
    """(dataset_path, dataset_name) a task spec names in its YAML; (None, None) for groups,
    tags and tasks without a YAML."""
    entry = tm.task_index.get(spec) if isinstance(spec, str) else None
    path = Path(entry.yaml_path) if entry is not None and entry.yaml_path else Path(str(spec))
    if entry is not None and entry.kind.name != "TASK" or not path.is_file():
        return None, None
    try:
        keys = read_task_yaml(path)
    except TaskYamlError:  # only names the dataset in a message: unknown then
        return None, None
    return keys.get("dataset_path"), keys.get("dataset_name")


def _failed_task_message(names: list[str], specs: list, tm: Any, err: Exception) -> str:
    """The one-line error for tasks that could not be built. Which task failed is found by
    building each alone (on this error path only), its dataset from its YAML."""
    from lm_eval.tasks import get_task_dict

    for name, spec in zip(names, specs, strict=True):
        try:
            get_task_dict([spec], tm)
        except Exception as one:  # noqa: BLE001 - the same failure, now attributed to one task
            return _load_error_message(one, name, *_dataset_of(spec, tm))
    return _load_error_message(err, None, None, None)


def _load_error_message(
    err: Exception, task: str | None, path: str | None, name: str | None
) -> str:
    text = str(err).splitlines()[0] if str(err) else type(err).__name__
    offline = (
        os.environ.get("HF_DATASETS_OFFLINE") == "1" or os.environ.get("HF_HUB_OFFLINE") == "1"
    )
    where = " while offline" if offline else ""
    if path is None:
        what = f"task '{task}'" if task else "the tasks"
        return (
            f"eval.tasks: {what} could not be built{where} ({text}); if a dataset is missing, "
            "pre-cache it on a machine with hub access and "
            "copy ~/.cache/huggingface (or set HF_HOME)"
        )
    args = f"'{path}'" + (f", '{name}'" if name else "")
    return (
        f"eval.tasks: dataset {path}{f' ({name})' if name else ''} for task '{task}' "
        f"could not be loaded{where} ({text}); pre-cache it on a machine with hub access: "
        f'python -c "import datasets; datasets.load_dataset({args})", '
        "then copy ~/.cache/huggingface "
        "here (or point HF_HOME at it)"
    )
