"""Public result sets shipped with the project, and the registry `source=` names.

Each testbed lives in a folder beside this file with its upstream licence and a
PROVENANCE.md saying where the files came from; a loader reads it into the analysis table
(`analysis.table.COLUMNS`). `harness analyze source=<name>` uses the shipped copy unless a
`path=` overrides it, so a fresh clone runs the meta-analysis with no path and no network.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from analysis.errors import AnalysisError

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Testbed:
    """One shipped result set: its loader ("module:function") and its shipped folder."""

    name: str
    loader: str
    shipped: Path
    description: str
    labels: Path | None = None  # published per-task categories, to check the rules against

    def load(self, path: Path | str | None = None) -> pd.DataFrame:
        """Read the testbed from `path`, or from the shipped copy when `path` is None."""
        folder = Path(path) if path else self.shipped
        if not folder.exists():
            key = "path" if path else f"shipped copy of {self.name}"
            raise AnalysisError(f"{key}: '{folder}' does not exist")
        module, func = self.loader.split(":")
        fn: Callable[[Path], pd.DataFrame] = getattr(importlib.import_module(module), func)
        return fn(folder)


TESTBEDS: dict[str, Testbed] = {}


def register(bed: Testbed) -> None:
    """Add a testbed to the registry (one name, one loader)."""
    TESTBEDS[bed.name] = bed


register(
    Testbed(
        name="gadre2024",
        loader="analysis.gadre:load_testbed",
        shipped=HERE / "gadre2024" / "exp_data",
        description="Gadre et al. (2024): 104 open_lm models, 46 tasks, 8 validation losses",
        labels=HERE / "gadre2024" / "lourie2025_calibration.tsv",
    )
)


register(
    Testbed(
        name="olmo_ladder",
        loader="analysis.olmo_ladder:load_testbed",
        shipped=HERE / "olmo_ladder",
        description="Bhagia et al. (2024) OLMo ladder: 190M-3B x 0.5-10x Chinchilla, every "
        "checkpoint, 11 validation losses, 7B/13B targets",
    )
)

register(
    Testbed(
        name="pythia",
        loader="analysis.pythia:load_testbed",
        shipped=HERE / "pythia",
        description="Biderman et al. (2023) Pythia 70M-12B on the Pile and deduplicated Pile, "
        "zero/five-shot along training, bf16 and batch-size variants",
    )
)


def get(name: str) -> Testbed:
    """The registered testbed called `name`; a one-line error naming it otherwise."""
    if name not in TESTBEDS:
        raise AnalysisError(
            f"source: unknown source '{name}' (known: harness, {', '.join(sorted(TESTBEDS))})"
        )
    return TESTBEDS[name]
