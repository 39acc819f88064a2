"""An analysis output folder is all or nothing.

`analyze` builds its whole output (tables/, figures/, report.md, analysis_config.json) in a
temporary folder inside the target, writes `tables/complete.json` (the list of files) there
last, then swaps the entries into place, `tables/` (holding the marker) last. So:

* a killed or failed analysis leaves the previous complete output, or an output without
  the marker between the swaps (milliseconds), which `require_complete` refuses;
* nothing of the previous analysis survives a re-analysis (its calibration tables, flip
  figures): each entry is replaced whole, never merged;
* a full disk is one `AnalysisError` ("disk full"), the previous output unchanged.

The target may be a sweep's own root (`harness analyze root=DIR`), so only the entries
above are ever replaced; `runs/` and anything else beside them is never touched.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from analysis.errors import AnalysisError
from common.atomic import shareable

#: the entries an analysis owns, in swap order: `tables/` (with the marker) last
ENTRIES = ("figures", "report.md", "analysis_config.json", "tables")
#: the entries of a several-testbed summary (analysis.pipeline.run_sources)
SUMMARY_ENTRIES = ("summary.md", "summary")
MARKER = "complete.json"
_STAGE, _TRASH = ".analysis.tmp-", ".analysis.old-"
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


def _flat(d: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(d, dict):
        return {prefix: d}
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def check_settings(out_dir: Path, settings: dict[str, Any], overwrite: bool = False) -> None:
    """Refuse, in one line, to replace a report made with other analysis settings: `out_dir`'s
    analysis_config.json against `settings` (the resolved config about to be written). Keys
    only one side has (a newer version's) are not a difference; `overwrite` skips the check."""
    path = Path(out_dir) / "analysis_config.json"
    if overwrite or not path.is_file():
        return
    try:
        old = _flat(json.loads(path.read_text()))
    except (OSError, ValueError):
        return  # unreadable: not a report this check can compare; the swap replaces it
    new = _flat(json.loads(json.dumps(settings)))
    diff = [
        f"{k}: {old[k]} -> {new[k]}" for k in sorted(old.keys() & new.keys()) if old[k] != new[k]
    ]
    if diff:
        shown = "; ".join(diff[:3]) + (f"; {len(diff) - 3} more" if len(diff) > 3 else "")
        raise AnalysisError(
            f"out: {out_dir} holds a report made with other analysis settings ({shown}); "
            "write this one elsewhere with out=DIR, or replace it with overwrite=true"
        )


def marker(out_dir: Path) -> Path:
    return Path(out_dir) / "tables" / MARKER


def is_complete(out_dir: Path) -> bool:
    """Whether `out_dir` holds a finished analysis (its completion marker)."""
    return marker(out_dir).is_file()


def require_complete(out_dir: Path) -> None:
    """A one-line `AnalysisError` unless `out_dir` holds a finished analysis."""
    tables = Path(out_dir) / "tables"
    if not tables.is_dir():
        raise AnalysisError(
            f"out: no analysis tables under {tables}; run `harness analyze root={out_dir}` first"
        )
    if not is_complete(out_dir):
        raise AnalysisError(
            f"out: the analysis under {out_dir} is incomplete (no tables/{MARKER}: killed, "
            "failed or from an older version); run `harness analyze` again"
        )


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _sweep_leftovers(out_dir: Path) -> None:
    """Remove the staging and trash folders of analyses that were killed (their process is
    gone); a concurrent analysis's own folders are left alone."""
    for p in out_dir.iterdir():
        for prefix in (_STAGE, _TRASH):
            if p.name.startswith(prefix) and p.is_dir():
                pid = p.name[len(prefix) :].split("-", 1)[0]
                if pid.isdigit() and not _pid_alive(int(pid)):
                    shutil.rmtree(p, ignore_errors=True)


def _write_marker(stage: Path, marker_in: str) -> None:
    files = sorted(str(p.relative_to(stage)) for p in stage.rglob("*") if p.is_file())
    path = stage / marker_in / MARKER
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"files": files}, indent=1) + "\n")


def _swap_in(stage: Path, out_dir: Path, entries: tuple[str, ...], marker_in: str) -> None:
    """Move the staged entries over the old ones; the old marker goes first, the new one
    arrives last (with `marker_in`, the last entry), so no moment shows a mix as complete."""
    trash = Path(tempfile.mkdtemp(prefix=f"{_TRASH}{os.getpid()}-", dir=out_dir))
    try:
        with contextlib.suppress(FileNotFoundError):
            os.replace(out_dir / marker_in / MARKER, trash / MARKER)
        for name in entries:
            old, new = out_dir / name, stage / name
            if old.exists() or old.is_symlink():
                os.replace(old, trash / name)
            if new.exists():
                os.replace(new, old)
    finally:
        shutil.rmtree(trash, ignore_errors=True)


@contextlib.contextmanager
def staged(
    out_dir: Path, entries: tuple[str, ...] = ENTRIES, marker_in: str = "tables"
) -> Iterator[Path]:
    """Yield an empty folder to build the analysis in; on success it replaces `entries`
    of `out_dir` (module doc; the several-testbed summary stages its own two entries). On
    any failure the staging folder is removed, a target folder this call created is
    removed again, and a full disk becomes one line."""
    if entries[-1] != marker_in:
        raise ValueError(f"entries: the marker's folder '{marker_in}' must be swapped in last")
    out_dir = Path(out_dir)
    created = not out_dir.exists()
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        _sweep_leftovers(out_dir)
        stage = Path(tempfile.mkdtemp(prefix=f"{_STAGE}{os.getpid()}-", dir=out_dir))
    except OSError as exc:
        raise AnalysisError(f"out: cannot write to '{out_dir}' ({exc.strerror or exc})") from exc
    shareable(stage, is_dir=True)
    ok = False
    try:
        yield stage
        _write_marker(stage, marker_in)
        _swap_in(stage, out_dir, entries, marker_in)
        ok = True
    except OSError as exc:
        if exc.errno in _DISK_FULL or "No space left on device" in str(exc):
            why = exc.strerror or "No space left on device"
            raise AnalysisError(
                f"out: disk full while writing the analysis into '{out_dir}' ({why}); "
                "the previous output, if any, is unchanged"
            ) from exc
        raise
    finally:
        shutil.rmtree(stage, ignore_errors=True)
        if not ok and created:
            with contextlib.suppress(OSError):
                out_dir.rmdir()  # only when empty
