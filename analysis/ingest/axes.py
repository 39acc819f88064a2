"""The x-axis and the points of the analysis, as transforms of the runs table.

x-axis: every validation loss in the table is an x-axis already. `with_axes` adds
pseudo-validation sets, so the groups, flips and plots treat them like any loss:

* ``compute``: x = log10(1e30 / C), C = 6 N D the training FLOPs at the checkpoint;
* ``params``:  x = log10(1e13 / N).

Both are "orders of magnitude below a far-away reference": lower is better, like a loss,
and positive over any realistic range, which the exp law's bounds (ln k >= 0) need.
A testbed without any validation loss (Pythia) gets ``compute``.

Points: ``final`` uses each run's last checkpoint (one model = one point); ``all`` uses every
checkpoint at or after `min_frac` of the run's final tokens, each as its own point whose
run_id is ``<run>#<step>``; `analysis.groups.build` then resamples runs (all of a run's
checkpoints together), not points, so one long run does not count as many models.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.errors import AnalysisError

AXES = {"compute": ("flops", 1e30), "params": ("n_params", 1e13)}
CHECKPOINT_SEP = "#"
POINTS = ("final", "all")


def axis_label(name: str) -> str:
    """How a report names an x-axis."""
    if name == "compute":
        return "compute: log10(1e30 / 6ND)"
    if name == "params":
        return "parameters: log10(1e13 / N)"
    return f"validation loss ({name})"


def axis_phrase(name: str) -> str:
    """How a sentence names an x-axis: the pseudo-axes by what they measure (they are not
    validation losses), a validation set as "`<name>` validation loss"."""
    if name == "compute":
        return "compute"
    if name == "params":
        return "parameter count"
    return f"`{name}` validation loss"


def with_axes(table: pd.DataFrame, axes: list[str]) -> pd.DataFrame:
    """`table` plus val_loss rows for each pseudo-axis in `axes` (compute always when the
    table has no validation loss)."""
    axes = list(axes)
    for a in axes:
        if a not in AXES:
            raise AnalysisError(
                f"x_axes: unknown axis '{a}' (known: {', '.join(AXES)}, or any "
                "validation set, which is always an axis)"
            )
    if not (table["kind"] == "val_loss").any() and "compute" not in axes:
        axes.append("compute")
    if not axes:
        return table
    ck = table.drop_duplicates(["run_id", "step", "final"]).copy()
    new = []
    for a in axes:
        col, ref = AXES[a]
        with np.errstate(divide="ignore", invalid="ignore"):
            x = np.log10(ref / ck[col].astype(float))
        new.append(
            ck.assign(
                kind="val_loss",
                name=a,
                task=a,
                setup="",
                metric="loss",
                value=x.to_numpy(),
                stderr=np.nan,
                n_samples=np.nan,
                chance=np.nan,
            )
        )
    return pd.concat([table, *new], ignore_index=True)


def select_points(table: pd.DataFrame, points: str, min_frac: float = 0.1) -> pd.DataFrame:
    """The table's rows for the `points` choice (see module doc), every row marked final."""
    if points not in POINTS:
        raise AnalysisError(f"points: unknown choice '{points}' (known: {', '.join(POINTS)})")
    if points == "final":
        return table
    t = table[table["step"].notna()].copy()
    last = t.groupby("run_id")["tokens"].transform("max")
    t = t[t["tokens"] >= min_frac * last]
    t["run_id"] = t["run_id"].astype(str) + CHECKPOINT_SEP + t["step"].astype("Int64").astype(str)
    t["final"] = True
    # a run without step numbers (imported final-only results) keeps its final point
    rest = table[table["step"].isna() & table["final"].fillna(False).astype(bool)]
    return pd.concat([t, rest], ignore_index=True)


def has_checkpoints(table: pd.DataFrame) -> bool:
    """Whether some run has intermediate checkpoints (so `points=all` differs from final)."""
    return bool((~table["final"].fillna(False).astype(bool) & table["step"].notna()).any())


def run_of(point_ids: np.ndarray) -> np.ndarray:
    """The run of each point id (`<run>#<step>` -> `<run>`; a plain run id is its own run)."""
    return np.array([str(p).split(CHECKPOINT_SEP)[0] for p in point_ids], dtype=object)


def main_suite(table: pd.DataFrame) -> pd.DataFrame:
    """Runs of the testbed's main suite: sweeps named `<sweep>:<variant>` (seed reruns, bf16,
    other batch sizes) are compared run against run (analysis.flips.variants), not pooled."""
    sweep = table["sweep"].fillna("").astype(str)
    return table[~sweep.str.contains(":", regex=False)]
