"""`harness plan`: what `harness run` would do, without training. One row per run (size,
parameters, tokens, FLOPs, steps, checkpoints to evaluate, and train / resume / skip), and
for a SLURM launcher the sbatch parameters of the array job, readable where sbatch is absent.

Parameter counts come from the model built on PyTorch's meta device (shapes only, no memory),
so they are the counts the run will record; the vocabulary is the tokenizer config's size
(a trained BPE has exactly that many tokens; a pretrained one is looked up in the local cache).
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Any, cast

from harness.backfill_hint import missing_tasks
from harness.cli_checks import (
    CONF_DIR,
    SEARCHPATH,
    check_group_overrides,
    check_override_keys,
    die,
)
from harness.identity import run_id
from harness.run_setup import plan_steps
from harness.store import read_record, run_dir
from train.model import ModelStats, build_model, model_stats, training_flops
from train.specs import RunSpec, TokenizerSpec

COLUMNS = (
    "run_id",
    "size",
    "mix",
    "seed",
    "params",
    "non_emb",
    "tokens",
    "flops",
    "steps",
    "eval_at",
    "action",
)


@functools.lru_cache(maxsize=8)
def _vocab(tok: TokenizerSpec) -> int | None:
    if tok.kind != "pretrained":
        return tok.vocab_size
    try:  # no download: only a tokenizer already in the local Hugging Face cache
        from transformers import AutoTokenizer

        return len(
            AutoTokenizer.from_pretrained(
                tok.name, local_files_only=True, trust_remote_code=tok.trust_remote_code
            )
        )
    except Exception:  # not cached: the row says '?' rather than guess
        return None


def _stats(spec: RunSpec) -> ModelStats | None:
    vocab = _vocab(spec.tokenizer)
    if vocab is None:
        return None
    import torch

    with torch.device("meta"):
        return model_stats(build_model(spec.model, vocab, seed=spec.seed))


def _action(spec: RunSpec, out_root: Path) -> str:
    path = run_dir(out_root, run_id(spec))
    rec = read_record(path) if path.exists() else None
    if rec is not None and rec.is_complete:
        lacking = missing_tasks(spec, out_root)
        return (
            f"skip (complete; {len(lacking)} task(s) to backfill)" if lacking else "skip (complete)"
        )
    steps = (
        sorted(
            int(p.name.split("_")[1])
            for p in (path / "checkpoints").glob("step_*")
            if p.name.split("_")[1].isdigit()
        )
        if path.exists()
        else []
    )
    return f"resume (from step {steps[-1]})" if steps else "train"


def plan_row(spec: RunSpec, out_root: Path) -> dict[str, Any]:
    """One row of the plan: what the run is and what `harness run` would do with it."""
    rec = read_record(run_dir(out_root, run_id(spec)))
    known = rec.model if rec is not None else None
    stats = (
        ModelStats(int(known.n_params), int(known.n_params_nonembedding))
        if known is not None and known.n_params and known.n_params_nonembedding is not None
        else _stats(spec)
    )
    row: dict[str, Any] = {
        "run_id": run_id(spec),
        "size": spec.model.name,
        "mix": spec.mix.name,
        "seed": spec.seed,
    }
    if stats is None:
        row.update(params="?", non_emb="?", tokens="?", flops="?", steps="?", eval_at="?")
    else:
        sp = plan_steps(spec, stats.n_params)
        row.update(
            params=f"{stats.n_params:,}",
            non_emb=f"{stats.n_params_nonembedding:,}",
            tokens=f"{sp.n_tokens:,}",
            flops=f"{training_flops(stats.n_params, sp.n_tokens):.2e}",
            steps=f"{sp.total_steps:,}",
            eval_at=f"{len(sp.eval_steps)}: " + ",".join(map(str, sp.eval_steps)),
        )
    row["action"] = _action(spec, out_root)
    return row


def format_table(rows: list[dict[str, Any]]) -> str:
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in COLUMNS}
    lines = ["  ".join(c.ljust(widths[c]) for c in COLUMNS)]
    lines += ["  ".join(str(r[c]).ljust(widths[c]) for c in COLUMNS) for r in rows]
    return "\n".join(lines)


def sbatch_preview(launcher: dict[str, Any], n_runs: int) -> list[str]:
    """The sbatch options the submitit launcher would pass for this sweep's array job (the
    submitit names mapped to sbatch's: timeout_min -> --time, mem_gb -> --mem, ...)."""
    opts = {
        "job-name": launcher.get("name"),
        "partition": launcher.get("partition"),
        "account": launcher.get("account"),
        "qos": launcher.get("qos"),
        "time": launcher.get("timeout_min"),
        "nodes": launcher.get("nodes"),
        "ntasks-per-node": launcher.get("tasks_per_node"),
        "cpus-per-task": launcher.get("cpus_per_task"),
        "gpus-per-node": launcher.get("gpus_per_node") or None,
        "mem": f"{launcher['mem_gb']}GB" if launcher.get("mem_gb") else None,
        "signal": f"USR2@{launcher['signal_delay_s']}" if launcher.get("signal_delay_s") else None,
        "array": f"0-{n_runs - 1}%{launcher.get('array_parallelism') or n_runs}",
    }
    opts.update({str(k): v for k, v in (launcher.get("additional_parameters") or {}).items()})
    lines = [
        f"#SBATCH --{k}" if v is True else f"#SBATCH --{k}={v}"
        for k, v in opts.items()
        if v not in (None, False, "")
    ]
    lines += [f"# setup: {s}" for s in launcher.get("setup") or []]
    lines.append(f"# logs and pickled jobs: {launcher.get('submitit_folder')}")
    return lines


