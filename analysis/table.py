"""The one table every analysis reads (contract between the run store and analysis).

Long format: one row per (run, checkpoint, measurement). Harness records
(`analysis.records`) and imported testbeds (`analysis.gadre`) both produce it,
so every fit, classification and plot works the same on either.
"""

from __future__ import annotations

import pandas as pd

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
    "multiplier": "float64",  # train_tokens / (20 * n_params)
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
