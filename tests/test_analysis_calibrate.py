"""Calibration of the trend rules against labels, and fits that are the same everywhere."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from threadpoolctl import threadpool_limits

from analysis.config import AnalysisConfig, ClassifyConfig, FitConfig
from analysis.errors import AnalysisError
from analysis.groups.build import Group
from analysis.laws.downstream import fit_exp_grid, fit_sigmoid_batch, sigmoid_acc
from analysis.trends.calibrate import (
    CALIBRATION_GRID,
    calibrate,
    cohen_kappa,
    read_labels,
)
from analysis.trends.classify import CATEGORIES, classify_group
from tests.fixtures.analysis_make import curve, curve_group


def _multi_group(per_kind: int = 3, n: int = 64, seed: int = 0) -> Group:
    """One group whose tasks are synthetic curves of every category, `per_kind` each."""
    rng = np.random.default_rng(seed)
    x = np.sort(rng.uniform(2.5, 4.5, n))[::-1]
    names, cols = [], []
    for kind in CATEGORIES:
        for i in range(per_kind):
            names.append(f"{kind}_{i}")
            cols.append(curve(kind, x, rng))
    return curve_group(x, names, np.stack(cols, 1), corpus="all")


def _labels_file(tmp_path, rows: list[tuple[str, str]], header: str = "task\tcategory"):
    path = tmp_path / "labels.tsv"
    path.write_text("# comment line\n" + header + "\n" + "".join(f"{a}\t{b}\n" for a, b in rows))
    return path


BAD_LABELS = [
    ([("predictable_0", "linear")], "task\tcategory", "unknown category 'linear'"),
    ([("no_such_task", "noisy")], "task\tcategory", "unknown task 'no_such_task'"),
    ([("predictable_0", "noisy")], "name\tcategory", "lacks column(s) ['task']"),
    (
        [("predictable_0", "noisy"), ("predictable_0", "inverse")],
        "task\tcategory",
        "task 'predictable_0' labelled twice",
    ),
]


@pytest.mark.parametrize("rows,header,message", BAD_LABELS)
def test_bad_labels_file_is_one_line(tmp_path, rows, header, message):
    path = _labels_file(tmp_path, rows, header)
    with pytest.raises(AnalysisError) as err:
        read_labels(path, _multi_group(1).names)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_missing_labels_file_is_named(tmp_path):
    from analysis.testbeds import labels_for

    cfg = AnalysisConfig.from_dict({"calibration": {"labels": str(tmp_path / "nope.tsv")}})
    with pytest.raises(AnalysisError, match="calibration.labels: no such file"):
        labels_for(cfg.calibration.labels, ["harness"])


def test_cohen_kappa_known_values():
    assert cohen_kappa([1, 1, 0, 0], [1, 1, 0, 0]) == pytest.approx(1.0)
    assert cohen_kappa([1, 0, 1, 0], [1, 1, 0, 0]) == pytest.approx(0.0)
    # 2x2 table [[20, 5], [10, 15]]: po = 0.7, pe = 0.5 -> kappa 0.4
    a = [1] * 25 + [0] * 25
    b = [1] * 20 + [0] * 5 + [1] * 10 + [0] * 15
    assert cohen_kappa(a, b) == pytest.approx(0.4)


def test_calibration_recovers_synthetic_categories_cross_validated():
    g = _multi_group(per_kind=3)
    labels = pd.Series({n: n.rsplit("_", 1)[0] for n in g.names})
    cal = calibrate(g, labels, ClassifyConfig(), prior_frac=None)
    assert cal.metrics["cv_n"] == len(g.names)
    assert cal.metrics["cv_six_way"] >= 0.8 and cal.metrics["cv_kappa"] >= 0.7
    assert set(cal.tuned) == set(CALIBRATION_GRID)
    for k, v in cal.tuned.items():
        assert v in CALIBRATION_GRID[k]
    conf = cal.confusion()
    assert conf.to_numpy().sum() == len(g.names) and list(conf.index) == list(CATEGORIES)


def test_cross_validation_is_not_in_sample():
    # labels that contradict the data can be fitted in-sample by some threshold set but
    # not predicted for a left-out task: cv agreement must fall below the tuned agreement
    g = _multi_group(per_kind=2, seed=3)
    rng = np.random.default_rng(0)
    labels = pd.Series({n: str(rng.choice(CATEGORIES)) for n in g.names})
    cal = calibrate(g, labels, ClassifyConfig(), prior_frac=None)
    tuned_agree = float(np.mean(cal.tasks["tuned"] == cal.tasks["label"]))
    assert cal.metrics["cv_six_way"] < tuned_agree


def test_sigmoid_fit_is_canonical_and_thread_independent():
    rng = np.random.default_rng(7)
    x = rng.uniform(0.5, 1.5, 60)
    y = sigmoid_acc(x, 0.5, 0.25, -12.0, 1.0) + rng.normal(0, 0.004, x.size)
    Y = np.stack([y, 1.0 - y], 1)  # a falling and a rising curve
    fits = []
    for threads in (1, 2):
        with threadpool_limits(threads):
            fits.append(fit_sigmoid_batch(x, Y, np.ones((1, x.size))))
    rev = fit_sigmoid_batch(x[::-1], Y[::-1], np.ones((1, x.size)))  # another summation order
    for f in fits + [rev]:
        assert np.all(f.a[0] >= 0)  # the canonical branch: amplitude >= 0
        assert f.s[0, 0] < 0 < f.s[0, 1]  # direction in the sign of the slope
    for key in ("a", "b", "s", "x0"):
        np.testing.assert_allclose(getattr(fits[0], key), getattr(fits[1], key), rtol=1e-9)
        np.testing.assert_allclose(getattr(fits[0], key), getattr(rev, key), rtol=1e-9)


def test_exp_fits_and_labels_do_not_depend_on_threads_or_row_order():
    g = _multi_group(per_kind=2, seed=5)
    W = np.vstack(
        [np.ones(g.n), np.random.default_rng(1).multinomial(g.n, np.full(g.n, 1 / g.n), 20)]
    )
    outs = []
    for threads in (1, 2):
        with threadpool_limits(threads):
            outs.append(classify_group(g, W, ClassifyConfig(), FitConfig()))
    np.testing.assert_array_equal(outs[0].codes, outs[1].codes)
    np.testing.assert_allclose(outs[0].point.gamma, outs[1].point.gamma, rtol=1e-9)
    perm = np.random.default_rng(2).permutation(g.n)
    grid = fit_exp_grid(g.x, g.Y, W[:1], FitConfig())
    grid_p = fit_exp_grid(g.x[perm], g.Y[perm], W[:1, perm], FitConfig())
    np.testing.assert_array_equal(grid.gamma, grid_p.gamma)
    np.testing.assert_allclose(grid.eps, grid_p.eps, rtol=1e-9, atol=1e-12)


def test_prior_is_a_count_of_tasks_not_a_float_comparison():
    # 0.3913 (the config value) and 18/46 name the same count; a float tolerance made
    # the boundary count (target + tolerance) depend on the fraction's last digits
    g = _multi_group(per_kind=3)
    labels = pd.Series({n: n.rsplit("_", 1)[0] for n in g.names})
    a = calibrate(g, labels, ClassifyConfig(), prior_frac=0.3913, prior_tolerance=2)
    b = calibrate(g, labels, ClassifyConfig(), prior_frac=18 / 46, prior_tolerance=2)
    assert a.tuned == b.tuned and a.metrics == b.metrics
