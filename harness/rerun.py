"""Reproducing a run: every run directory keeps the command-line overrides that made it
(`overrides.yaml`), and `harness run --from runs/<id>/config.yaml` rebuilds the exact
`RunSpec` from the resolved config saved beside it (no Hydra composition, so later edits to
conf/ cannot change what is rerun)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import yaml

from common.atomic import write_text
from common.errors import ConfigError, HarnessError
from common.log import log
from harness.config import spec_from_dict
from harness.identity import run_id
from harness.store import run_dir
from harness.tracking import Tracker
from train.specs import RunSpec

OVERRIDES_FILE = "overrides.yaml"


def keep_overrides(spec: RunSpec, out_root: Path, overrides: list[str]) -> None:
    """Write the Hydra overrides of the job that made the run into its directory; a later
    relaunch (skip, resume, other task list) leaves them as they were."""
    path = run_dir(out_root, run_id(spec))
    if not path.is_dir() or (path / OVERRIDES_FILE).exists():
        return
    kept = [o for o in overrides if not o.startswith("hydra.searchpath=")]
    write_text(path / OVERRIDES_FILE, yaml.safe_dump(kept, default_flow_style=False))


def launch(spec: RunSpec, out_root: Path, tracker: Tracker | None, overrides: list[str]):
    """`runner.execute`, keeping the overrides beside the run. Input rejected before the run
    started (a bad task name, a missing dataset) leaves no directory behind: a run directory
    without a record would show as a `pending ? ?` row in `harness status` forever."""
    from harness.runner import execute

    path = run_dir(out_root, run_id(spec))
    fresh = not path.exists()
    try:
        return execute(spec, out_root, tracker)
    except HarnessError:
        if fresh and not (path / "record.json").exists():
            shutil.rmtree(path, ignore_errors=True)
        raise
    finally:
        keep_overrides(spec, out_root, overrides)


def spec_from_config(full: dict[str, Any]) -> RunSpec:
    """The `RunSpec` a run directory's config.yaml (`full:` part) describes, checked like a
    composed `harness run` config (harness.config.spec_from_dict): a config.yaml edited by
    hand or received from someone else is refused in one line on a bad value or name."""
    if not isinstance(full, dict):
        raise ConfigError(f"--from: 'full:' is not a mapping (got {type(full).__name__})")
    return spec_from_dict(full)


def _parse(args: list[str]) -> tuple[Path, Path | None]:
    i = args.index("--from")
    if i + 1 >= len(args):
        raise ConfigError("--from: needs a path (runs/<run_id>/config.yaml)")
    path = Path(args[i + 1])
    rest = args[:i] + args[i + 2 :]
    out_root = None
    for arg in rest:
        if arg.startswith("out_root="):
            out_root = Path(arg.partition("=")[2])
        else:
            raise ConfigError(
                f"{arg.partition('=')[0]}: --from reruns a run exactly; only "
                "out_root= may be given with it"
            )
    if path.is_dir():
        path = path / "config.yaml"
    if not path.is_file():
        raise ConfigError(f"--from: no such file '{path}'")
    return path, out_root


def rerun_target(args: list[str]) -> tuple[RunSpec, Path, Path]:
    """(spec, out_root, config path) of `--from runs/<id>/config.yaml [out_root=DIR]`: the
    run the config describes, under the sweep it came from or under out_root."""
    path, out_root = _parse(args)
    body = yaml.safe_load(path.read_text()) or {}
    if "full" not in body:
        raise ConfigError(f"--from: '{path}' has no 'full:' section (not a run's config.yaml)")
    spec = spec_from_config(body["full"])
    rid = run_id(spec)
    if path.parent.parent.name == "runs" and path.parent.name != rid:
        raise ConfigError(
            f"--from: '{path}' describes run {rid}, not {path.parent.name} "
            "(written by another version of the harness?)"
        )
    if out_root is None:
        out_root = (
            path.parent.parent.parent
            if path.parent.parent.name == "runs"
            else Path(f"outputs/{spec.sweep}")
        )
    return spec, out_root, path


def rerun(args: list[str]) -> None:
    """`harness run --from runs/<id>/config.yaml [out_root=DIR]`: the same run id, under the
    sweep the config came from (skipped when complete there) or under out_root."""
    spec, out_root, path = rerun_target(args)
    rid = run_id(spec)
    log(f"rerun {rid} from {path} under {out_root}")
    outcome = launch(spec, out_root, None, ["--from", str(path)])
    if outcome.status == "skipped":
        print(f"run {rid} is complete under {out_root}; give out_root=DIR to rerun it elsewhere")
    elif outcome.status == "failed":
        raise SystemExit(1)


def plan_rerun(args: list[str]) -> None:
    """`harness plan --from runs/<id>/config.yaml [out_root=DIR]`: the row `harness run` with
    the same arguments would act on (train, resume or skip), nothing trained."""
    from harness.plan import format_table, plan_row

    spec, out_root, path = rerun_target(args)
    print(f"rerun of {path} under {out_root}:")
    print(format_table([plan_row(spec, out_root)]))
