"""The checks every `harness` command makes on its arguments before Hydra runs (and so
before Hydra writes a log folder): config groups and keys that exist, names that stay inside
outputs/, interpolations that resolve. `cli.py` dispatches, `plan.py` plans; both call these.
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn, cast

ROOT = Path(__file__).resolve().parent.parent
CONF_DIR = ROOT / "conf"
# Cluster presets (group `cluster`, `+cluster=<name>`) live beside the cluster scripts.
SLURM_DIR = ROOT / "slurm"
# A study's own config folders (`--config-dir DIR`, `hydra.searchpath=[file://DIR]`), set
# once per command by `take_config_dirs`: every group lookup and every compose sees them.
_STUDY_DIRS: list[Path] = []


def die(msg: str, code: int = 2) -> NoReturn:
    print(f"error: {msg}", file=sys.stderr)
    raise SystemExit(code)


def take_config_dirs(args: list[str]) -> list[str]:
    """Take a study's config folders out of `args` and remember them: `--config-dir DIR`
    (`-cd DIR`, `--config-dir=DIR`) and the `file://` entries of `hydra.searchpath=[...]`.
    Hydra searches both after conf/ (so a study adds groups and options, and cannot shadow
    the packaged ones); `searchpath()` hands them back to Hydra as one `hydra.searchpath`,
    since Hydra reads only the first such override. A folder that does not exist is one
    line, exit 2 (Hydra would skip a missing search path with a warning)."""
    from harness.overrides import choices

    dirs, rest = [], []
    it = iter(args)
    for arg in it:
        flag, eq, inline = arg.partition("=")
        if flag in ("--config-dir", "-cd"):
            given = inline if eq else next(it, None)
            if given is None:
                die(f"{flag}: needs a folder")
            dirs.append((flag, given))
        elif arg.lstrip("+").startswith("hydra.searchpath="):
            listed = arg.partition("=")[2].strip()
            if not (listed.startswith("[") and listed.endswith("]")):
                die(f"hydra.searchpath: must be a list like [file:///path/to/conf], got {listed}")
            inner = listed[1:-1].strip()
            for entry in choices(inner) if inner else []:
                entry = entry.strip().strip("'\"")
                if entry.startswith("pkg://"):
                    die(f"hydra.searchpath: '{entry}': only folders (file://) are supported")
                dirs.append(("hydra.searchpath", entry.removeprefix("file://")))
        else:
            rest.append(arg)
    _STUDY_DIRS.clear()
    for key, value in dirs:
        folder = Path(value).expanduser().absolute()
        if not folder.is_dir():
            die(f"{key}: no folder '{value}'")
        _STUDY_DIRS.append(folder)
    return rest


def config_dirs() -> list[Path]:
    """Every folder Hydra searches for config groups, in its order: conf/, the study's
    folders, the cluster presets."""
    return [CONF_DIR, *_STUDY_DIRS, SLURM_DIR]


def searchpath() -> str:
    """The one `hydra.searchpath` override every compose and every Hydra run gets."""
    return f"hydra.searchpath=[{','.join(f'file://{d}' for d in config_dirs()[1:])}]"


def _group_folders(group: str) -> list[Path]:
    return [d / group for d in config_dirs() if (d / group).is_dir()]


def group_options(group: str) -> list[str] | None:
    """Options of a config group (a folder of conf/ or of a study's config folder), or None
    if `group` is not one."""
    folders = _group_folders(group)
    if not folders:
        return None
    return sorted({p.stem for f in folders for p in f.glob("*.yaml")})


def configures_hydra(group: str) -> bool:
    """Whether a config group's options are `# @package hydra...` (Hydra's own settings, like
    the cluster presets): they compose only beside the Hydra groups they extend."""
    return any(
        p.read_text().lstrip().startswith("# @package hydra")
        for f in _group_folders(group)
        for p in f.glob("*.yaml")
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


def hydra_error_line(err: Exception) -> str:
    """Hydra's multi-line message as one line: its sentences, without the key/type dump and
    the HYDRA_FULL_ERROR advice."""
    skip = ("full_key:", "object_type=", "reference_type=", "Set the environment", "See https")
    lines = [ln.strip() for ln in str(err).splitlines()]
    return " ".join(ln for ln in lines if ln and not ln.startswith(skip)) or type(err).__name__


def check_override_syntax(args: list[str]) -> None:
    """An override Hydra cannot parse (`train.lr=[1,2`) is one line naming it, exit 2."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    parser = OverridesParser.create()
    for arg in args:
        if arg.startswith("-") or "=" not in arg and not arg.startswith("~"):
            continue
        try:
            parser.parse_override(arg)
        except HydraException as err:
            # `~` or `$` unquoted is a lexer error; quoting the value is the fix
            hint = "; quote the value: key='\"...\"'" if "token recognition" in str(err) else ""
            die(f"{arg}: {hydra_error_line(err)}{hint}")