# -- `harness plan`: the sweep expanded by Hydra as for `run`, one row per job --------

_PLAN_ROWS: list[dict] = []


def plan_command(args: list[str]) -> None:
    """`harness plan <run overrides>`: one row per run of the sweep, nothing trained. Hydra
    expands the sweep as for `run`, always with the in-process launcher (nothing submitted)."""
    import tempfile

    import hydra
    from omegaconf import DictConfig

    from harness.config import run_spec

    check_group_overrides(args)
    check_override_keys("config", args)
    slurm = any(a.lstrip("+") == "hydra/launcher=slurm" for a in args)
    launcher = _launcher_config(args) if slurm else None
    local = [
        a
        for a in args
        if not a.lstrip("+").startswith(("hydra/launcher=", "cluster=", "hydra.launcher."))
    ]
    _PLAN_ROWS.clear()

    @hydra.main(config_path=str(CONF_DIR), config_name="config", version_base="1.3")
    def job(cfg: DictConfig) -> None:
        from common.errors import HarnessError

        try:
            _PLAN_ROWS.append(plan_row(run_spec(cfg), Path(cfg.out_root)))
        except HarnessError as err:
            die(str(err))

    with tempfile.TemporaryDirectory() as tmp:  # Hydra's own output folders go nowhere
        sys.argv = [
            "harness plan",
            *local,
            f"hydra.sweep.dir={tmp}",
            f"hydra.run.dir={tmp}",
            "hydra/job_logging=disabled",
            "hydra/hydra_logging=disabled",
            SEARCHPATH,
        ]
        job()
    print(format_table(_PLAN_ROWS))
    actions = [r["action"].split(" ")[0] for r in _PLAN_ROWS]
    print(
        ", ".join(f"{actions.count(a)} to {a}" for a in ("train", "resume", "skip") if a in actions)
    )
    if launcher is not None:
        print(f"\nSLURM: one array job of {len(_PLAN_ROWS)} task(s) (not submitted):")
        print("\n".join(sbatch_preview(launcher, len(_PLAN_ROWS))))


def _launcher_config(args: list[str]) -> dict:
    """The resolved hydra.launcher node of the first config of the sweep (no SLURM needed)."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from harness.overrides import first_choice, split_override

    first = []
    for arg in args:
        parts = split_override(arg)
        if parts is not None:
            first.append(f"{parts[0]}{parts[1]}={first_choice(parts[2])}")
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(
            config_name="config", overrides=[*first, SEARCHPATH], return_hydra_config=True
        )
    return cast(dict[str, Any], OmegaConf.to_container(cfg.hydra.launcher, resolve=True))
