"""A sweep preset's analysis settings travel with its runs (issue 24, item 5).

A preset may carry an `analysis:` block (conf/sweep/demo.yaml: `points: all`). `harness run`
checks it (a bad key fails in one line before any run starts) and, once a run is done,
stores it as `<out_root>/analysis_defaults.json`; `harness analyze root=<out_root>` starts
from those settings instead of conf/analysis/default.yaml's, and `analysis.*` on its command
line still wins. Nothing else reads the file: run ids do not depend on it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from common.atomic import write_json
from common.errors import ConfigError
from harness.cli_checks import as_dict

FILE = "analysis_defaults.json"


def check(settings: dict[str, Any] | None) -> None:
    """A preset's analysis settings as `harness analyze` would read them: a bad key or value
    is a one-line ConfigError."""
    from analysis.config import AnalysisConfig
    from analysis.errors import AnalysisError

    try:
        AnalysisConfig.from_dict(settings or {})
    except AnalysisError as err:
        raise ConfigError(str(err)) from None


def store(out_root: Path, sweep: str, settings: dict[str, Any] | None) -> None:
    """Check `settings` and write them beside the sweep's runs (unchanged file: no write)."""
    if not settings:
        return
    check(settings)
    body = {"sweep": sweep, "analysis": settings}
    path = Path(out_root) / FILE
    if load_body(path) == body:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, body)


def load_body(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def load(root: Path) -> dict[str, Any]:
    """The stored analysis settings of the sweep under `root` ({} when it stored none)."""
    body = load_body(Path(root) / FILE)
    settings = body.get("analysis") if isinstance(body, dict) else None
    return settings if isinstance(settings, dict) else {}


def merged(defaults: dict[str, Any], stored: dict[str, Any], args: list[str]) -> dict[str, Any]:
    """`defaults` (conf/analysis with the command line applied) with `stored` laid over it,
    then the command line's own `analysis.*` values laid over that: the command line wins."""
    from omegaconf import OmegaConf

    base = OmegaConf.create(defaults)
    out = OmegaConf.merge(base, OmegaConf.create(stored))
    for arg in args:
        key = arg.lstrip("+~").partition("=")[0]
        if key.startswith("analysis."):
            path = key[len("analysis.") :]
            OmegaConf.update(out, path, OmegaConf.select(base, path), merge=False)
    return as_dict(out)
