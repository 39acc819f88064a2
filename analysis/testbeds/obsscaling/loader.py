"""Importer for the observational-scaling results (Ruan, Maddison & Hashimoto 2024,
arXiv 2405.10938; ryoungj/ObsScaling @ 4d6e1e43, `eval_results/`).

Raw layout (the upstream folder, or its parent): three CSV files, one row per public base model
(`Model`, the Hugging Face id):

* `base_llm_benchmark_eval.csv`: `Model Family`, `Model Size (B)`, `Pretraining Data Size (T)`,
  `FLOPs (1E21)` and the eight standard benchmarks as fractions (BENCHMARKS);
* `base_llm_emergent_capability_eval.csv`: the tasks known for abrupt rises (EMERGENT), two-shot;
* `base_llm_leaderboard_v2_eval.csv`: Open LLM Leaderboard v2 (LEADERBOARD).

Compact layout (what the project ships): `obsscaling.parquet`, the analysis table itself,
written by `analysis.testbeds.convert`. One run per model: corpus = the model family, size =
"<B>B", n_params = size x 1e9, train_tokens = tokens = data size x 1e12, flops = the file's
FLOPs x 1e21 (upstream's 6ND), final = True, no step. Every score is an accuracy-like fraction
(metric `acc`; exact match counts as accuracy); `ipa_transliterate_2_bleu` (BLEU, 0-100) is not
read. The two-shot emergent tasks are named `<task>@2shot` (task `<task>`, setup `2shot`).

The compact table keeps every model; `load_testbed` leaves out the models without tokens or
FLOPs (they have no place on the compute axis) and says how many, in one warning.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.errors import AnalysisError, warn
from analysis.ingest.table import from_rows, read_compact, task_row, validate

COMPACT = "obsscaling.parquet"
SOURCE = "obsscaling"
BASE = "base_llm_benchmark_eval.csv"
EMERGENT_FILE = "base_llm_emergent_capability_eval.csv"
LEADERBOARD_FILE = "base_llm_leaderboard_v2_eval.csv"
META = ["Model", "Model Family", "Model Size (B)", "Pretraining Data Size (T)", "FLOPs (1E21)"]

#: column -> (task name, chance accuracy); NaN where the chance level is not one number
BENCHMARKS = {
    "MMLU": ("mmlu", 0.25),
    "ARC-C": ("arc_challenge", 0.25),
    "HellaSwag": ("hellaswag", 0.25),
    "Winograd": ("winogrande", 0.5),
    "TruthfulQA": ("truthfulqa", math.nan),
    "GSM8K": ("gsm8k", 0.0),
    "XWinograd": ("xwinograd", 0.5),
    "HumanEval": ("humaneval", 0.0),
}
#: the standard benchmarks' task names: the capability axis is built from these
STANDARD_TASKS = [t for t, _ in BENCHMARKS.values()]
EMERGENT = {
    "parsinlu_qa_2_acc": ("parsinlu_qa", 0.25),
    "word_unscrambling_2_exact_match": ("word_unscrambling", 0.0),
    "ipa_transliterate_2_exact_match": ("ipa_transliterate", 0.0),
    "arithmetic_3ds_2_acc": ("arithmetic_3ds", 0.0),
    "arithmetic_3da_2_acc": ("arithmetic_3da", 0.0),
    "arithmetic_2dm_2_acc": ("arithmetic_2dm", 0.0),
    "arithmetic_2da_2_acc": ("arithmetic_2da", 0.0),
}
EMERGENT_TASKS = [t for t, _ in EMERGENT.values()]
LEADERBOARD = {
    "leaderboard_bbh": ("bbh", math.nan),
    "leaderboard_gpqa": ("gpqa", 0.25),
    "leaderboard_ifeval": ("ifeval", 0.0),
    "leaderboard_math_hard": ("math_hard", 0.0),
    "leaderboard_mmlu_pro": ("mmlu_pro", 0.1),
    "leaderboard_musr": ("musr", math.nan),
}


def load_testbed(path: Path | str) -> pd.DataFrame:
    """The analysis table from the shipped compact file or the raw upstream folder, less the
    models without tokens or FLOPs (one warning says how many)."""
    root = Path(path)
    table = read_compact(root / COMPACT) if (root / COMPACT).is_file() else read_raw(root)
    return with_compute(table)


def with_compute(table: pd.DataFrame) -> pd.DataFrame:
    """`table` less the models whose parameters, tokens or FLOPs are unknown, in one warning."""
    runs = table.drop_duplicates("run_id")
    known = runs[["n_params", "train_tokens", "flops"]].astype(float).notna().all(axis=1)
    lacking = runs.loc[~known, "run_id"].astype(str).tolist()
    if lacking:
        warn(
            f"obsscaling: {len(lacking)} of {len(runs)} models left out: the file gives no "
            f"pretraining tokens or FLOPs for them ({', '.join(lacking[:3])}, ...)"
        )
    return table[~table["run_id"].isin(lacking)].reset_index(drop=True)


def _folder(root: Path) -> Path:
    for cand in (root, root / "eval_results"):
        if (cand / BASE).is_file():
            return cand
    raise AnalysisError(f"path: missing file '{BASE}' in '{root}' (or its eval_results/)")


def _read(folder: Path, name: str, columns: list[str]) -> pd.DataFrame:
    f = folder / name
    if not f.is_file():
        raise AnalysisError(f"path: missing file '{name}' in '{folder}'")
    try:
        df = pd.read_csv(f)
    except (OSError, ValueError) as exc:
        raise AnalysisError(f"{f}: not a readable CSV file ({str(exc).splitlines()[0]})") from exc
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise AnalysisError(f"{f}: missing column '{missing[0]}'")
    dup = df["Model"].duplicated()
    if dup.any():
        raise AnalysisError(f"{f}: model '{df.loc[dup.idxmax(), 'Model']}' appears twice")
    return df


def read_raw(root: Path | str) -> pd.DataFrame:
    """Every model of the three CSV files as analysis-table rows (module doc)."""
    folder = _folder(Path(root))
    base = _read(folder, BASE, META + list(BENCHMARKS))
    extra = [
        (_read(folder, EMERGENT_FILE, ["Model", *EMERGENT]), EMERGENT, "2shot"),
        (_read(folder, LEADERBOARD_FILE, ["Model", *LEADERBOARD]), LEADERBOARD, ""),
    ]
    heads = {r["Model"]: _head(r) for _, r in base.iterrows()}
    rows = _score_rows(base, BENCHMARKS, "", heads)
    for df, cols, setup in extra:
        unknown = sorted(set(df["Model"]) - set(heads))
        if unknown:
            warn(f"{folder.name}: {len(unknown)} models not in {BASE} left out ({unknown[0]}, ...)")
        rows += _score_rows(df[df["Model"].isin(heads)], cols, setup, heads)
    return validate(from_rows(rows), folder.name)


def _num(v) -> float:
    v = pd.to_numeric(v, errors="coerce")
    return float(v) if pd.notna(v) else math.nan


def _head(r: pd.Series) -> dict:
    n = _num(r["Model Size (B)"]) * 1e9
    d = _num(r["Pretraining Data Size (T)"]) * 1e12
    size = _num(r["Model Size (B)"])
    return {
        "run_id": str(r["Model"]),
        "source": SOURCE,
        "sweep": SOURCE,
        "corpus": str(r["Model Family"]),
        "size": f"{size:g}B",
        "seed": pd.NA,
        "n_params": n,
        "n_params_nonembedding": math.nan,
        "train_tokens": d,
        "multiplier": d / (20.0 * n) if n > 0 else math.nan,
        "step": pd.NA,
        "tokens": d,
        "flops": _num(r["FLOPs (1E21)"]) * 1e21,
        "final": True,
    }


def _score_rows(df: pd.DataFrame, cols: dict, setup: str, heads: dict) -> list[dict]:
    rows = []
    for _, r in df.iterrows():
        for col, (task, chance) in cols.items():
            v = _num(r[col])
            if not np.isfinite(v):
                continue  # not evaluated: left out for this task (NaN, never zero)
            name = f"{task}@{setup}" if setup else task
            rows.append(
                task_row(heads[r["Model"]], name, "acc", v, task=task, setup=setup, chance=chance)
            )
    return rows
