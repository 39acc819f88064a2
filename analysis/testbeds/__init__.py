"""The sources `harness analyze source=<name>` reads, each one registered object.

A testbed is a public result set shipped with the project: its folder beside this file holds
the data, the upstream licence and a PROVENANCE.md; its `Testbed` entry holds everything the
analysis knows about it: the loader (into the analysis table, `analysis.ingest.table.COLUMNS`), the
converter that rebuilds the shipped compact file from the raw upstream layout, the default
analysis settings, the published labels and numbers the results are checked against, and its
own extrapolation backtest. `harness analyze source=<name>` uses the shipped copy unless a
`path=` overrides it, so a fresh clone runs the meta-analysis with no path and no network.
A harness sweep (`source=harness root=DIR`) is registered the same way, with no shipped copy.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from analysis.config import AnalysisConfig
from analysis.errors import AnalysisError
from analysis.ingest import records
from analysis.laws.extrapolate import testbed_backtest
from analysis.testbeds.gadre2024 import loader as gadre
from analysis.testbeds.obsscaling import loader as obsscaling
from analysis.testbeds.olmo_ladder import loader as olmo_ladder
from analysis.testbeds.pythia import loader as pythia

HERE = Path(__file__).resolve().parent

#: fn(table, cfg, val_set, published) -> (extrapolation rows, fits): a source's own backtest
Backtest = Callable[..., tuple[pd.DataFrame, list[dict]]]


@dataclass(frozen=True)
class Testbed:
    """One source of runs and everything the analysis knows about it."""

    name: str
    loader: Callable[[Path], pd.DataFrame]  # folder -> the analysis table (validated)
    shipped: Path | None  # the copy in the repository; None: the path is always given
    description: str
    labels: Path | None = None  # published per-task categories, to check the rules against
    #: analysis settings that replace the global defaults (settings_for)
    settings: dict[str, Any] = field(default_factory=dict)
    #: raw upstream folder -> the table, and the compact file it is shipped as
    read_raw: Callable[[Path], pd.DataFrame] | None = None
    compact: str | None = None
    #: the source's own extrapolation backtest (run before leave-largest-out)
    backtest: Backtest | None = None
    #: published numbers the outputs are set beside: name -> table of that publication
    published: dict[str, Any] = field(default_factory=dict)
    #: benchmark tasks whose first principal component is an extra x-axis, built without
    #: the task analysed (analysis.flips.capability_axis); empty: no capability axis
    capability_tasks: tuple[str, ...] = ()
    #: tasks known upstream for abrupt rises: the report says what the rules call them
    emergent_tasks: tuple[str, ...] = ()

    def load(self, path: Path | str | None = None) -> pd.DataFrame:
        """Read the testbed from `path`, or from the shipped copy when `path` is None."""
        folder = Path(path) if path else self.shipped
        if folder is None:
            raise AnalysisError(f"root: required with source={self.name} (the runs' folder)")
        if not folder.exists():
            given = "root" if self.shipped is None else "path"  # how the CLI names it
            key = given if path else f"shipped copy of {self.name}"
            raise AnalysisError(f"{key}: '{folder}' does not exist")
        return self.loader(folder)


TESTBEDS: dict[str, Testbed] = {}


def register(bed: Testbed) -> None:
    """Add a source to the registry (one name, one object)."""
    TESTBEDS[bed.name] = bed


register(
    Testbed(
        name="harness",
        loader=records.load_records,
        shipped=None,
        description="run records of a harness sweep: <root>/runs/*/record.json",
    )
)

register(
    Testbed(
        name="gadre2024",
        loader=gadre.load_testbed,
        shipped=HERE / "gadre2024" / "exp_data",
        description="Gadre et al. (2024): 104 open_lm models, 46 tasks, 8 validation losses",
        labels=HERE / "gadre2024" / "lourie2025_calibration.tsv",
        backtest=testbed_backtest,
        published={"extrapolation_rel_error": gadre.PUBLISHED_REL_ERRORS},
    )
)

register(
    Testbed(
        name="olmo_ladder",
        loader=olmo_ladder.load_testbed,
        shipped=HERE / "olmo_ladder",
        description="Bhagia et al. (2024) OLMo ladder: 190M-3B x 0.5-10x Chinchilla, every "
        "checkpoint, 11 validation losses, 7B/13B targets",
        settings={
            "reference_val_set": "c4_en",
            "x_axes": ["compute", "params"],
            "extrapolate": {"val_set": "c4_en"},
            "plot": {
                "grid_val_sets": ["c4_en"],
                "flip_tasks": ["hellaswag_val", "mmlu_avg_test"],
            },
        },
        read_raw=olmo_ladder.read_raw,
        compact=olmo_ladder.COMPACT,
        published={
            "two_step_13B": olmo_ladder.PUBLISHED_13B,
            "two_step_source": olmo_ladder.PUBLISHED_SOURCE,
        },
    )
)

register(
    Testbed(
        name="pythia",
        loader=pythia.load_testbed,
        shipped=HERE / "pythia",
        description="Biderman et al. (2023) Pythia 70M-12B on the Pile and deduplicated Pile, "
        "zero/five-shot along training, bf16 and batch-size variants",
        # every Pythia run sees the same tokens, so parameters would repeat the compute axis
        settings={
            "reference_val_set": "compute",
            "x_axes": ["compute"],
            "plot": {"grid_val_sets": ["compute"], "flip_tasks": ["arc_easy", "lambada_openai"]},
        },
        read_raw=pythia.read_raw,
        compact=pythia.COMPACT,
    )
)

register(
    Testbed(
        name="obsscaling",
        loader=obsscaling.load_testbed,
        shipped=HERE / "obsscaling",
        description="Ruan et al. (2024) observational scaling: 148 public base models in 47 "
        "families, 8 standard benchmarks, emergent-capability and leaderboard-v2 tasks",
        # no validation loss: compute, parameters, and the capability axis of the benchmarks
        settings={
            "reference_val_set": "compute",
            "x_axes": ["compute", "params"],
            # trends within a family need sizes: families with fewer are only pooled
            "min_corpus_models": 4,
            "plot": {"grid_val_sets": ["compute"], "flip_tasks": ["mmlu", "gsm8k"]},
        },
        read_raw=obsscaling.read_raw,
        compact=obsscaling.COMPACT,
        capability_tasks=tuple(obsscaling.STANDARD_TASKS),
        emergent_tasks=tuple(obsscaling.EMERGENT_TASKS),
    )
)


def get(name: str) -> Testbed:
    """The registered source called `name`; a one-line error naming it otherwise."""
    if name not in TESTBEDS:
        known = ", ".join(sorted(TESTBEDS))
        raise AnalysisError(f"source: unknown source '{name}' (known: {known})")
    return TESTBEDS[name]


def labels_for(setting: str | None, sources: list[str]) -> Path | None:
    """The labels file to check the rules against: a path, or the testbed's shipped labels
    for `auto` (None when no testbed in the table ships labels)."""
    if not setting:
        return None
    if setting != "auto":
        path = Path(setting)
        if not path.is_file():
            raise AnalysisError(f"calibration.labels: no such file '{setting}'")
        return path
    for src in sources:
        bed = TESTBEDS.get(src)
        if bed is not None and bed.labels is not None and bed.labels.is_file():
            return bed.labels
    return None


def settings_for(name: str, cfg: AnalysisConfig) -> AnalysisConfig:
    """Testbed settings replace the global defaults only where the configuration still
    holds the default (an explicit `analysis.*` override that differs from it wins): the
    OLMo ladder's x-axis is its C4 validation loss plus compute and parameters; Pythia has
    no validation loss, so its x-axis is compute.

    `cfg` with testbed `name`'s settings (its entry above) where
    `cfg` still holds the global default."""
    bed = TESTBEDS.get(name)
    return _merge(cfg, AnalysisConfig(), bed.settings if bed is not None else {})


def _merge(cfg, default, over: dict[str, Any]):
    changes = {}
    for key, value in over.items():
        cur, dflt = getattr(cfg, key), getattr(default, key)
        if dataclasses.is_dataclass(cur):
            changes[key] = _merge(cur, dflt, value)
        elif cur == dflt:
            changes[key] = value
    return dataclasses.replace(cfg, **changes)


def shipped_testbeds() -> list[str]:
    """The names of the testbeds shipped with the project (every source but harness)."""
    return sorted(n for n, bed in TESTBEDS.items() if bed.shipped is not None)


def of_table(table: pd.DataFrame) -> list[Testbed]:
    """The registered sources the table's rows come from (its `source` column)."""
    names = sorted(table["source"].dropna().astype(str).unique())
    return [TESTBEDS[n] for n in names if n in TESTBEDS]