def replace_mix(args: list[str]) -> list[str]:
    """`data.weights={node: 1.0}` replaces the mix. Hydra would merge the map into the mix's
    weights instead (a new source is refused as 'not in struct', a source left out is kept
    with its old weight), so the override becomes `~data.weights +data.weights={...}`, and
    the mix is named after its sources unless `data.name=` is given. `+data.weights={...}`
    without `~data.weights` would merge silently: refused, with the one-override form."""
    from harness.overrides import split_override

    deleted = "~data.weights" in args
    named = any(a.lstrip("+").startswith("data.name=") for a in args)
    out = []
    for arg in args:
        parts = split_override(arg)
        if parts is None or parts[1] != "data.weights" or parts[0] not in ("", "+"):
            out.append(arg)
            continue
        prefix, _, value = parts
        if prefix == "+" and not deleted:
            die(
                f"+data.weights: would merge {value} into the mix's weights; "
                f"replace the mix with data.weights={value}"
            )
        if prefix == "+":
            out.append(arg)
            continue
        weights = _weights_map(value)
        out += ["~data.weights", f"+data.weights={value}"]
        if not named:
            out.append(f"data.name='{'+'.join(str(k) for k in weights)}'")
    return out


def _weights_map(value: str) -> dict:
    """The map `data.weights={...}` gives, parsed as Hydra will; one line and exit 2 for a
    sweep list, a source named twice or anything that is not a non-empty map. Hydra's parser
    is imported only here: most commands never replace the mix (~0.1 s of imports)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    from harness.overrides import choices

    if len(choices(value)) > 1:
        die(
            f"data.weights: one mix per override, got {value}; sweep mixes with data=a,b "
            "(one YAML per mix in a data/ folder)"
        )
    _check_duplicate_keys("data.weights", value)  # before the parser keeps the last
    try:
        weights = OverridesParser.create().parse_override(f"w={value}").value()
    except HydraException as err:
        die(f"data.weights={value}: {hydra_error_line(err)}")
    if not isinstance(weights, dict) or not weights:
        die(
            f"data.weights: must be a map of source names to weights like {{node: 1.0}}, "
            f"got {value}"
        )
    return weights


def check_group_overrides(args: list[str]) -> None:
    """Fail fast, in one line, on `group=option` naming an option that does not exist."""
    check_override_syntax(args)
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
            return compose(config_name=config_name, overrides=[*overrides, searchpath()])
    except (HydraException, OmegaConfBaseException) as err:
        die(hydra_error_line(err))


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
    # then every override at once, as Hydra will apply them (`+seed=3` on an existing key,
    # `~nosuch`): Hydra's own error, one line; sweep functions and Hydra's settings are left
    # to Hydra, which expands them
    plain = [
        f"{p[0]}{p[1]}={first_choice(p[2])}" if p[2] or "=" in arg else arg
        for arg in keys
        if (p := split_override(arg) or _deletion(arg)) is not None
        and "(" not in p[2]
        and not p[1].startswith(("hydra.", "hydra/"))
    ]
    resolve_all(compose_raw(config_name, groups + plain) if plain else base)


def _deletion(arg: str) -> tuple[str, str, str] | None:
    """`~key` without a value is an override too (split_override wants `=`)."""
    return ("~", arg[1:], "") if arg.startswith("~") and "=" not in arg else None


def resolve_all(cfg) -> None:
    """Resolve every interpolation of the job's config (`train.lr=${nosuch}`): one line
    naming the key, before Hydra runs (Hydra's own settings, resolved by Hydra, left out)."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    try:
        OmegaConf.to_container(cfg, resolve=True)
    except OmegaConfBaseException as err:
        key = getattr(err, "full_key", None)
        die(f"{key or 'config'}: {str(err).splitlines()[0]}")


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


# Hydra's flags that take a value (the next argument, or `--flag=value`)
VALUE_FLAGS = (
    "--cfg",
    "-c",
    "--package",
    "-p",
    "--info",
    "-i",
    "--config-path",
    "-cp",
    "--config-name",
    "-cn",
    "--config-dir",
    "-cd",
)


def hydra_argv(args: list[str], *extra: str) -> list[str]:
    """Hydra's flags first (with their values), then the overrides, `extra` overrides and our
    search path: its argument parser takes the overrides as one contiguous run, so
    `-m a=1 --cfg hydra` and `a=1 -m` work (for `run` and `plan` alike)."""
    flags: list[str] = []
    overrides: list[str] = []
    it = iter(args)
    for a in it:
        if a.startswith("-"):
            flags.append(a)
            if a in VALUE_FLAGS:
                nxt = next(it, None)
                if nxt is not None:
                    (flags if "=" not in nxt else overrides).append(nxt)
        else:
            overrides.append(a)
    return [*flags, *overrides, *extra, searchpath()]


def as_dict(node: Any) -> dict[str, Any]:
    """A config node (a DictConfig) as a plain dict, interpolations resolved."""
    from omegaconf import OmegaConf

    return cast(dict[str, Any], OmegaConf.to_container(node, resolve=True))
