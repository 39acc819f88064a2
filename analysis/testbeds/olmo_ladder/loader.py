"""Importer for the OLMo ladder testbed (Bhagia et al. 2024; allenai/OLMo-ladder).

Raw layout (the upstream folder): `configs/final.json` (size label -> parameter count `n`
and the CSV files it groups) and `ladder-runs/*.csv`, one row per evaluated checkpoint:
`_step`, `throughput/total_tokens`, `eval/<set>-validation/CrossEntropyLoss` for 11 sets and,
per task, `eval/downstream_bpb/<task>_rc_5shot_bpb`, `eval/downstream/<task>_rc_5shot_len_norm`
(`_acc` for BoolQ), `eval/downstream_soft/..._soft`, `eval/downstream_soft_log/..._soft_log`.
Compact layout (what the project ships): `olmo_ladder.parquet`, the analysis table itself,
written by `analysis.testbeds.convert` from the raw layout.

Runs: the ladder (190M-3B x 0.5/1/2/5/10 x Chinchilla, sweep `olmo_ladder`), the 1xC reruns
with another seed (sweep `olmo_ladder:seed`, seed 1; the originals are seed 0 - labels, not
the seeds used), and the two targets (7B-4T from `peteish7_eval_anneal.csv` plus the
pre-anneal trajectory `peteish7_eval_full.csv`; 13B-5T from `peteish13_eval_full.csv` and
`peteish13_eval_final.csv`). Metrics: `acc` (length-normalised accuracy as in the paper,
plain accuracy for BoolQ), `bpb` (bits per byte of the correct answer), `prob` (probability
of the correct answer, normalised over choices) and `logprob` (its log).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.errors import AnalysisError, warn
from analysis.ingest.table import from_rows, read_compact, report_partial_tasks, validate

#: 13B-5T (task -> (actual, predicted)) from the authors' chained_main.csv
PUBLISHED_13B = {
    "mmlu_avg_test": (0.5161402368605137, 0.5126799915287485),
    "hellaswag_val": (0.831905996799469, 0.8530359563499285),
    "arc_challenge_test": (0.638054609298706, 0.5267099358093748),
    "arc_easy_test": (0.8717171669006347, 0.7724156000459201),
    "piqa_val": (0.8295973896980285, 0.820804177694882),
    "csqa_val": (0.7410319447517395, 0.7760887505172276),
    "socialiqa_val": (0.6159672379493714, 0.5994822062474122),
    "openbookqa_test": (0.4863999903202057, 0.4486477676972386),
}
PUBLISHED_SOURCE = "allenai/OLMo-ladder src/scripts/paper/figures/chained_main.csv @4d99344"

COMPACT = "olmo_ladder.parquet"
CORPUS = "olmo-mix-1124"  # OLMo 2 pretraining mix, shared by the ladder and the targets

#: validation sets (column `eval/<set>-validation/CrossEntropyLoss`); c4_en first so it is
#: the table's first set (the x-axis fallback when `reference_val_set` is absent)
VAL_SETS = [
    "c4_en",
    "dolma_books",
    "dolma_common-crawl",
    "dolma_pes2o",
    "dolma_reddit",
    "dolma_stack",
    "dolma_wiki",
    "ice",
    "m2d2_s2orc",
    "pile",
    "wikitext_103",
]

#: task prefix -> chance accuracy (ranked classification over the answer choices)
CHANCE = {
    "mmlu": 0.25,
    "hellaswag": 0.25,
    "arc_easy": 0.25,
    "arc_challenge": 0.25,
    "boolq": 0.5,
    "csqa": 0.2,
    "openbookqa": 0.25,
    "piqa": 0.5,
    "socialiqa": 1 / 3,
    "winogrande": 0.5,
}

#: MMLU test questions per category: weights of the derived `mmlu_avg_test` task
MMLU_TEST_QUESTIONS = {"stem": 3018, "humanities": 4705, "social_sciences": 3077, "other": 3242}

#: parameter count of ladder sizes that configs/final.json does not list (the 3B); value of
#: MODEL_PARAMS in the upstream repository's fitting scripts
EXTRA_PARAMS = {"3B": 3169537280.0}

#: target runs: size label in configs/final.json -> (files, final-checkpoint file)
TARGETS = {
    "7B-4T": (["peteish7_eval_full.csv", "peteish7_eval_anneal.csv"], "peteish7_eval_anneal.csv"),
    "13B-5T": (["peteish13_eval_full.csv", "peteish13_eval_final.csv"], "peteish13_eval_final.csv"),
}

_LADDER = re.compile(r"^(?P<size>\d+(?:M|B))-(?P<mult>[\d.]+)xC(?P<rerun>-rerun)?\.csv$")
_METRIC_COLS = [  # (column regex, metric)
    (re.compile(r"^eval/downstream_bpb/(?P<task>.+)_rc_5shot_bpb$"), "bpb"),
    (re.compile(r"^eval/downstream/(?P<task>.+)_rc_5shot_(?:len_norm|acc)$"), "acc"),
    (re.compile(r"^eval/downstream_soft/(?P<task>.+)_rc_5shot_soft$"), "prob"),
    (re.compile(r"^eval/downstream_soft_log/(?P<task>.+)_rc_5shot_soft_log$"), "logprob"),
]
_REQUIRED = ["eval/c4_en-validation/CrossEntropyLoss"]


def load_testbed(path: Path | str) -> pd.DataFrame:
    """Read the OLMo ladder from the shipped compact file or the raw upstream folder."""
    root = Path(path)
    if (root / COMPACT).is_file():
        return read_compact(root / COMPACT)
    return read_raw(root)


def _params(root: Path) -> dict[str, float]:
    cfg = root / "configs" / "final.json"
    if not cfg.is_file():
        raise AnalysisError(f"{root}: missing file 'configs/final.json'")
    try:
        sizes = json.loads(cfg.read_text())
        params = {label: float(v["n"]) for label, v in sizes.items()}
    except (ValueError, KeyError, TypeError) as exc:
        raise AnalysisError(f"{cfg}: no parameter count 'n' per size ({exc!r})") from exc
    # ladder files say "1B" where final.json says "1.3B"; targets are named by label
    out = dict(EXTRA_PARAMS)
    for label, n in params.items():
        out[label] = n
        out[label.replace("1.3B", "1B")] = n
    return out


def read_raw(root: Path) -> pd.DataFrame:
    """Parse configs/final.json and ladder-runs/*.csv into the analysis table."""
    root = Path(root)
    runs_dir = root / "ladder-runs"
    if not runs_dir.is_dir():
        raise AnalysisError(f"{root}: missing folder 'ladder-runs' (not an OLMo ladder testbed)")
    params = _params(root)
    frames = []
    for f in sorted(runs_dir.glob("*.csv")):
        m = _LADDER.match(f.name)
        if not m:
            continue
        size = m["size"]
        if size not in params:
            raise AnalysisError(f"{f.name}: size '{size}' has no parameter count in final.json")
        rerun = bool(m["rerun"])
        frames.append(
            _run_rows(
                _read_csv(f, ["_step", "throughput/total_tokens"]),
                run_id=f.stem,
                size=size,
                n=params[size],
                mult=float(m["mult"]),
                sweep="olmo_ladder:seed" if rerun else "olmo_ladder",
                seed=1 if rerun else 0,
                final_step=None,
            )
        )
    if not frames:
        raise AnalysisError(f"{runs_dir}: no ladder CSV files (<size>-<mult>xC.csv)")
    for label, (files, final_file) in TARGETS.items():
        if label not in params:
            warn(f"target {label} not in configs/final.json; skipped")
            continue
        frames.append(_target_rows(runs_dir, label, files, final_file, params[label]))
    table = pd.concat(frames, ignore_index=True)
    table = validate(from_rows(_add_mmlu_avg(table)), Path(root).name)
    report_partial_tasks(table)
    return table


def _read_csv(path: Path, required: list[str]) -> pd.DataFrame:
    df = pd.read_csv(path)
    for col in required + _REQUIRED:
        if col not in df.columns:
            raise AnalysisError(f"{path.name}: missing column '{col}'")
    return df


def _target_rows(
    runs_dir: Path, label: str, files: list[str], final_file: str, n: float
) -> pd.DataFrame:
    """A target's trajectory plus its final checkpoint (the anneal file has no `_step`)."""
    parts = []
    for name in files:
        f = runs_dir / name
        if not f.is_file():
            raise AnalysisError(f"{runs_dir}: missing file '{name}' (target {label})")
        df = _read_csv(f, ["batch_size_in_tokens"]).copy()
        if "_step" not in df:
            if "throughput/total_tokens" not in df:
                raise AnalysisError(f"{name}: missing column '_step'")
            df["_step"] = np.round(df["throughput/total_tokens"] / df["batch_size_in_tokens"])
        if "throughput/total_tokens" not in df:
            df["throughput/total_tokens"] = df["_step"] * df["batch_size_in_tokens"]
        df["_final_file"] = name == final_file
        parts.append(df)
    df = pd.concat(parts, ignore_index=True)
    # one row per step, the final file's row winning (it holds the released checkpoint)
    df = df.sort_values(["_step", "_final_file"]).drop_duplicates("_step", keep="last")
    final_step = int(df.loc[df["_final_file"], "_step"].max())
    df = df[df["_step"] <= final_step]
    return _run_rows(
        df,
        run_id=label,
        size=label,
        n=n,
        mult=np.nan,
        sweep="olmo_ladder",
        seed=0,
        final_step=final_step,
    )


def _run_rows(
    df: pd.DataFrame,
    *,
    run_id: str,
    size: str,
    n: float,
    mult: float,
    sweep: str,
    seed: int,
    final_step: int | None,
) -> pd.DataFrame:
    """Long rows (one per checkpoint and measurement) of one run's CSV."""
    df = df.dropna(subset=["_step"]).sort_values("_step")
    steps = df["_step"].astype(int).to_numpy()
    tokens = df["throughput/total_tokens"].astype(float).to_numpy()
    last = steps.max() if final_step is None else final_step
    base = pd.DataFrame(
        {"step": steps, "tokens": tokens, "flops": 6.0 * n * tokens, "final": steps == last}
    )
    train_tokens = float(tokens[steps == last][0])
    pieces = []
    for vset in VAL_SETS:
        col = f"eval/{vset}-validation/CrossEntropyLoss"
        if col not in df:
            raise AnalysisError(f"{run_id}: missing column '{col}'")
        pieces.append(
            base.assign(
                kind="val_loss",
                name=vset,
                task=vset,
                setup="",
                metric="loss",
                value=df[col].to_numpy(float),
            )
        )
    for col in df.columns:
        for rx, metric in _METRIC_COLS:
            m = rx.match(col)
            if m:
                task = m["task"]
                pieces.append(
                    base.assign(
                        kind="task",
                        name=task,
                        task=task,
                        setup="",
                        metric=metric,
                        value=df[col].to_numpy(float),
                        chance=_chance(task) if metric == "acc" else np.nan,
                    )
                )
    out = pd.concat(pieces, ignore_index=True)
    mult = mult if np.isfinite(mult) else train_tokens / (20.0 * n)
    return out.assign(
        run_id=run_id,
        source="olmo_ladder",
        sweep=sweep,
        corpus=CORPUS,
        size=size,
        seed=seed,
        n_params=n,
        n_params_nonembedding=np.nan,
        train_tokens=train_tokens,
        multiplier=mult,
        stderr=np.nan,
        n_samples=np.nan,
    )


def _chance(task: str) -> float:
    for prefix, c in CHANCE.items():
        if task.startswith(prefix):
            return c
    return np.nan


def _add_mmlu_avg(table: pd.DataFrame) -> pd.DataFrame:
    """`mmlu_avg_test`: the question-weighted mean of the four MMLU test categories, for
    every metric and checkpoint that has all four (the paper's MMLU target)."""
    names = {f"mmlu_{c}_test": w for c, w in MMLU_TEST_QUESTIONS.items()}
    sub = table[table["name"].isin(list(names))]
    if sub.empty:
        return table
    keys = ["run_id", "step", "metric"]
    w = sub["name"].map(names).astype(float)
    agg = (
        sub.assign(wv=sub["value"] * w, w=w)
        .groupby(keys, dropna=False)
        .agg(wv=("wv", "sum"), w=("w", "sum"), k=("name", "nunique"))
    )
    agg = agg[agg["k"] == len(names)]
    first = sub.drop_duplicates(keys).set_index(keys)
    rows = first.loc[agg.index].copy()
    rows["value"] = (agg["wv"] / agg["w"]).to_numpy()
    rows["name"] = rows["task"] = "mmlu_avg_test"
    return pd.concat([table, rows.reset_index()], ignore_index=True)
