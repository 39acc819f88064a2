"""Atomic file writes (temp file in the same folder, then os.replace), so a reader never
sees a half-written table or figure, even when two analyses write the same folder."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd

from common.atomic import atomic_path


def atomic_write(path: Path, write: Callable[[Path], object]) -> Path:
    """Call write(tmp_path) then move tmp_path onto `path` (train.atomic's one mechanism)."""
    with atomic_path(path) as tmp:
        write(tmp)
    return Path(path)


def write_text(path: Path, text: str) -> Path:
    return atomic_write(path, lambda p: p.write_text(text))


def write_csv(path: Path, df: pd.DataFrame) -> Path:
    return atomic_write(path, lambda p: df.to_csv(p, index=False))


def write_parquet(path: Path, df: pd.DataFrame) -> Path:
    return atomic_write(path, lambda p: df.to_parquet(p, index=False))


def read_csv(path: Path) -> pd.DataFrame:
    """Read one of our CSVs; empty strings stay empty strings (setup "" is meaningful)."""
    try:
        df = pd.read_csv(path, keep_default_na=False, na_values=["NaN", "nan", ""])
    except pd.errors.EmptyDataError:
        return pd.DataFrame()
    for col in ("setup", "task", "name", "corpus", "val_set", "from", "to", "context"):
        if col in df:
            df[col] = df[col].fillna("").astype(str)
    return df
