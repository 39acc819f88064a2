"""Per-family backtests with the other families' data (analysis.predict.families): which
families and folds, no held-out score in a fit that calibrates or chooses, the family
intercept, and the alone / with-others table, on the small real-format fixture."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis.ingest.capability import capability_scores
from analysis.predict import backtest, families
from analysis.predict.backtest import rolling_origin
from analysis.predict.families import _trend, with_others_backtest
from analysis.predict.ladder import build_ladder
from analysis.predict.methods import Settings, naive
from analysis.predict.tables import method_table, pooling_table
from analysis.testbeds.obsscaling.loader import STANDARD_TASKS, read_raw
from tests.fixtures.obsscaling_make import FAMILIES, write_obsscaling

PLANTED = "parsinlu_qa@2shot"
#: Gamma cut to 4 sizes: too short for the family-alone fits, long enough with the others
GAMMA_DROPPED = ["org/Gamma-0.4B", "org/Gamma-3.5B"]
LARGEST = {f"org/{f}-{max(s):g}B" for f, (s, _, _) in FAMILIES.items() if len(s) > 1}


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    t = read_raw(write_obsscaling(tmp_path_factory.mktemp("obs") / "obs"))
    t = t[~t["run_id"].isin(GAMMA_DROPPED)].reset_index(drop=True)
    return t[t["run_id"] != "org/Solo-noflops-7B"].reset_index(drop=True)


@pytest.fixture(scope="module")
def pred(table):
    return with_others_backtest(table, "obsscaling", STANDARD_TASKS, Settings())


@pytest.fixture(scope="module")
def alone(table):
    """The family-alone backtest with its naive method only (its fits take a minute here)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(backtest, "METHODS", {"naive": naive})
        return rolling_origin(table, "obsscaling", Settings())[0]


def test_families_with_four_sizes_are_predicted_with_others_not_alone(table, pred, alone):
    assert set(alone["corpus"]) == {"Alpha", "Beta"}  # Gamma has 4 sizes: 3 to fit
    assert set(pred["corpus"]) == {"Alpha", "Beta", "Gamma"}  # Solo has one size
    assert (pred["testbed"] == "obsscaling:with_others").all()
    assert set(pred["method"]) == set(families.METHODS)
    held = pred[pred["split"] == "held_out"]
    assert set(held["target"]) == LARGEST
    gamma = pred[pred["corpus"] == "Gamma"]
    # 4 sizes: one origin (the third size), one held-out target, no internal fold
    assert set(gamma["origin"]) == {"8B"} and set(gamma["split"]) == {"held_out"}
    alpha = pred[pred["corpus"] == "Alpha"]
    assert set(alpha["origin"]) == {"0.7B", "1.5B", "3B", "7B"}  # 3rd size .. 2nd largest
    inner = alpha[alpha["split"] == "internal"]
    assert set(inner["target"]) == {"org/Alpha-1.5B", "org/Alpha-3B", "org/Alpha-7B"}
    # a fold trains on the family up to its origin plus every other family's models
    runs = build_ladder(table).runs
    one = held[(held["corpus"] == "Gamma") & (held["method"] == "naive")].iloc[0]
    assert one["n_train"] == 3 + (runs["corpus"] != "Gamma").sum()
    assert pred.groupby(["corpus", "origin", "target", "task"])["default"].sum().eq(1).all()
    # the fitted methods always have an interval (naive none where the size below has no
    # score, as in the family-alone backtest: such a row counts as not covered)
    fitted = pred[pred["method"] != "naive"]
    assert np.isfinite(fitted[["lo", "hi"]].to_numpy()).all()
    assert (fitted["lo"] <= fitted["predicted"] + 1e-12).all()
    assert (fitted["hi"] >= fitted["predicted"] - 1e-12).all()


def test_held_out_scores_never_reach_calibration_or_the_default(table, pred):
    """Every family's largest model changed on every task: the internal folds, the scales and
    the default are the same (internal fits leave all held-out models out)."""
    t2 = table.copy()
    big = t2["run_id"].isin(LARGEST) & (t2["kind"] == "task")
    t2.loc[big, "value"] = 1.0 - t2.loc[big, "value"]
    b = with_others_backtest(t2, "obsscaling", STANDARD_TASKS, Settings())
    cols = ["corpus", "origin", "target", "task", "method", "predicted", "lo", "hi", "default"]
    inner = pred[pred["split"] == "internal"][cols].reset_index(drop=True)
    pd.testing.assert_frame_equal(inner, b[b["split"] == "internal"][cols].reset_index(drop=True))
    pd.testing.assert_series_equal(
        pred.groupby("method")["scale"].first(), b.groupby("method")["scale"].first()
    )


