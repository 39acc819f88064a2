"""`AnalysisResults`: what the stages of one analysis produced, built once by
`analysis.pipeline.compute` and read by the writer, the report and the summary.

Stages: ingest (the validated table and its x-axes) -> groups -> trends and laws ->
flips -> extras and calibration -> (predictions, filled by the prediction stage when it
runs). The resolved reference x-axis and headline corpus are decided here once; every
reader takes them from here instead of deciding again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from analysis.config import AnalysisConfig
from analysis.groups.build import POOLED
from analysis.ingest.table import COLUMNS
from analysis.schemas import CALIBRATION_TABLES, CORE_TABLES, EXTRA_TABLES, FLIP_COLUMNS
from analysis.trends.classify import GroupTrends

GroupKey = tuple[str, str]  # (val_set, corpus)


@dataclass
class AnalysisResults:
    """One analysis, in memory. `tables` holds each output table exactly as written to
    `tables/<name>.csv` (CORE_TABLES always; calibration and extra tables when computed)."""

    cfg: AnalysisConfig  # reference_val_set resolved to an x-axis the table has
    runs: pd.DataFrame  # the validated table with its pseudo x-axes (tables/runs.parquet)
    points: pd.DataFrame  # the main suite's rows the groups were built from
    groups: dict[GroupKey, GroupTrends]  # every (val_set, corpus) group, classified
    headline: list[GroupTrends]  # per x-axis: the pooled group, or the only corpus
    tables: dict[str, pd.DataFrame]
    warnings: list[str] = field(default_factory=list)
    #: the prediction stage's output (issue 26), when it ran: e.g. predictions with
    #: intervals and their backtest tables, by name
    predictions: dict[str, pd.DataFrame] | Any | None = None
    #: the flips stage (analysis.flips): tests in the headline family, lines about x-axes
    #: left out of flips, and its own CPU seconds
    flip_tests: int = 0
    flip_notes: list[str] = field(default_factory=list)
    flip_cpu_s: float = 0.0

    @property
    def reference_val_set(self) -> str:
        return self.cfg.reference_val_set

    @property
    def headline_corpus(self) -> str:
        """The corpus the headline numbers are on: pooled when the runs span several."""
        corpora = sorted(self.final_runs["corpus"].dropna().unique())
        return POOLED if len(corpora) > 1 else (corpora[0] if corpora else "")

    @property
    def reference_keys(self) -> list[GroupKey]:
        """The headline group on the reference x-axis (a list: empty when it has none)."""
        keys = [(gt.group.val_set, gt.group.corpus) for gt in self.headline]
        return [k for k in keys if k[0] == self.reference_val_set]

    @property
    def final_runs(self) -> pd.DataFrame:
        return self.runs[self.runs["final"].fillna(False).astype(bool)]

    @property
    def weights(self) -> dict[GroupKey, np.ndarray]:
        return {k: gt.weights for k, gt in self.groups.items()}

    def table(self, name: str) -> pd.DataFrame:
        """A written table by name; empty when it was not computed."""
        return self.tables.get(name, pd.DataFrame())

    def written(self) -> list[tuple[str, pd.DataFrame]]:
        """(name, table) for every CSV `analyze` writes, in the order it writes them."""
        out = [(n, self.tables[n]) for n in CORE_TABLES]
        out += [(n, self.tables[n]) for n in CALIBRATION_TABLES if not self.table(n).empty]
        out += [(n, self.tables[n]) for n in EXTRA_TABLES if n in self.tables]
        return out

    def runs_table(self) -> pd.DataFrame:
        """tables/runs.parquet: every row, in the contract's columns."""
        return self.runs[list(COLUMNS)]

    @staticmethod
    def empty_flips() -> pd.DataFrame:
        return pd.DataFrame(columns=FLIP_COLUMNS)
