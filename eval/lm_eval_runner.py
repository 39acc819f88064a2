"""Downstream tasks scored by lm-eval on an in-memory model.

The `TaskManager` (which indexes every task YAML lm-eval ships, plus our include paths), the task
objects and each task's requests are built once per process and reused for every checkpoint and
run. Variant names: a task scored under another evaluation setup is registered with lm-eval as
`<task>__<setup>` and reported by the harness as `<task>@<setup>`; `<task>@<N>shot` works for any
task without a YAML of its own (built from the base task's config with num_fewshot overridden).
"""

from __future__ import annotations

import difflib
import functools
import logging
import os
import re
import traceback
from dataclasses import dataclass
from typing import Any

from common.errors import ConfigError, DataError
from eval.suites.paths import Registered, prepare_include_paths

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


_MANAGERS: dict[tuple[str, ...], tuple[Any, dict[str, Registered]]] = {}


def task_manager(include_paths: tuple[str, ...]) -> Any:
    """A cached `TaskManager` for these include paths (indexing all tasks takes seconds)."""
    return _manager(include_paths)[0]


def _manager(include_paths: tuple[str, ...]) -> tuple[Any, dict[str, Registered]]:
    key = tuple(sorted(include_paths))
    if key not in _MANAGERS:
        from lm_eval.tasks import TaskManager

        # Validated before lm-eval sees them: its indexer skips bad files and lets duplicates win.
        paths, registered = prepare_include_paths(key)
        logging.getLogger("lm_eval").setLevel(logging.ERROR)
        _MANAGERS[key] = (TaskManager(include_path=list(paths) or None), registered)
    return _MANAGERS[key]


class TaskRunner:
    """Scores a fixed list of tasks; build once, call `evaluate` per checkpoint."""

    def __init__(self, tasks: list[str], include_paths: tuple[str, ...] = (), batch_size: int | str = 32,
                 limit: int | None = None, chance: dict[str, float] | None = None):
        from lm_eval.tasks import get_task_dict

        self.names = list(tasks)
        seen = set()
        for name in self.names:
            if name in seen:
                raise ConfigError(f"eval.tasks: task '{name}' is listed twice")
            seen.add(name)
        tm, _ = _manager(tuple(include_paths))
        specs = [_spec(name, tm) for name in self.names]
        try:
            self.task_dict = get_task_dict(specs, tm)
        except Exception as err:  # noqa: BLE001 - dataset download failures surface here
            raise DataError(_load_error_message(err)) from None
        for task in _leaf_tasks(self.task_dict).values():
            _build_requests_once(task)
        self.batch_size = batch_size
        self.limit = limit
        self.chance = dict(chance or {})
        self.last_samples: dict[str, list[dict[str, Any]]] = {}  # per-item logs of the last call

    def info(self) -> dict[str, TaskInfo]:
        out = {}
        for lm_name, task in _leaf_tasks(self.task_dict).items():
            name = to_harness_name(lm_name)
            base, _, setup = name.partition(VARIANT_SEP)
            n_docs = len(task.eval_docs) if task.has_test_docs() or task.has_validation_docs() else None
            if n_docs is not None and self.limit:
                n_docs = min(n_docs, self.limit)
            out[name] = TaskInfo(name, base, setup, self.chance.get(name), n_docs,
                                 task.config.num_fewshot or 0)  # lm-eval leaves 0-shot unset
        return out

    def evaluate(self, model, tokenizer, max_length: int) -> dict[str, dict[str, float]]:
        """{task: {metric: value, metric_stderr: value}} for the model as it is now."""
        from lm_eval.evaluator import evaluate as lm_eval_evaluate

        from eval.continuous import continuous_metrics

        # HFLM around an in-memory model only wraps it: cheap, so built per call.
        lm = _quiet_hflm()(pretrained=model, tokenizer=tokenizer, batch_size=self.batch_size,
                           max_length=max_length, device=str(next(model.parameters()).device))
        out = lm_eval_evaluate(lm=lm, task_dict=self.task_dict, limit=self.limit,
                               log_samples=True, bootstrap_iters=100, verbosity="WARNING")
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
            raise ConfigError(f"eval.tasks: '{name}': only a single YAML task gets automatic @<N>shot "
                              f"variants; '{shot['base']}' is a group or tag - define a variant YAML")
        from lm_eval.tasks._yaml_loader import load_yaml

        cfg = load_yaml(entry.yaml_path, resolve_func=True)
        for key in ("tag", "group", "task_list"):
            cfg.pop(key, None)
        return cfg | {"task": lm_name, "num_fewshot": int(shot["n"])}
    near = difflib.get_close_matches(lm_name, index, n=5, cutoff=0.6)
    hint = f" (did you mean: {', '.join(to_harness_name(n) for n in near)})" if near else ""
    raise ConfigError(f"eval.tasks: unknown task '{name}'{hint}")


def _build_requests_once(task: Any) -> None:
    """Make `task.build_all_requests` (which lm-eval's `evaluate` calls every time) build the
    prompts once and hand back the same Instances with fresh response slots afterwards.

    Not lm-eval's `cache_requests`: its disk cache is keyed by task name and shots only, so a
    regenerated toy task with the same name would be served stale prompts, and it unpickles
    every call. New lists (not cleared ones) keep the previous call's logged samples intact.
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


def _failed_dataset(err: BaseException) -> tuple[str | None, str | None, str | None]:
    """(task, dataset_path, dataset_name) of the task whose construction raised `err`: the
    innermost frame whose `self` is a task config holder (lm-eval loads data in the task's
    constructor), following the exception chain."""
    found: tuple[str | None, str | None, str | None] = (None, None, None)
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        for frame, _ in traceback.walk_tb(err.__traceback__):
            obj = frame.f_locals.get("self")
            cfg = getattr(obj, "config", None) if obj is not None else None
            path = getattr(cfg, "dataset_path", None) if cfg is not None else None
            if isinstance(path, str):
                found = (getattr(cfg, "task", None), path, getattr(cfg, "dataset_name", None))
        err = err.__cause__ or err.__context__
    return found


def _load_error_message(err: Exception) -> str:
    text = str(err).splitlines()[0] if str(err) else type(err).__name__
    offline = os.environ.get("HF_DATASETS_OFFLINE") == "1" or os.environ.get("HF_HUB_OFFLINE") == "1"
    where = " while offline" if offline else ""
    task, path, name = _failed_dataset(err)
    if path is None:
        return (f"eval.tasks: the tasks could not be built{where} ({text}); if a dataset is missing, "
                "pre-cache it on a machine with hub access and copy ~/.cache/huggingface (or set HF_HOME)")
    args = f"'{path}'" + (f", '{name}'" if name else "")
    return (f"eval.tasks: dataset {path}{f' ({name})' if name else ''} for task '{to_harness_name(task or '?')}' "
            f"could not be loaded{where} ({text}); pre-cache it on a machine with hub access: "
            f"python -c \"import datasets; datasets.load_dataset({args})\", then copy ~/.cache/huggingface "
            "here (or point HF_HOME at it)")
