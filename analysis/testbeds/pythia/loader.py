"""Importer for the Pythia evaluations (Biderman et al. 2023; EleutherAI/pythia `evals/pythia-v1`).

Raw layout (the upstream folder): `pythia-<size>[-deduped|-bf16|-<B>MtokBS]/[zero-shot|five-shot/]
<...>_step<N>.json`, lm-eval output with `results.<task>.{acc, acc_stderr, acc_norm, ...}` and
`config.num_fewshot`. Compact layout (what the project ships): `pythia.parquet`, the analysis
table itself, written by `analysis.testbeds.convert`.

Runs: 8 sizes on the Pile (corpus `pile`) and on the deduplicated Pile (`pile_deduped`), sweep
`pythia`; the variants are sweep `pythia:bf16` (1B trained in bf16 instead of fp16) and
`pythia:bs<B>M` (batch of B million tokens instead of 2M), left out of the main groups and
compared run against run. Setup "" is zero-shot, "5shot" five-shot (`config.num_fewshot`).
Tokens = step x tokens per step (2M = 2,097,152 at the standard batch), so a variant with
half the batch reaches the same tokens at twice the steps. The `baseline`/`intervention`
folders (gender-pronoun interventions on the deduplicated runs) and the CrowS-Pairs
bias scores (not accuracies) are not read. The 57 MMLU subjects (`hendrycksTest-*`) become
one task `mmlu`: the mean subject accuracy, with stderr sqrt(sum se^2) / 57.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.errors import AnalysisError, warn
from analysis.ingest.table import from_rows, read_compact, report_partial_tasks, validate

COMPACT = "pythia.parquet"
TOKENS_PER_STEP = 2_097_152  # 1024 sequences x 2048 tokens

#: total and non-embedding parameters (Pythia paper, Table 1; model configs)
PARAMS = {
    "70m": (70_426_624, 18_915_328),
    "160m": (162_322_944, 85_056_000),
    "410m": (405_334_016, 302_311_424),
    "1b": (1_011_781_632, 805_736_448),
    "1.4b": (1_414_647_808, 1_208_602_624),
    "2.8b": (2_775_208_960, 2_517_652_480),
    "6.9b": (6_857_302_016, 6_444_163_072),
    "12b": (11_846_072_320, 11_327_027_200),
}

#: task -> (metric read as accuracy, chance accuracy); other tasks are not read
TASKS = {
    "arc_easy": ("acc", 0.25),
    "arc_challenge": ("acc", 0.25),
    "piqa": ("acc", 0.5),
    "winogrande": ("acc", 0.5),
    "sciq": ("acc", 0.25),
    "logiqa": ("acc", 0.25),
    "wsc": ("acc", 0.5),
    "lambada_openai": ("acc", 0.0),
}
MMLU_PREFIX = "hendrycksTest-"

_RUN = re.compile(r"^pythia-(?P<size>[\d.]+[mb])(?P<var>-deduped|-bf16|-(?P<bs>[\d.]+)MtokBS)?$")
_STEP = re.compile(r"_step(?P<step>\d+)\.json$")
SKIP_FOLDERS = {"baseline", "intervention"}


def load_testbed(path: Path | str) -> pd.DataFrame:
    """Read the Pythia evaluations from the shipped compact file or the raw upstream folder."""
    root = Path(path)
    if (root / COMPACT).is_file():
        return read_compact(root / COMPACT)
    return read_raw(root)


def _evals_dir(root: Path) -> Path:
    for cand in (root, root / "pythia-v1", root / "evals" / "pythia-v1"):
        if any(cand.glob("pythia-*")):
            return cand
    raise AnalysisError(f"{root}: missing folder 'evals/pythia-v1' with pythia-<size> runs")


def read_raw(root: Path | str) -> pd.DataFrame:
    """Parse every `*_step<N>.json` under the run folders into the analysis table."""
    base = _evals_dir(Path(root))
    rows: list[dict] = []
    for run_dir in sorted(p for p in base.glob("pythia-*") if p.is_dir()):
        m = _RUN.match(run_dir.name)
        if not m or m["size"] not in PARAMS:
            warn(f"{run_dir.name}: not a known Pythia run name; skipped")
            continue
        files = [
            f
            for f in sorted(run_dir.rglob("*.json"))
            if not SKIP_FOLDERS & set(f.relative_to(run_dir).parts[:-1])
        ]
        if not files:
            raise AnalysisError(f"{run_dir.name}: no evaluation files (*_step<N>.json)")
        rows += _run_rows(run_dir.name, m, files)
    if not rows:
        raise AnalysisError(f"{base}: no Pythia evaluation files")
    df = pd.DataFrame(rows)
    last = df.groupby("run_id")["step"].transform("max")
    df["final"] = df["step"] == last
    table = validate(from_rows(df), Path(base).name)
    report_partial_tasks(table)
    return table


def _run_rows(run_id: str, m: re.Match, files: list[Path]) -> list[dict]:
    size, var = m["size"], m["var"] or ""
    n, n_ne = PARAMS[size]
    bs = float(m["bs"]) * 1_048_576 if m["bs"] else TOKENS_PER_STEP
    sweep = {"": "pythia", "-deduped": "pythia", "-bf16": "pythia:bf16"}.get(
        var, f"pythia:bs{m['bs']}M"
    )
    corpus = "pile_deduped" if var == "-deduped" else "pile"
    train_tokens = 143_000 * TOKENS_PER_STEP  # every run sees the same ~300B tokens
    head = {
        "run_id": run_id,
        "source": "pythia",
        "sweep": sweep,
        "corpus": corpus,
        "size": size,
        "seed": pd.NA,
        "n_params": float(n),
        "n_params_nonembedding": float(n_ne),
        "train_tokens": float(train_tokens),
        "multiplier": train_tokens / (20.0 * n),
    }
    out = []
    for f in files:
        sm = _STEP.search(f.name)
        if not sm:
            raise AnalysisError(f"{f}: file name does not end in _step<N>.json")
        try:
            doc = json.loads(f.read_text())
            results, shots = doc["results"], int(doc["config"]["num_fewshot"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise AnalysisError(
                f"{f}: missing key 'results' or 'config.num_fewshot' ({exc!r})"
            ) from exc
        step = int(sm["step"])
        tokens = step * bs
        ck = {
            **head,
            "step": step,
            "tokens": tokens,
            "flops": 6.0 * n * tokens,
            "kind": "task",
            "setup": "" if shots == 0 else f"{shots}shot",
        }
        out += _task_rows(ck, results, f)
    return out


def _task_rows(ck: dict, results: dict, f: Path) -> list[dict]:
    rows = []
    setup = ck["setup"]
    for task, (metric, chance) in TASKS.items():
        r = results.get(task)
        if r is None:
            continue
        if metric not in r:
            raise AnalysisError(f"{f.name}: task {task} has no '{metric}'")
        rows.append(
            {
                **ck,
                "name": f"{task}@{setup}" if setup else task,
                "task": task,
                "metric": "acc",
                "value": float(r[metric]),
                "stderr": float(r.get(f"{metric}_stderr", np.nan)),
                "chance": chance,
            }
        )
    subj = [r for t, r in results.items() if t.startswith(MMLU_PREFIX) and "acc" in r]
    if subj:
        acc = float(np.mean([r["acc"] for r in subj]))
        se = math.sqrt(sum(float(r.get("acc_stderr", np.nan)) ** 2 for r in subj)) / len(subj)
        rows.append(
            {
                **ck,
                "name": f"mmlu@{setup}" if setup else "mmlu",
                "task": "mmlu",
                "metric": "acc",
                "value": acc,
                "stderr": se,
                "chance": 0.25,
            }
        )
    return rows
