"""`harness plan`: the sweep `harness run` would launch, expanded by Hydra exactly as for
`run` but with the in-process launcher, each job printing a row instead of training; with a
SLURM launcher, the sbatch lines of its array job (composed, never submitted)."""

from __future__ import annotations

import sys
from pathlib import Path

from harness.cli import CONF_DIR, SEARCHPATH, _die, check_group_overrides, check_override_keys

_PLAN_ROWS: list[dict] = []


def plan_command(args: list[str]) -> None:
    """`harness plan <run overrides>`: one row per run of the sweep, nothing trained. Hydra
    expands the sweep as for `run`, always with the in-process launcher (nothing submitted)."""
    import tempfile

    import hydra
    from omegaconf import DictConfig

    from harness.config import run_spec
    from harness.plan import plan_row, sbatch_preview

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
            _die(str(err))

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
    from harness.plan import format_table

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
    return OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
