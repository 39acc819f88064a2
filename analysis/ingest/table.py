"""The one table every analysis reads (contract between the run store and analysis).

Long format: one row per (run, checkpoint, measurement). Harness records
(`analysis.ingest.records`) and imported testbeds (`analysis.testbeds.<name>.loader`) both
produce it, so every fit, classification and plot works the same on either.

Importers build rows with `val_loss_row` / `task_row` (or whole columns for a vectorised
reader), turn them into the table with `from_rows`, and pass it through `validate`:

* structure (an `AnalysisError` naming the first bad row): the contract's columns, `kind`
  in {val_loss, task}, one row per (run, checkpoint, kind, name, metric), one final
  checkpoint per run;
* values (the bad row is left out with an `AnalysisWarning` naming run, measurement and
  value): finite numbers; accuracy-like metrics in [0, 1]; losses and bits-per-byte >= 0;
  log-probabilities <= 0; parameter and token counts positive. A bad stderr, sample count
  or chance level is blanked (NaN), not the measurement. When most value rows are bad the
  file is not a result set but damage: one `AnalysisError` instead of a warning per row.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis.errors import AnalysisError, warn

#: column -> dtype. Accuracies are fractions in [0, 1]; losses are nats/token.
COLUMNS: dict[str, str] = {
    "run_id": "string",  # unique per trained model
    "source": "string",  # "harness" | "gadre2024" | ...
    "sweep": "string",  # sweep name (testbed name for imports)
    "corpus": "string",  # pretraining corpus or data-mix name
    "size": "string",  # size name from the ladder, e.g. "cpu-s" or "d=1024_l=24_h=8"
    "seed": "Int64",
    "n_params": "float64",  # total parameters
    "n_params_nonembedding": "float64",
    "train_tokens": "float64",  # the run's whole token budget
    "multiplier": "float64",  # train_tokens / (20 * n_params): Chinchilla multiplier, M / 20
    # (M = train_tokens / n_params, the `@M=` of extrapolation targets and the Gadre law)
    "step": "Int64",  # optimizer step of this checkpoint
    "tokens": "float64",  # tokens seen at this checkpoint
    "flops": "float64",  # 6 * n_params * tokens
    "final": "bool",  # last checkpoint of a finished run
    "kind": "string",  # "val_loss" | "task"
    "name": "string",  # validation-set name, or task/variant name ("hellaswag@5shot")
    "task": "string",  # base task (name before "@"); equals name for val_loss rows
    "setup": "string",  # evaluation-setup variant (after "@"), "" for the default setup
    "metric": "string",  # "loss" for val_loss; "acc", "acc_norm", "logprob", "bpb", ... for tasks
    "value": "float64",
    "stderr": "float64",  # NaN when unknown
    "n_samples": "float64",  # task size, NaN when unknown
    "chance": "float64",  # chance accuracy as a fraction; NaN for val_loss rows
}


def empty_table() -> pd.DataFrame:
    """A table with the contract's columns and no rows."""
    return pd.DataFrame({c: pd.Series(dtype=t) for c, t in COLUMNS.items()})


def conform(df: pd.DataFrame) -> pd.DataFrame:
    """Order and type `df`'s columns as the contract says; missing optional columns become NA."""
    out = df.copy()
    for col, dtype in COLUMNS.items():
        if col not in out:
            out[col] = pd.NA
        out[col] = out[col].astype(dtype)
    return out[list(COLUMNS)].reset_index(drop=True)


def with_all_columns(df: pd.DataFrame) -> pd.DataFrame:
    """`df` plus any missing contract column, filled with the dtype's missing value.

    (`conform` fills with pd.NA, which float64 columns reject under pandas >= 3.)
    """
    out = df.copy()
    for col, dtype in COLUMNS.items():
        if col not in out:
            out[col] = pd.Series(
                pd.NA if dtype != "float64" else float("nan"), index=out.index, dtype=dtype
            )
    return out


