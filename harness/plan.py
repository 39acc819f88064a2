"""`harness plan`: what `harness run` would do, without training. It makes the checks `run`
makes before training (through the same functions), then prints one row per run (size,
parameters, tokens, FLOPs, GPU-hours, steps, checkpoints to evaluate, and train / resume /
skip), each run's mix with the tokens available and epochs per source (a warning above
`REPEAT_WARN_EPOCHS`), the compute to run, and for a SLURM launcher the sbatch parameters of
the array job of the pending runs, readable where sbatch is absent. Nothing remote is loaded.

Parameter counts come from the model built on PyTorch's meta device (shapes only, no memory),
so they are the counts the run will record; the vocabulary is the tokenizer config's size
(a trained BPE has exactly that many tokens; a pretrained one is looked up in the local cache).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from common.errors import DataError, HarnessError
from common.record import RunRecord
from harness.backfill_hint import missing_tasks
from harness.cli_checks import (
    CONF_DIR,
    as_dict,
    check_group_overrides,
    check_override_keys,
    check_resolved_paths,
    die,
    guard,
    hydra_argv,
    searchpath,
)
from harness.data_budget import (
    REMOTE,
    cached_tokenizer_size,
    epochs,
    format_epochs,
    remote_sources,
    repetition_warnings,
)
from harness.data_prep import available_tokens
from harness.identity import run_id
from harness.run_setup import check_tasks, plan_steps
from harness.slurm_check import check_cluster_launcher
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
    "gpu_h",
    "steps",
    "eval_at",
    "action",
)

# The throughput behind the GPU-hour estimate (an assumption, said in the output): 35% MFU,
# i.e. 6*N*D FLOPs at 35% of an H100/H200 SXM's nominal dense bf16 peak of 989 TFLOP/s. The
# project's GPU anchor (../shared/anchors, H200, seq 1024, bf16, torch.compile) measured
# 0.35-0.41 for 77M-411M LLaMA models; small models with a 50k vocabulary ran at 0.17-0.27, so
# the smallest rungs take longer than estimated.
ASSUMED_MFU = 0.35
ASSUMED_PEAK_FLOPS = 989e12
THROUGHPUT_NOTE = (
    f"an assumed {ASSUMED_MFU:.0%} MFU of {ASSUMED_PEAK_FLOPS / 1e12:.0f} TFLOP/s "
    "(H100/H200 SXM dense bf16 peak), one GPU"
)


def gpu_hours(flops: float) -> float:
    return flops / (ASSUMED_MFU * ASSUMED_PEAK_FLOPS) / 3600


def _vocab(tok: TokenizerSpec) -> int | None:
    # a pretrained tokenizer only from the local cache: not cached, the row says '?'
    return tok.vocab_size if tok.kind != "pretrained" else cached_tokenizer_size(tok)


def _stats(spec: RunSpec) -> ModelStats | None:
    vocab = _vocab(spec.tokenizer)
    if vocab is None:
        return None
    import torch

    with torch.device("meta"):
        return model_stats(build_model(spec.model, vocab, seed=spec.seed))


def _action(spec: RunSpec, out_root: Path, rid: str, rec: RunRecord | None) -> str:
    """What `harness run` would do with the run `rid` whose record (None: none yet) is `rec`."""
    path = run_dir(out_root, rid)
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


def _plan_run_id(spec: RunSpec) -> str | None:
    """The run id, or None where it needs a remote dataset's fingerprint that cannot be had
    offline (plan never fails for want of the hub; `run` on the cluster resolves it)."""
    try:
        return run_id(spec)
    except DataError:
        if remote_sources(spec):
            return None
        raise


def plan_row(spec: RunSpec, out_root: Path) -> dict[str, Any]:
    """One row of the plan: what the run is and what `harness run` would do with it. A run to
    train meets the checks `run` makes before training (data, task names, include paths), so
    plan rejects what run rejects, with the same line; nothing remote is loaded."""
    rid = _plan_run_id(spec)
    rec = read_record(run_dir(out_root, rid)) if rid else None
    known = rec.model if rec is not None else None
    stats = (
        ModelStats(int(known.n_params), int(known.n_params_nonembedding))
        if known is not None and known.n_params and known.n_params_nonembedding is not None
        else _stats(spec)
    )
    action = _action(spec, out_root, rid, rec) if rid else "train? (id needs the remote dataset)"
    row: dict[str, Any] = {
        "run_id": rid or "?",
        "size": spec.model.name,
        "mix": spec.mix.name,
        "seed": spec.seed,
        "action": action,
        "weights": dict(spec.mix.weights),
        "n_tokens": None,
        "flops_n": None,
    }
    available = (
        rec.data.available_tokens
        if rec is not None and rec.is_complete and rec.data.available_tokens
        else available_tokens(spec)
    )
    if not action.startswith("skip"):
        check_tasks(spec)
    row["available"] = available
    if stats is None:
        row.update(
            params="?", non_emb="?", tokens="?", flops="?", gpu_h="?", steps="?", eval_at="?"
        )
        return row
    sp = plan_steps(spec, stats.n_params)
    flops = training_flops(stats.n_params, sp.n_tokens)
    row.update(
        params=f"{stats.n_params:,}",
        non_emb=f"{stats.n_params_nonembedding:,}",
        tokens=f"{sp.n_tokens:,}",
        flops=f"{flops:.2e}",
        gpu_h=f"{gpu_hours(flops):.3g}",
        steps=f"{sp.total_steps:,}",
        eval_at=f"{len(sp.eval_steps)}: " + ",".join(map(str, sp.eval_steps)),
        n_tokens=sp.n_tokens,
        flops_n=flops,
    )
    return row


def data_line(row: dict[str, Any]) -> tuple[str, dict[str, float | None]]:
    """Per source of the run's mix: weight x tokens / tokens available = epochs (and those
    epochs, for the repetition warning)."""
    reps: dict[str, float | None] = (
        epochs(row["weights"], row["n_tokens"], row["available"])
        if row["n_tokens"] is not None
        else {n: None for n in row["weights"]}
    )
    parts = []
    for name, w in sorted(row["weights"].items()):
        avail = row["available"].get(name)
        shown = f"{avail:,}" if avail is not None else REMOTE
        if row["n_tokens"] is None:
            parts.append(f"{name} {w:.2f} of {shown}")
        else:
            parts.append(
                f"{name} {w:.2f} x {row['n_tokens']:,} / {shown} = "
                f"{format_epochs(reps[name])} epochs"
            )
    return f"  {row['run_id']}  {row['mix']}: " + "; ".join(parts), reps


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

    args = [a for a in args if a != "--no-wait"]  # plan takes `run`'s arguments as they are
    check_group_overrides(args)
    guard(lambda: check_cluster_launcher(args))
    check_override_keys("config", args)
    check_resolved_paths("config", args)
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

        from harness.coverage import warn_uncovered
        from harness.tracking import make_tracker

        try:
            spec = run_spec(cfg)
            # as `run` does before launching (the tracker is built, nothing is logged)
            make_tracker(as_dict(cfg.logger), Path(cfg.out_root))
            _PLAN_ROWS.append(plan_row(spec, Path(cfg.out_root)))
            warn_uncovered(spec)  # after the row: a bad corpus is one error line, no warning
        except HarnessError as err:
            die(str(err))

    with tempfile.TemporaryDirectory() as tmp:  # Hydra's own output folders go nowhere
        sys.argv = [
            "harness plan",
            *hydra_argv(
                local,
                f"hydra.sweep.dir={tmp}",
                f"hydra.run.dir={tmp}",
                "hydra/job_logging=disabled",
                "hydra/hydra_logging=disabled",
            ),
        ]
        job()
    print_plan(_PLAN_ROWS, launcher)


def print_plan(rows: list[dict[str, Any]], launcher: dict[str, Any] | None) -> None:
    """The table, each run's data (weights, tokens available, epochs) with a warning line per
    source repeated too often, the counts, the compute estimate and the sbatch preview."""
    print(format_table(rows))
    print("\ndata (source weight x tokens / tokens in its train split = epochs):")
    warnings = []
    for row in rows:
        line, reps = data_line(row)
        print(line)
        warnings += repetition_warnings(row["run_id"], reps)
    for line in warnings:
        print(line)
    actions = [r["action"].split(" ")[0] for r in rows]
    counts = [f"{actions.count(a)} to {a}" for a in ("train", "resume", "skip") if a in actions]
    if "train?" in actions:
        counts.append(f"{actions.count('train?')} to train unless complete (id needs the data)")
    print("\n" + ", ".join(counts))
    todo = [r for r in rows if not r["action"].startswith("skip")]
    known = [r["flops_n"] for r in todo if r["flops_n"] is not None]
    if known:
        flops = sum(known)
        print(
            f"compute to run: {flops:.2e} FLOPs (6*N*D), about {gpu_hours(flops):,.3g} GPU-hours "
            f"at {THROUGHPUT_NOTE}"
            + (
                f" ({len(todo) - len(known)} run(s) of unknown size left out)"
                if len(known) < len(todo)
                else ""
            )
        )
    elif todo:
        print(
            "compute to run: unknown (model sizes need the pretrained tokenizer, "
            "not in the local Hugging Face cache)"
        )
    if launcher is not None:
        if not todo:
            print("\nSLURM: nothing to submit (every run is complete)")
            return
        print(
            f"\nSLURM: one array job of {len(todo)} task(s), the runs to train or resume "
            "(complete runs are not submitted; not submitted now):"
        )
        print("\n".join(sbatch_preview(launcher, len(todo))))


def _launcher_config(args: list[str]) -> dict:
    """The resolved hydra.launcher node of the first config of the sweep (no SLURM needed)."""
    from hydra import compose, initialize_config_dir

    from harness.overrides import first_choice, split_override

    first = []
    for arg in args:
        parts = split_override(arg)
        if parts is not None:
            first.append(f"{parts[0]}{parts[1]}={first_choice(parts[2])}")
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(
            config_name="config", overrides=[*first, searchpath()], return_hydra_config=True
        )
    return as_dict(cfg.hydra.launcher)
