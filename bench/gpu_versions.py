"""The GPU check's first phase (bench/gpu_check.py): what this Python has, in seconds.

    python3 bench/gpu_versions.py [--out versions.json]

Prints one line each: Python, torch (and its CUDA), transformers, datasets, pyarrow, fsspec,
lm_eval, hydra-core, the card's name; then imports every module the check's later phases
import (the harness CLI and runner, lm-eval's evaluator and HF model class, pytest) and builds
a small `datasets.Dataset` (pyarrow underneath). On a lent machine the carried wheels
(`make gpu-check-device`) meet the image's own packages here first: a wheel that does not fit
fails in seconds, by name, before any compile. Exit 0 when every import works (CUDA or not:
the caller decides), 3 when one fails.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import traceback
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DISTS = ("torch", "transformers", "datasets", "pyarrow", "fsspec", "lm_eval", "hydra-core")
# what the later phases import: the harness run, the bench, the gpu tests, lm-eval scoring
MODULES = (
    "torch",
    "transformers",
    "datasets",
    "hydra",
    "harness.cli",
    "harness.runner",
    "eval.lm_eval_runner",
    "lm_eval.evaluator",
    "lm_eval.tasks",
    "lm_eval.models.huggingface",
    "bench.train_throughput",
    "pytest",
)
# datasets 5.2.0 declares pyarrow>=24.0.0; `make gpu-check-device` installs it with --no-deps
# beside the image's own pyarrow (a pyarrow wheel, ~40 MB, would not fit the carried folder)
PYARROW_MIN = (24, 0)


def version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _major_minor(text: str | None) -> tuple[int, ...]:
    parts = []
    for p in (text or "0").split(".")[:2]:
        digits = "".join(c for c in p if c.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)


def pyarrow_note(pyarrow: str | None, datasets: str | None) -> str | None:
    """A warning line when pyarrow is older than datasets declares (None when it is not)."""
    if _major_minor(pyarrow) >= PYARROW_MIN:
        return None
    return (
        f"warning: pyarrow {pyarrow or 'MISSING'} is older than the {PYARROW_MIN[0]} that "
        f"datasets {datasets} declares; the check goes on (a small Dataset below says whether "
        "it works); if a later phase fails in datasets, carry a pyarrow wheel for this Python "
        "in the wheel folder (README: The GPU check)"
    )


def report() -> dict[str, Any]:
    out: dict[str, Any] = {"python": sys.version.split()[0]}
    for dist in DISTS:
        out[dist] = version(dist)
        print(f"{dist}: {out[dist] or 'MISSING'}", flush=True)
    note = pyarrow_note(out["pyarrow"], out["datasets"])
    out["pyarrow_ok"] = note is None
    if note:
        print(note, flush=True)
    failed: dict[str, str] = {}
    for mod in MODULES:
        try:
            importlib.import_module(mod)
        except Exception as e:  # noqa: BLE001 - every failing import is reported, by name
            failed[mod] = f"{type(e).__name__}: {e}"
            print(f"error: import {mod}: {failed[mod]}", flush=True)
            traceback.print_exc(limit=-3)
    if "datasets" not in failed:
        try:
            import datasets

            ds = datasets.Dataset.from_list([{"text": "a b", "n": 1}, {"text": "c", "n": 2}])
            assert ds.map(lambda r: {"m": r["n"] * 2})["m"] == [2, 4]
            out["datasets_smoke"] = "ok"
        except Exception as e:  # noqa: BLE001
            failed["datasets (Dataset.from_list + map)"] = f"{type(e).__name__}: {e}"
            print(f"error: datasets with pyarrow {out['pyarrow']}: {e}", flush=True)
    import torch

    out["torch_cuda"] = torch.version.cuda
    out["cuda"] = torch.cuda.is_available()
    out["card"] = torch.cuda.get_device_name() if out["cuda"] else None
    out["device_count"] = torch.cuda.device_count() if out["cuda"] else 0
    print(f"torch CUDA: {out['torch_cuda']}; card: {out['card'] or 'none (no CUDA)'}", flush=True)
    out["import_errors"] = failed
    print("imports: " + ("ok" if not failed else f"{len(failed)} failed"), flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    out = report()
    if args.out:
        from common.atomic import write_text

        write_text(args.out, json.dumps(out, indent=1))
    return 3 if out["import_errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