KINDS = ("val_loss", "task")
#: metric -> the closed range its values live in (None: unbounded on that side)
UNIT_METRICS = ("acc", "acc_norm", "prob", "prob_correct", "exact_match", "f1", "mc1", "mc2")
NONNEG_METRICS = ("loss", "bpb", "brier", "perplexity", "word_perplexity", "byte_perplexity")
NONPOS_METRICS = ("logprob", "logprob_per_token", "logprob_per_byte")
#: more than this share of value rows out of range: the file is damaged, not noisy
MAX_BAD_SHARE = 0.5
#: warnings named one by one before the rest are counted in one line
MAX_NAMED = 20
_KEY = ["run_id", "step", "kind", "name", "metric"]


def val_loss_row(base: dict[str, Any], name: str, value: float) -> dict[str, Any]:
    """One validation-loss measurement of the run/checkpoint described by `base`."""
    return {
        **base,
        "kind": "val_loss",
        "name": name,
        "task": name,
        "setup": "",
        "metric": "loss",
        "value": value,
    }


def task_row(
    base: dict[str, Any],
    name: str,
    metric: str,
    value: float,
    *,
    task: str | None = None,
    setup: str = "",
    stderr: float = math.nan,
    n_samples: float = math.nan,
    chance: float = math.nan,
) -> dict[str, Any]:
    """One task measurement; `task` defaults to `name` (a variant "t@5shot" names its base)."""
    return {
        **base,
        "kind": "task",
        "name": name,
        "task": name if task is None else task,
        "setup": setup,
        "metric": metric,
        "value": value,
        "stderr": stderr,
        "n_samples": n_samples,
        "chance": chance,
    }


def from_rows(rows: list[dict[str, Any]] | pd.DataFrame) -> pd.DataFrame:
    """The contract table of `rows` (dicts from the constructors above, or a frame with the
    same columns): every column present, ordered and typed."""
    return conform(with_all_columns(pd.DataFrame(rows) if isinstance(rows, list) else rows))


def read_compact(path: Path) -> pd.DataFrame:
    """A shipped testbed's parquet file (the table itself), validated: a missing, truncated
    or damaged file is one `AnalysisError` naming it, never a pyarrow traceback."""
    try:
        df = pd.read_parquet(path)
    except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise AnalysisError(f"{path}: not a readable parquet file ({first[:200]})") from exc
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise AnalysisError(f"{path}: missing column '{missing[0]}'")
    return validate(conform(df), Path(path).name)


def _row_name(df: pd.DataFrame, i: Any) -> str:
    r = df.loc[i]
    step = "" if pd.isna(r["step"]) else f" step {r['step']}"
    return f"run {r['run_id']}{step}: {r['kind']} {r['name']} ({r['metric']})"


def check_structure(df: pd.DataFrame, origin: str) -> None:
    """The structural checks of `validate` alone (an `AnalysisError` naming the first bad
    row): for a reader that skips one bad source instead of stopping."""
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise AnalysisError(f"{origin}: missing column '{missing[0]}'")
    kind = df["kind"].astype(object)
    bad = ~kind.isin(KINDS)
    if bad.any():
        i = bad.idxmax()
        raise AnalysisError(
            f"{origin}: kind '{kind[i]}' in row {i} ({df.loc[i, 'run_id']}) is not one of "
            f"{', '.join(KINDS)}"
        )
    for col in ("run_id", "name", "metric"):
        empty = df[col].isna() | (df[col].astype(object) == "")
        if empty.any():
            raise AnalysisError(f"{origin}: empty {col} in row {empty.idxmax()}")
    dup = df.duplicated(_KEY, keep="first")
    if dup.any():
        raise AnalysisError(f"{origin}: {_row_name(df, dup.idxmax())} appears twice")
    fin = df[df["final"].fillna(False).astype(bool)]
    steps = fin.groupby("run_id")["step"].nunique(dropna=False)
    if (steps > 1).any():
        run = steps.index[(steps > 1).argmax()]
        raise AnalysisError(f"{origin}: run {run} has {steps[run]} final checkpoints (one allowed)")