@pytest.mark.parametrize("task", ["mmlu", PLANTED])
def test_target_score_on_the_task_never_reaches_its_own_prediction(table, pred, task):
    t2 = table.copy()
    m = (t2["run_id"] == "org/Alpha-13B") & (t2["name"] == task)
    t2.loc[m, "value"] = 0.0
    b = with_others_backtest(t2, "obsscaling", STANDARD_TASKS, Settings())
    cols = ["corpus", "origin", "target", "task", "method", "predicted", "lo", "hi"]

    def own(d):
        d = d[(d["target"] == "org/Alpha-13B") & (d["task"] == task)]
        return d[cols].reset_index(drop=True)

    assert len(own(pred)) == 4 * len(families.METHODS)  # 4 origins
    pd.testing.assert_frame_equal(own(pred), own(b))


def test_family_intercept_recovers_a_planted_family_offset(table):
    lad = build_ladder(table)
    s_all = capability_scores(lad.acc[STANDARD_TASKS])
    shift = lad.runs["corpus"].map({"Alpha": -1.0, "Beta": 1.0, "Gamma": 0.0, "Solo": 0.5})
    planted = 0.25 + 0.75 / (1 + np.exp(-(1.3 * s_all + 0.4 + shift)))
    t = table.copy()
    m = t["name"] == PLANTED
    t.loc[m, "value"] = t.loc[m, "run_id"].map(planted).to_numpy()
    t.loc[m, "chance"] = 0.25
    p = with_others_backtest(t, "obsscaling", STANDARD_TASKS, Settings())
    h = p[(p["split"] == "held_out") & (p["task"] == PLANTED)]
    err = h.groupby("method")["abs_error"].mean()
    assert err["capability_sigmoid_offset"] < 0.02
    assert err["capability_sigmoid"] > 3 * err["capability_sigmoid_offset"]
    assert err["naive"] > 3 * err["capability_sigmoid_offset"]


def test_family_trend_is_a_least_squares_line_and_needs_three_points():
    lc = np.array([1.0, 2.0, 3.0, 4.0])
    s = np.vstack([0.5 + 0.25 * lc, [np.nan, np.nan, 1.0, 2.0]])
    out = _trend(s, lc, np.array([6.0]))
    assert out[0, 0] == pytest.approx(2.0) and np.isnan(out[1, 0])


def test_pooling_column_and_the_alone_beside_with_others_table(pred, alone):
    both = pd.concat([alone, pred], ignore_index=True)
    m = method_table(both)
    assert set(m["pooling"]) == {"alone", "with_other_families"}
    assert (m.loc[m["testbed"] == "obsscaling", "pooling"] == "alone").all()
    pool = pooling_table(both)
    assert set(zip(pool["pooling"], pool["targets"], strict=True)) == {
        ("alone", "own"),
        ("with_other_families", "all"),
        ("with_other_families", "alone's"),
    }
    naive = pool[pool["method"] == "naive"].set_index(["pooling", "targets"])
    assert naive.loc[("alone", "own"), "families"] == "Alpha Beta"
    assert naive.loc[("with_other_families", "all"), "families"] == "Alpha Beta Gamma"
    assert naive.loc[("with_other_families", "alone's"), "families"] == "Alpha Beta"
    # the same naive predictor on the same held-out keys: the same rows and errors
    a, w = naive.loc[("alone", "own")], naive.loc[("with_other_families", "alone's")]
    assert a["n"] == w["n"] and a["median_abs_error"] == pytest.approx(w["median_abs_error"])


def test_no_capability_benchmarks_or_one_family_gives_no_rows(table):
    assert with_others_backtest(table, "obsscaling", [], Settings()).empty
    one = table[table["corpus"] == "Alpha"]
    assert with_others_backtest(one, "obsscaling", STANDARD_TASKS, Settings()).empty
