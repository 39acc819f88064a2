"""A ladder of runs as the predictors read it: one row per run, final values per task.

Final values follow the OLMo ladder recipe (Bhagia et al. 2024): the mean of a run's last
`last_n` evaluations within 1% of its final tokens (`analysis.laws.two_step.final_means`), so a
target's anneal is not averaged with earlier checkpoints. The same tail gives each run's
checkpoint-to-checkpoint noise (standard deviation of those evaluations); a run with one
evaluation (Gadre et al.) falls back to the binomial standard error of its accuracy when
the task's size is known.

Rungs are model sizes ordered by parameters; runs of sweeps named `<sweep>:<variant>`
(seed reruns, bf16, other batch sizes) are left out, as in the main analysis.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis.ingest.axes import AXES, main_suite
from analysis.laws.two_step import final_means

RUN_COLUMNS = ["corpus", "size", "n_params", "train_tokens", "multiplier"]


@dataclass
class Ladder:
    """Runs (index run_id: N, D, C, size, rung) and per-task final values (run x task)."""

    runs: pd.DataFrame
    acc: pd.DataFrame  # final accuracy (mean of the last evaluations)
    noise: pd.DataFrame  # checkpoint-to-checkpoint sd of the accuracy (NaN unknown)
    bpb: pd.DataFrame | None  # final task bits-per-byte, None without it
    loss: pd.Series | None  # final validation loss, None without one
    val_set: str  # name of that validation set ("" without one)
    checkpoints: pd.DataFrame  # long rows (run_id, step, tokens, name, metric, value)
    chance: pd.Series  # per task, NaN when unknown

    @property
    def tasks(self) -> list[str]:
        return list(self.acc.columns)

    def sizes(self) -> list[str]:
        """Sizes ordered by parameter count (the rungs)."""
        return list(self.runs.sort_values("n_params").drop_duplicates("size")["size"])

    def subset(self, run_ids) -> Ladder:
        """The same ladder with only `run_ids` (fits see nothing else)."""
        ids = [r for r in self.runs.index if r in set(run_ids)]
        return Ladder(
            self.runs.loc[ids],
            self.acc.loc[ids],
            self.noise.loc[ids],
            None if self.bpb is None else self.bpb.loc[ids],
            None if self.loss is None else self.loss.loc[ids],
            self.val_set,
            self.checkpoints[self.checkpoints["run_id"].isin(ids)],
            self.chance,
        )


def _tail_sd(rows: pd.DataFrame, last_n: int) -> pd.Series:
    last = rows.groupby("run_id")["tokens"].transform("max")
    tail = rows[rows["tokens"] >= 0.99 * last].sort_values("tokens")
    return tail.groupby("run_id")["value"].apply(lambda v: v.tail(last_n).std())


def _pivot_finals(rows: pd.DataFrame, last_n: int, fn=final_means) -> pd.DataFrame:
    out = {name: fn(sub, last_n) for name, sub in rows.groupby("name")}
    return pd.DataFrame(out)


def build_ladder(
    table: pd.DataFrame,
    corpus: str | None = None,
    accuracy_metric: str = "acc",
    val_set: str | None = None,
    last_n: int = 5,
) -> Ladder:
    """The main suite of `table` (one corpus when given) as a Ladder; tasks are the
    accuracy rows' names (a setup variant such as `arc_easy@5shot` is its own task)."""
    t = main_suite(table)
    if corpus is not None:
        t = t[t["corpus"] == corpus]
    t = t[np.isfinite(t["value"].astype(float))]
    runs = t.drop_duplicates("run_id").set_index("run_id")[RUN_COLUMNS].copy()
    runs["N"] = runs["n_params"].astype(float)
    runs["D"] = runs["train_tokens"].astype(float)
    runs["C"] = 6.0 * runs["N"] * runs["D"]
    runs = runs[np.isfinite(runs["C"]) & (runs["C"] > 0)].sort_values(["N", "D"])
    t = t[t["run_id"].isin(runs.index)]
    tasks = t[t["kind"] == "task"]
    acc_rows = tasks[tasks["metric"] == accuracy_metric]
    acc = _pivot_finals(acc_rows, last_n).reindex(index=runs.index)
    noise = _pivot_finals(acc_rows, last_n, _tail_sd).reindex(index=runs.index, columns=acc.columns)
    if acc_rows["step"].isna().all() or noise.isna().all().all():
        n = acc_rows.groupby("name")["n_samples"].max().reindex(acc.columns).astype(float)
        noise = np.sqrt(acc * (1 - acc) / n)  # binomial standard error (NaN when n unknown)
    bpb_rows = tasks[(tasks["metric"] == "bpb") & tasks["name"].isin(acc.columns)]
    bpb = _pivot_finals(bpb_rows, last_n).reindex(index=runs.index) if len(bpb_rows) else None
    vl = t[(t["kind"] == "val_loss") & ~t["name"].isin(list(AXES))]  # not compute/params
    present = list(dict.fromkeys(vl["name"]))
    vs = val_set if val_set is not None and val_set in present else (present[0] if present else "")
    loss = final_means(vl[vl["name"] == vs], last_n).reindex(runs.index) if vs else None
    if loss is not None and loss.isna().any():
        loss, vs = None, ""
    ck = tasks[tasks["metric"].isin([accuracy_metric, "bpb"])]
    if vs:
        ck = pd.concat([ck, vl[vl["name"] == vs]])
    ck = ck[["run_id", "step", "tokens", "kind", "name", "metric", "value"]]
    chance = acc_rows.groupby("name")["chance"].max().reindex(acc.columns).astype(float)
    return Ladder(runs, acc, noise, bpb, loss, vs, ck, chance)
