"""Downstream tasks scored by lm-eval on an in-memory model.

The `TaskManager` (which indexes every task YAML lm-eval ships, plus our include paths) and
the task objects are built once per process and reused for every checkpoint and run.
Variant names: a task scored under another evaluation setup is registered with lm-eval as
`<task>__<setup>` and reported by the harness as `<task>@<setup>`.
"""

from __future__ import annotations

import difflib
import logging
import os
from dataclasses import dataclass
from typing import Any

from train.errors import ConfigError, DataError

VARIANT_SEP_LM_EVAL = "__"
VARIANT_SEP = "@"


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


_MANAGERS: dict[tuple[str, ...], Any] = {}


def task_manager(include_paths: tuple[str, ...]):
    """A cached `TaskManager` for these include paths (indexing all tasks takes seconds)."""
    from lm_eval.tasks import TaskManager

    key = tuple(sorted(include_paths))
    if key not in _MANAGERS:
        logging.getLogger("lm_eval").setLevel(logging.WARNING)
        _MANAGERS[key] = TaskManager(include_path=list(key) or None)
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
        tm = task_manager(include_paths)
        known = set(tm.all_tasks)
        for name in self.names:
            if to_lm_eval_name(name) not in known:
                near = difflib.get_close_matches(to_lm_eval_name(name), known, n=5, cutoff=0.6)
                hint = f" (did you mean: {', '.join(to_harness_name(n) for n in near)})" if near else ""
                raise ConfigError(f"eval.tasks: unknown task '{name}'{hint}")
        try:
            self.task_dict = get_task_dict([to_lm_eval_name(n) for n in self.names], tm)
        except Exception as err:  # dataset download failures surface here
            raise DataError(_load_error_message(err)) from None
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
                                 task.config.num_fewshot)
        return out

    def evaluate(self, model, tokenizer, max_length: int) -> dict[str, dict[str, float]]:
        """{task: {metric: value, metric_stderr: value}} for the model as it is now."""
        from lm_eval.evaluator import evaluate as lm_eval_evaluate
        from lm_eval.models.huggingface import HFLM

        from eval.continuous import continuous_metrics

        lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=self.batch_size, max_length=max_length,
                  device=str(next(model.parameters()).device))
        quiet = os.environ.get("TQDM_DISABLE")
        os.environ["TQDM_DISABLE"] = "1"  # lm-eval's per-request bars would drown the run's own
        try:
            out = lm_eval_evaluate(lm=lm, task_dict=self.task_dict, limit=self.limit,
                                   log_samples=True, bootstrap_iters=100, verbosity="WARNING")
        finally:
            if quiet is None:
                os.environ.pop("TQDM_DISABLE")
            else:
                os.environ["TQDM_DISABLE"] = quiet
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


def _leaf_tasks(task_dict: dict) -> dict[str, Any]:
    out = {}
    for key, val in task_dict.items():
        if isinstance(val, dict):
            out.update(_leaf_tasks(val))
        else:
            out[getattr(key, "group_name", key) if not isinstance(key, str) else key] = val
    return out


def _load_error_message(err: Exception) -> str:
    text = str(err).splitlines()[0] if str(err) else type(err).__name__
    offline = os.environ.get("HF_DATASETS_OFFLINE") == "1" or os.environ.get("HF_HUB_OFFLINE") == "1"
    how = ("pre-cache it on a connected machine (python -c \"import datasets; "
           "datasets.load_dataset('<dataset>', '<config>')\") and copy ~/.cache/huggingface")
    return f"eval.tasks: a task's dataset could not be loaded ({text}){' while offline' if offline else ''}; {how}"