def _bad_values(df: pd.DataFrame) -> pd.Series:
    """Why each row's measurement or run description is impossible ('' when it is fine).
    A NaN value is a measurement not taken (the analysis skips it), not a bad one."""
    v = df["value"].astype(float)
    metric = df["metric"].astype(object)
    why = pd.Series("", index=df.index, dtype=object)

    def mark(mask: pd.Series, text: str) -> None:
        hit = mask.fillna(False).to_numpy(bool) & (why == "").to_numpy()
        why[hit] = text

    mark(np.isinf(v), "not a finite number")
    mark(metric.isin(UNIT_METRICS) & ((v < 0) | (v > 1)), "outside [0, 1]")
    mark((metric.isin(NONNEG_METRICS) | (df["kind"] == "val_loss")) & (v < 0), "negative")
    mark(metric.isin(NONPOS_METRICS) & (v > 0), "positive (a log-probability is <= 0)")
    for col in ("n_params", "train_tokens"):
        mark(df[col].astype(float) <= 0, f"from a run whose {col} is not positive")
    for col in ("tokens", "flops"):
        mark(df[col].astype(float) < 0, f"at a checkpoint whose {col} is negative")
    return why


def _blank_bad_aux(df: pd.DataFrame, origin: str) -> pd.DataFrame:
    """Blank (NaN) an impossible stderr, sample count or chance level, naming each."""
    checks = {
        "stderr": lambda x: x < 0,
        "n_samples": lambda x: x <= 0,
        "chance": lambda x: (x < 0) | (x > 1),
    }
    out = df
    for col, bad_of in checks.items():
        x = df[col].astype(float)
        bad = (bad_of(x) | np.isinf(x)).fillna(False).to_numpy(bool)
        if not bad.any():
            continue
        out = out.copy() if out is df else out
        for n, i in enumerate(df.index[bad]):
            if n < MAX_NAMED:
                warn(f"{origin}: {_row_name(df, i)} has {col} {float(x[i])!r}; left out (NaN)")
        if bad.sum() > MAX_NAMED:
            warn(f"{origin}: {int(bad.sum()) - MAX_NAMED} more impossible {col} values left out")
        out.loc[bad, col] = np.nan
    return out


def validate(df: pd.DataFrame, origin: str = "table") -> pd.DataFrame:
    """`df` checked against the contract (module doc): a structural fault is an
    `AnalysisError` naming the first bad row; rows with an impossible value are left out,
    each with a warning naming run, measurement and value. Returns `df` itself when
    nothing was wrong."""
    check_structure(df, origin)
    why = _bad_values(df)
    bad = (why != "").to_numpy()
    if bad.any():
        n, total = int(bad.sum()), len(df)
        if n > MAX_BAD_SHARE * total:
            i = df.index[bad][0]
            raise AnalysisError(
                f"{origin}: {n} of {total} rows hold impossible values (first: "
                f"{_row_name(df, i)} = {float(df.loc[i, 'value'])!r}, {why[i]}); a damaged file, "
                "not analysed"
            )
        for k, i in enumerate(df.index[bad]):
            if k < MAX_NAMED:
                value = float(df.loc[i, "value"])
                warn(f"{origin}: {_row_name(df, i)} = {value!r}, {why[i]}; left out")
        if n > MAX_NAMED:
            warn(f"{origin}: {n - MAX_NAMED} more impossible values left out")
        df = df[~bad].reset_index(drop=True)
    return _blank_bad_aux(df, origin)


def report_partial_tasks(table: pd.DataFrame) -> list[str]:
    """Warn (one line per task) about tasks missing from some runs of the same source and
    sweep; the analysis leaves those runs out for that task (NaN, never zero)."""
    msgs = []
    tasks = table[table["kind"] == "task"]
    for sweep, sub in tasks.groupby("sweep"):
        runs = set(sub["run_id"])
        for name, have in sub.groupby("name")["run_id"].unique().items():
            lacking = sorted(runs - set(have))
            if lacking:
                more = ", ..." if len(lacking) > 5 else ""
                msgs.append(
                    f"task {name} missing from {len(lacking)} of {len(runs)} runs of "
                    f"{sweep} ({', '.join(lacking[:5])}{more}); those runs are skipped "
                    "for it"
                )
    for m in msgs:
        warn(m)
    return msgs
