"""What one run is built from, the same on every rank: its data, sampler and model, the step
plan (steps, tokens per step, evaluation steps), and the process-wide lm-eval task runner.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from transformers import LlamaForCausalLM

from common.errors import ConfigError
from eval.lm_eval_runner import TaskRunner, resolve_tasks
from harness.data_prep import RunData, prepare_data, toy_task_dir
from train.mixture import MixtureSampler
from train.model import ModelStats, build_model, model_stats
from train.specs import RunSpec

_TASK_RUNNERS: dict[tuple, TaskRunner] = {}


@dataclass(frozen=True)
class StepPlan:
    total_steps: int
    tokens_per_step: int
    eval_steps: list[int]  # ascending; the last is total_steps

    @property
    def n_tokens(self) -> int:
        return self.total_steps * self.tokens_per_step


@dataclass
class RunSetup:
    data: RunData
    sampler: MixtureSampler
    model: LlamaForCausalLM
    stats: ModelStats
    plan: StepPlan


def eval_schedule(
    total_steps: int, tokens_per_step: int, n_points: int, every_tokens: int | None
) -> list[int]:
    """Steps at which to evaluate (and checkpoint); always ends with the final step.

    Default: `n_points` log-spaced points, each twice the previous (…, T/4, T/2, T).
    """
    if every_tokens:
        every = max(1, round(every_tokens / tokens_per_step))
        steps = set(range(every, total_steps + 1, every))
    else:
        steps = {max(1, round(total_steps / 2**k)) for k in range(n_points)}
    steps.add(total_steps)
    return sorted(steps)


def plan_steps(spec: RunSpec, n_params: int) -> StepPlan:
    """The token budget (fixed, or tokens per parameter) in whole steps of the global batch."""
    tokens_per_step = spec.train.batch_size * spec.train.seq_len
    per_param = spec.train.tokens_per_param
    if not spec.train.tokens and per_param is None:  # run_spec checks: exactly one is set
        raise ConfigError("train.tokens / train.tokens_per_param: set exactly one")
    budget = spec.train.tokens or int((per_param or 0) * n_params)
    total_steps = max(1, math.ceil(budget / tokens_per_step))
    schedule = eval_schedule(
        total_steps, tokens_per_step, spec.eval.num_checkpoints, spec.eval.every_tokens
    )
    return StepPlan(total_steps, tokens_per_step, schedule)


def build_run(spec: RunSpec) -> RunSetup:
    """Data -> sampler -> model -> plan. Everything that can reject the input happens here,
    before the runner writes the first record."""
    data = prepare_data(spec)
    sampler = MixtureSampler(
        data.train_caches,
        spec.mix.weights,
        spec.train.seq_len,
        spec.train.batch_size,
        seed=spec.seed,
    )
    model = build_model(spec.model, len(data.tokenizer), seed=spec.seed)
    stats = model_stats(model)
    return RunSetup(data, sampler, model, stats, plan_steps(spec, stats.n_params))


def _task_sources(spec: RunSpec) -> tuple[tuple[str, ...], dict[str, float]]:
    """The include paths lm-eval indexes for this run (the toy tasks' generated folder added)
    and the chance level of each toy task."""
    include = tuple(spec.eval.include_paths)
    chance: dict[str, float] = {}
    if spec.eval.toy_tasks:
        folder, chance = toy_task_dir(spec)
        include = include + (str(folder),)
    return include, chance


def check_tasks(spec: RunSpec) -> None:
    """Reject unknown task names and bad include paths in one line, loading no dataset: the
    check `task_runner` makes first, run alone by `harness plan`."""
    if spec.eval.tasks:
        resolve_tasks(list(spec.eval.tasks), _task_sources(spec)[0])


def task_runner(spec: RunSpec) -> TaskRunner | None:
    """The process-wide runner for this eval config (task objects are built once)."""
    ev = spec.eval
    if not ev.tasks:
        return None
    include, chance = _task_sources(spec)
    key = (tuple(ev.tasks), include, str(ev.batch_size), ev.limit)
    if key not in _TASK_RUNNERS:
        _TASK_RUNNERS[key] = TaskRunner(list(ev.tasks), include, ev.batch_size, ev.limit, chance)
    return _TASK_RUNNERS[key]
