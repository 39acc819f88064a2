"""The checks every `harness` command makes on its arguments before Hydra runs (and so
before Hydra writes a log folder): config groups and keys that exist, names that stay inside
outputs/, interpolations that resolve. `cli.py` dispatches, `plan.py` plans; both call these.
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONF_DIR = ROOT / "conf"
# Cluster presets (group `cluster`, `+cluster=<name>`) live beside the cluster scripts.
SEARCHPATH = f"hydra.searchpath=[file://{ROOT / 'slurm'}]"


def die(msg: str, code: int = 2) -> None:
    print(f"error: {msg}", file=sys.stderr)
    raise SystemExit(code)


def _group_folder(group: str) -> Path:
    return CONF_DIR / group if group != "cluster" else ROOT / "slurm" / "cluster"


def group_options(group: str) -> list[str] | None:
    """Options of a config group (a folder of conf/), or None if `group` is not one."""
    folder = _group_folder(group)
    if not folder.is_dir():
        return None
    return sorted(p.stem for p in folder.glob("*.yaml"))


def configures_hydra(group: str) -> bool:
    """Whether a config group's options are `# @package hydra...` (Hydra's own settings, like
    the cluster presets): they compose only beside the Hydra groups they extend."""
    folder = _group_folder(group)
    return folder.is_dir() and any(
        p.read_text().lstrip().startswith("# @package hydra") for p in folder.glob("*.yaml")
    )


def _check_sweep_names(value: str) -> None:
    """sweep_name names a folder (outputs/<sweep_name>): one with a path separator or `..`
    would write outside it, Hydra's own log folder first, so it is refused before Hydra runs."""
    from common.errors import ConfigError
    from harness.config import check_name

    for v in value.split(","):
        try:
            check_name("sweep_name", v)
        except ConfigError as err:
            die(str(err))


def check_group_overrides(args: list[str]) -> None:
    """Fail fast, in one line, on `group=option` naming an option that does not exist."""
    for arg in args:
        if "=" not in arg or arg.startswith("-"):
            continue
        key, _, value = arg.lstrip("+~").partition("=")
        if key == "sweep_name":  # before Hydra makes its output folder from it
            _check_sweep_names(value)
        _check_duplicate_keys(key, value)
        if key.startswith("hydra/launcher"):
            options = group_options("hydra/launcher")
            options = sorted(set(options or []) | {"basic", "submitit_local", "submitit_slurm"})
        else:
            options = group_options(key)
        if options is None or "(" in value or value in ("null", ""):
            continue
        for v in value.split(","):
            if v not in options:
                die(f"{key}: unknown {key} '{v}' (known: {', '.join(options)})")


def _check_duplicate_keys(key: str, value: str) -> None:
    """`data.weights={toyworld:0.5,toyworld:0.3}`: Hydra's parser keeps the last value, so a
    mix naming one source twice would be silently merged; refuse it instead."""
    value = value.strip()
    if not (value.startswith("{") and value.endswith("}")):
        return
    depth, start, seen = 0, 1, set()
    for i, ch in enumerate(value[1:-1] + ",", start=1):
        depth += ch in "{[(" and 1 or (ch in "}])" and -1 or 0)
        if ch == "," and depth == 0:
            name = value[start:i].partition(":")[0].strip().strip("'\"")
            if name and name in seen:
                die(f"{key}: '{name}' is named twice in {value}")
            seen.add(name)
            start = i + 1


def compose_raw(config_name: str, overrides: list[str]):
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            return compose(config_name=config_name, overrides=[*overrides, SEARCHPATH])
    except (HydraException, OmegaConfBaseException) as err:
        die(str(err).splitlines()[0])


def _is_group(key: str) -> bool:
    return "/" in key or ("." not in key and group_options(key) is not None)


def check_override_keys(config_name: str, overrides: list[str]) -> None:
    """One line with a close match for an unknown key: compose one config of the sweep (group
    choices only, first value of each list) and look every `key=value` up in it."""
    from harness.overrides import check_keys, first_choice, split_override

    groups, keys = [], []
    for arg in overrides:
        parts = split_override(arg)
        if parts is not None and _is_group(parts[1]):
            groups.append(f"{parts[0]}{parts[1]}={first_choice(parts[2])}")
        else:
            keys.append(arg)
    base = compose_raw(config_name, groups)
    guard(lambda: check_keys(base, keys))


def compose(config_name: str, overrides: list[str]):
    check_override_keys(config_name, overrides)
    return compose_raw(config_name, overrides)


def guard(fn: Callable[[], object]) -> None:
    """Run `fn`, turning the harness's own errors into one line and exit code 2."""
    from common.errors import HarnessError

    try:
        fn()
    except HarnessError as err:
        die(str(err))


def check_resolved_paths(config_name: str, overrides: list[str]) -> None:
    """`sweep_name` and `out_root` as Hydra will resolve them, interpolations included
    (`sweep_name='${oc.env:X}'`), checked before Hydra makes its first folder from them: a
    name that resolves to `../..` would otherwise have its log folder written outside
    outputs/ before the run's own check refuses it. One config per value of each (a sweep
    list `a,b` gives two); sweep functions (`choice(...)`) are left to the run's check."""
    from omegaconf.errors import OmegaConfBaseException

    from common.errors import ConfigError
    from harness.config import check_name
    from harness.overrides import choices, first_choice, split_override

    fixed, paths = [], {}
    for arg in overrides:
        parts = split_override(arg)
        # Hydra's own settings are not needed to resolve the two paths (and a group packaged
        # under hydra, like the cluster presets, composes only beside the launcher it extends)
        if parts is None or parts[1].startswith(("hydra.", "hydra/")) or configures_hydra(parts[1]):
            continue
        prefix, key, value = parts
        if key in ("sweep_name", "out_root"):
            if "(" in value:
                return
            paths[key] = [f"{prefix}{key}={v}" for v in choices(value)]
        else:
            fixed.append(f"{prefix}{key}={first_choice(value)}")
    if not any("$" in a for a in overrides) and not paths:
        return  # nothing interpolated, nothing named: the defaults are known to be fine
    for combo in itertools.product(*paths.values()):
        cfg = compose_raw(config_name, [*fixed, *combo])
        try:
            sweep, out_root = cfg.sweep_name, cfg.out_root
        except OmegaConfBaseException as err:  # an interpolation that does not resolve
            die(f"{', '.join(combo) or 'out_root'}: {str(err).splitlines()[0]}")
        try:
            check_name("sweep_name", sweep)
        except ConfigError as err:
            die(f"{err} (as resolved from {', '.join(combo) or 'the config'})")
        if not isinstance(out_root, str) or not out_root.strip() or "\0" in out_root:
            die(f"out_root: must be a folder path, got {out_root!r}")
