"""The obsscaling compute-cutoff protocol (analysis.predict.cutoff): the split, the fits and
their intervals, on the small real-format fixture."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis.predict import cutoff
from analysis.predict.cutoff import capability_fit, cutoff_backtest, fit_sigmoids, task_table
from analysis.predict.ladder import build_ladder
from analysis.predict.methods import Settings
from analysis.testbeds.obsscaling.loader import STANDARD_TASKS, read_raw
from tests.fixtures.obsscaling_make import write_obsscaling

PLANTED = "parsinlu_qa@2shot"


@pytest.fixture
def table(tmp_path):
    return read_raw(write_obsscaling(tmp_path / "obs"))


def _compute(table: pd.DataFrame) -> pd.Series:
    return build_ladder(table).runs["C"]


def test_cutoff_split_holds_out_every_model_above_it_and_none_below(table):
    pred = cutoff_backtest(table, "obsscaling", STANDARD_TASKS, Settings())
    cut = cutoff.CUTOFF_FLOPS["obsscaling"]
    C = _compute(table)
    above = set(C.index[C > cut])
    assert above == {"org/Beta-12B", "org/Solo-7B"}  # 6 N D: 144 and 126 x 1E21 FLOPs
    held = pred[pred["split"] == "held_out"]
    assert set(held["target"]) == above
    assert (pred["testbed"] == "obsscaling:cutoff").all() and (pred["corpus"] == "all").all()
    inner = pred[pred["split"] == "internal"]
    assert len(inner) and (C[inner["target"]] <= cut).all()
    assert (C[inner["target"]] > cut / cutoff.INNER_RATIO).all()
    # every method predicts every held-out model on every task it has a score for
    assert set(held["method"]) == set(cutoff.METHODS)
    assert held.groupby("method").size().nunique() == 1
    assert pred["default"].sum() == len(
        pred[pred["method"] == pred.loc[pred["default"], "method"].iloc[0]]
    )
    assert (pred["lo"] <= pred["predicted"] + 1e-12).all()
    assert (pred["hi"] >= pred["predicted"] - 1e-12).all()


def test_held_out_scores_never_reach_the_fits(table):
    """Changing the held-out models' scores changes nothing the internal fold reports,
    nor the default method, nor any held-out prediction (only its actual and error)."""
    s = Settings()
    a = cutoff_backtest(table, "obsscaling", STANDARD_TASKS, s)
    t2 = table.copy()
    big = t2["run_id"].isin(["org/Beta-12B", "org/Solo-7B"]) & (t2["kind"] == "task")
    t2.loc[big & ~t2["name"].isin(STANDARD_TASKS), "value"] = 0.0
    b = cutoff_backtest(t2, "obsscaling", STANDARD_TASKS, s)
    cols = ["target", "task", "method", "predicted", "lo", "hi", "default"]
    pd.testing.assert_frame_equal(a[cols], b[cols])


def test_planted_sigmoid_on_the_capability_axis_is_predicted_and_covered(table, monkeypatch):
    monkeypatch.setitem(cutoff.CUTOFF_FLOPS, "obsscaling", 2e22)
    lad = build_ladder(table)
    fit = lad.runs.index[lad.runs["C"] <= 2e22]
    s_cap = capability_fit(lad.acc[STANDARD_TASKS], fit)
    planted = 0.25 + 0.75 / (1 + np.exp(-(1.3 * s_cap + 0.4)))
    t = table.copy()
    m = t["name"] == PLANTED
    t.loc[m, "value"] = t.loc[m, "run_id"].map(planted).to_numpy()
    t.loc[m, "chance"] = 0.25
    pred = cutoff_backtest(t, "obsscaling", STANDARD_TASKS, Settings())
    h = pred[(pred["split"] == "held_out") & (pred["task"] == PLANTED)]
    cap = h[h["method"] == "capability_sigmoid"]
    assert len(cap) >= 5  # the models above 2e22 FLOPs with a capability
    assert cap["abs_error"].max() < 0.005
    assert cap["covered"].all()
    naive = h[h["method"] == "naive"]
    assert naive["abs_error"].mean() > 5 * cap["abs_error"].mean()
    tab = task_table(pred)
    row = tab[(tab["task"] == PLANTED) & (tab["method"] == "capability_sigmoid")].iloc[0]
    assert row["coverage"] == 1.0 and row["n"] == len(cap)


def test_sigmoid_fit_recovers_parameters_and_is_thread_stable():
    x = np.linspace(-2, 3, 30)
    y = 0.25 + 0.75 / (1 + np.exp(-(2.0 * x - 1.0)))
    wb = fit_sigmoids(np.tile(x, (3, 1)), np.tile(y, (3, 1)), 0.25)
    np.testing.assert_allclose(wb, [[2.0, -1.0]] * 3, atol=1e-4)
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        one = fit_sigmoids(x[None, :], y[None, :] + 0.01 * np.sin(7 * x), 0.25)
    with threadpool_limits(2):
        two = fit_sigmoids(x[None, :], y[None, :] + 0.01 * np.sin(7 * x), 0.25)
    np.testing.assert_array_equal(one, two)


def test_other_sources_get_no_cutoff_rows(table):
    t = table.assign(source="pythia")
    assert cutoff_backtest(t, "pythia", STANDARD_TASKS, Settings()).empty
