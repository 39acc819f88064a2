"""Importer for the Gadre et al. (2024) testbed (open_lm models; `exp_data/` layout).

Layout read: `models/*.json` (hyperparameters + `results[]` validation losses),
`evals/evaluation_<name>_heavy.json` (`eval_metrics.icl`: task -> accuracy fraction),
`eval_metadata.csv` (per task: "#shots", "#datapoints", "Random baseline" in percent).
Each model is one final checkpoint; rows follow `analysis.ingest.table.COLUMNS`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.errors import AnalysisError, warn
from analysis.ingest.table import from_rows, task_row, val_loss_row, validate

#: substring of a `val_data` path -> short readable validation-set name (order matters:
#: the paloma c4 set must be matched before the bare c4 one).
VAL_SETS: list[tuple[str, str]] = [
    ("paloma_dolma_100_programing_languages", "paloma_code"),
    ("paloma_falcon-refinedweb", "paloma_refinedweb"),
    ("paloma_c4_en", "paloma_c4_en"),
    ("paloma_ptb", "paloma_ptb"),
    ("paloma_redpajama", "paloma_redpajama"),
    ("c4_val", "c4_val"),
    ("de-en", "de_en"),
    ("openlm", "openlm"),
]


#: (size, tokens-per-parameter M, quantity) -> published relative error (Gadre et al. 2024,
#: "Language models scale reliably with over-training and on downstream tasks": C4 loss of the
#: 1.4B model at M=640 and the 6.9B model at M=20, and their 17-task average top-1 error;
#: their headline fits are on RedPajama)
PUBLISHED_REL_ERRORS = {
    ("open_lm_1b", 640.0, "loss"): 0.007,
    ("open_lm_7b", 20.0, "loss"): 0.007,
    ("open_lm_1b", 640.0, "top1_error_avg"): 0.036,
    ("open_lm_7b", 20.0, "top1_error_avg"): 0.0005,
}


def val_set_name(path: str) -> str | None:
    """Short name of a validation set from its data path, None when unknown."""
    for key, name in VAL_SETS:
        if key in path:
            return name
    return None


def _read_metadata(path: Path) -> pd.DataFrame:
    meta = pd.read_csv(path)
    need = {"Eval Task", "Random baseline", "#datapoints"}
    if not need <= set(meta.columns):
        raise AnalysisError(f"{path}: missing columns {sorted(need - set(meta.columns))}")
    meta = meta.set_index("Eval Task")
    return meta


def _size_name(model_field: str) -> str:
    # "scaling/open_lm_configs/d=1024_l=24_h=8.json" -> "d=1024_l=24_h=8"; "open_lm_1b" as is
    name = Path(str(model_field)).name
    return name[:-5] if name.endswith(".json") else name


def load_testbed(path: Path | str) -> pd.DataFrame:
    """Read the testbed at `path` (the `exp_data` folder) into the analysis table.

    Corpus = `dataset_name`, size = basename of `hyperparameters.model`,
    multiplier = `chinchilla_multiplier` (tokens / (20 N)), flops = 6 N D with N = `params`.
    Task chance = Random baseline / 100, stderr = sqrt(p (1 - p) / n) with n = #datapoints.
    Malformed model/eval files and NaN scores are skipped with a warning.
    """
    root = Path(path)
    models_dir, evals_dir = root / "models", root / "evals"
    meta_path = root / "eval_metadata.csv"
    if not models_dir.is_dir() or not meta_path.is_file():
        raise AnalysisError(f"{root} is not a Gadre testbed (needs models/ and eval_metadata.csv)")
    meta = _read_metadata(meta_path)
    rows: list[dict] = []
    for mpath in sorted(models_dir.glob("*.json")):
        rows += _model_rows(mpath, evals_dir, meta)
    if not rows:
        raise AnalysisError(f"no usable models in testbed {root}")
    table = validate(from_rows(rows), Path(root).name)  # no local path in report.md
    _warn_missing_tasks(table)
    return table


def _model_rows(mpath: Path, evals_dir: Path, meta: pd.DataFrame) -> list[dict]:
    """The rows of one model: its validation losses, then its task accuracies ([] when the
    model file is unusable, losses only when its eval file is)."""
    try:
        m = json.loads(mpath.read_text())
        base = _run_fields(m)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        warn(f"skipping malformed model file {mpath.name}: {exc!r}")
        return []
    name = base["run_id"]
    losses = []
    for res in m.get("results") or []:
        try:
            vname = val_set_name(str(res["val_data"][0]))
            loss = float(res["loss"])
        except (KeyError, IndexError, TypeError, ValueError):
            continue
        if vname is None or not math.isfinite(loss):
            continue
        losses.append(val_loss_row(base, vname, loss))
    if not losses:
        warn(f"skipping model {name}: no validation losses in {mpath.name}")
        return []
    epath = evals_dir / f"evaluation_{name}_heavy.json"
    try:
        icl = json.loads(epath.read_text())["eval_metrics"]["icl"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        warn(f"model {name}: no usable eval file {epath.name} ({exc!r}); losses only")
        return losses
    return losses + _task_rows(base, icl, meta)


def _run_fields(m: dict) -> dict:
    """The run description of a model file (KeyError/ValueError when it lacks one)."""
    hp = m["hyperparameters"]
    n_params = float(hp["params"])
    tokens = float(hp["tokens"])
    return {
        "run_id": str(m["name"]),
        "source": "gadre2024",
        "sweep": "gadre2024",
        "corpus": str(m["dataset_name"]),
        "size": _size_name(hp["model"]),
        "seed": pd.NA,
        "n_params": n_params,
        "n_params_nonembedding": float(hp.get("params_no_embed", np.nan)),
        "train_tokens": tokens,
        "multiplier": float(hp["chinchilla_multiplier"]),
        "step": pd.NA,
        "tokens": tokens,
        "flops": 6.0 * n_params * tokens,
        "final": True,
    }


def _task_rows(base: dict, icl: dict, meta: pd.DataFrame) -> list[dict]:
    """Accuracy rows for the metadata's tasks present in `icl` (NaN scores skipped)."""
    rows = []
    for task in meta.index:
        if task not in icl:
            # only 46 of the metadata's 51 tasks were run; a task missing from
            # some files but present in others is worth a warning
            continue
        try:
            p = float(icl[task])
        except (TypeError, ValueError):
            p = float("nan")
        if not math.isfinite(p):
            warn(f"model {base['run_id']}: NaN score for task {task}; skipped")
            continue
        n = float(meta.at[task, "#datapoints"])
        rows.append(
            task_row(
                base,
                task,
                "acc",
                p,
                stderr=math.sqrt(max(p * (1 - p), 0.0) / n) if n > 0 else np.nan,
                n_samples=n,
                chance=float(meta.at[task, "Random baseline"]) / 100,
            )
        )
    return rows


def _warn_missing_tasks(table: pd.DataFrame) -> None:
    tasks = table[table["kind"] == "task"]
    if tasks.empty:
        return
    per_task = tasks.groupby("name")["run_id"].nunique()
    n_runs = tasks["run_id"].nunique()
    for task, n in per_task.items():
        if n < n_runs:
            warn(f"task {task} missing from {n_runs - n} of {n_runs} eval files")
