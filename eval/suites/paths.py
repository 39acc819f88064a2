"""Include paths for lm-eval task YAMLs: resolve, materialise, validate.

Variants of lm-eval's own tasks (eval/suites/core/) include the shipped base YAML and override a
few fields. lm-eval resolves a relative `include:` against the including file's folder, so a
checked-in relative path into site-packages would break with every venv layout. Instead the
variant names its base as `{lm_eval_tasks}/arc/arc_easy.yaml`, and before lm-eval sees the folder
we copy it to a content-keyed temp folder with the placeholder replaced by the absolute path of
the installed lm_eval/tasks (a private folder made per process, never one found by name).
Plain lm-eval never indexes the unmaterialised files (their include does not resolve, so its
indexer skips them), so the variants exist only where a suite names this include path.

Every YAML in our include paths is validated first, because lm-eval's indexer silently skips a
file it cannot parse and lets a later file with the same task name replace an earlier one.
"""

from __future__ import annotations

import atexit
import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from common.errors import ConfigError
from eval.task_yaml import MC_FIELDS, REQUIRED_FIELDS, TaskYamlError, read_task_yaml

PROJECT_ROOT = Path(__file__).resolve().parents[2]
PLACEHOLDER = "{lm_eval_tasks}"
_IGNORE = {"__pycache__", ".ipynb_checkpoints"}


def lm_eval_tasks_dir() -> Path:
    import lm_eval.tasks

    return Path(lm_eval.tasks.__file__).resolve().parent


def resolve_include_path(entry: str) -> Path:
    """An include path as configured: absolute, `~`, or relative to the project root (not the
    CWD, so `eval/suites/core` works from any directory a run is started in)."""
    path = Path(os.path.expanduser(entry))
    if not path.is_absolute():
        path = PROJECT_ROOT / path
    if not path.is_dir():
        raise ConfigError(f"eval.include_paths: '{entry}' is not a directory (resolved to {path})")
    return path.resolve()


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and not _IGNORE.intersection(p.parts))


_MATERIALISED: dict[tuple[str, str], Path] = {}


def _remove_private(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def materialise(root: Path) -> Path:
    """`root` itself, or a copy with the placeholder substituted when any YAML uses it.

    The copy lives in a fresh private folder (mkdtemp: mode 0700, owned by this user, a name
    no one can predict), made once per process and removed at exit. No folder is ever trusted
    by its name: one planted in the shared temp directory under a guessable name is never
    read, so its YAML (e.g. a `!function` hook) cannot run as this user."""
    yamls = [p for p in _files(root) if p.suffix == ".yaml"]
    if not any(PLACEHOLDER in p.read_text(encoding="utf-8") for p in yamls):
        return root
    base = str(lm_eval_tasks_dir())
    digest = hashlib.sha256(base.encode())
    for p in _files(root):
        digest.update(str(p.relative_to(root)).encode() + b"\0" + p.read_bytes() + b"\0")
    key = (str(root), digest.hexdigest())
    if key in _MATERIALISED and _MATERIALISED[key].is_dir():
        return _MATERIALISED[key]
    private = Path(tempfile.mkdtemp(prefix="harness-suite-"))
    atexit.register(_remove_private, private)
    target = private / root.name
    for p in _files(root):
        dest = target / p.relative_to(root)
        dest.parent.mkdir(parents=True, exist_ok=True)
        if p.suffix == ".yaml":
            dest.write_text(
                p.read_text(encoding="utf-8").replace(PLACEHOLDER, base), encoding="utf-8"
            )
        else:
            shutil.copy2(p, dest)
    _MATERIALISED[key] = target
    return target


@dataclass(frozen=True)
class Registered:
    name: str
    source: Path  # the file as configured (not its materialised copy), for messages
    num_fewshot: int | None
    group: bool = False  # a group may name lm-eval's own tasks


def _check(source: Path, cfg: dict) -> str:
    """The task or group name `cfg` registers; ConfigError naming the file and a missing field."""
    if "group" in cfg:
        if not cfg.get("task"):
            raise ConfigError(f"{source}: group YAML missing required field 'task'")
        return str(cfg["group"])
    if "class" in cfg:  # Python-defined task: its fields live in code
        return str(cfg.get("task", source.stem))
    required = REQUIRED_FIELDS + (MC_FIELDS if cfg.get("output_type") == "multiple_choice" else ())
    for field in required:
        if cfg.get(field) in (None, "") and not (
            field == "dataset_path" and cfg.get("custom_dataset")
        ):
            raise ConfigError(f"{source}: task YAML missing required field '{field}'")
    return str(cfg["task"])


def index_include_paths(roots: list[tuple[Path, Path]]) -> dict[str, Registered]:
    """Validate every YAML under each (materialised root, configured root); {name: Registered}.

    One-line ConfigError for a file that does not parse, lacks a required field, or registers a
    name another file in these paths already registers.
    """
    found: dict[str, Registered] = {}
    for root, shown in roots:
        for path in (p for p in _files(root) if p.suffix == ".yaml"):
            source = shown / path.relative_to(root)
            try:
                cfg = read_task_yaml(path)
            except TaskYamlError as err:  # yaml, include and shape errors alike
                reason = err.reason.replace(str(lm_eval_tasks_dir()), PLACEHOLDER)
                raise ConfigError(f"{source}: {reason}") from None
            name = _check(source, cfg)
            if name in found:
                raise ConfigError(
                    f"{source}: task name '{name}' is already registered by {found[name].source}"
                )
            found[name] = Registered(name, source, cfg.get("num_fewshot"), "group" in cfg)
    return found


def prepare_include_paths(
    entries: tuple[str, ...] | list[str],
) -> tuple[tuple[str, ...], dict[str, Registered]]:
    """Resolve, materialise and validate; returns (paths for lm-eval, names they register)."""
    pairs = []
    for entry in entries:
        shown = resolve_include_path(entry)
        pairs.append((materialise(shown), shown))
    registered = index_include_paths(pairs)
    return tuple(str(p) for p, _ in pairs), registered
