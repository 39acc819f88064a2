"""The one reader of lm-eval task YAMLs in the harness.

lm-eval reads its task files with `lm_eval.tasks._yaml_loader.load_yaml`, a private name; the
harness reads them itself with the same rules instead, so no private lm-eval name is needed
to look inside a task file (tests/test_library_shims.py checks that both readers agree on the
installed lm-eval):

- `include:` (one path or a list, relative to the including file) is merged recursively,
  the including file's keys winning; an included file's `task_list` is not inherited; a
  file included twice for one task (a cycle, or along two branches) is an error, as in
  lm-eval;
- `!function module.name` is kept as the hook's path (`<folder>/module.name`, what lm-eval's
  reader returns without resolving functions) and never imported: reading a task file runs
  no code. Any other tag is refused (safe loading).

Also the fields lm-eval needs to build a task, checked by the callers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

REQUIRED_FIELDS = ("task", "dataset_path", "output_type", "doc_to_text")
MC_FIELDS = ("doc_to_target", "doc_to_choice")  # multiple_choice tasks also need these


class TaskYamlError(ValueError):
    """A task YAML that does not parse, is not a mapping, or includes in a cycle: `reason`
    says which, and the message names the file as the caller gave it."""

    def __init__(self, path: Path, reason: str):
        super().__init__(f"{path}: {reason}")
        self.reason = reason


def _loader(folder: Path, tags: bool) -> type[yaml.SafeLoader]:
    class Loader(yaml.SafeLoader):
        pass

    if tags:

        def function(loader: yaml.SafeLoader, node: yaml.Node) -> str:
            return str(folder.expanduser() / loader.construct_scalar(node))

        Loader.add_constructor("!function", function)
    return Loader


def read_task_yaml(
    path: str | Path, *, includes: bool = True, tags: bool = True, _seen: set | None = None
) -> dict[str, Any]:
    """The task config in `path`, its includes merged (unless `includes=False`: the file
    alone). `tags=False` refuses `!function` too (a generated, data-only task file).
    TaskYamlError, one line naming the file, for anything unreadable."""
    shown, path = Path(path), Path(path).expanduser().resolve()
    # every file read for one task, as lm-eval counts them: a file included twice (also
    # along two branches) is refused like a cycle, because lm-eval refuses it
    _seen = set() if _seen is None else _seen
    if path in _seen:
        raise TaskYamlError(shown, f"unreadable task YAML (include cycle at {path})")
    try:
        text = path.read_text(encoding="utf-8")
        cfg = yaml.load(text, Loader=_loader(path.parent, tags))  # noqa: S506 - a SafeLoader
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        first = (str(err).splitlines() or [type(err).__name__])[0]
        raise TaskYamlError(shown, f"unreadable task YAML ({first})") from None
    _seen.add(path)
    if not isinstance(cfg, dict):
        raise TaskYamlError(shown, "task YAML is not a mapping")
    if not includes or "include" not in cfg:
        return cfg
    merged: dict[str, Any] = {}
    listed = cfg.pop("include")
    for inc in listed if isinstance(listed, list) else [listed]:
        inc_path = Path(inc) if Path(inc).is_absolute() else path.parent / inc
        try:
            inner = read_task_yaml(inc_path, tags=tags, _seen=_seen)
        except TaskYamlError as err:  # said of the file the caller named
            raise TaskYamlError(shown, err.reason) from None
        inner.pop("task_list", None)  # it lists the included file's own tasks
        merged.update(inner)
    merged.update(cfg)
    return merged
