"""Each law recovers known parameters from synthetic noisy data."""

from __future__ import annotations

import numpy as np
import pytest

from analysis.config import FitConfig
from analysis.errors import AnalysisWarning
from analysis.laws.downstream import (
    exp_law_acc,
    fit_exp_grid,
    fit_exp_law,
    fit_linear_batch,
    fit_sigmoid_batch,
    linear_acc,
    sigmoid_acc,
)
from analysis.laws.loss import fit_loss_law, law_inputs, predict_natural


def test_exp_law_recovers_parameters():
    rng = np.random.default_rng(0)
    L = rng.uniform(2.5, 5.0, 80)
    acc = exp_law_acc(L, 0.8, 3.0, 1.5) + rng.normal(0, 0.003, L.size)
    fit = fit_exp_law(L, acc)
    assert fit.eps == pytest.approx(0.8, abs=0.02)
    assert fit.gamma == pytest.approx(1.5, abs=0.1)
    assert fit.ln_k == pytest.approx(3.0, abs=0.3)
    assert fit.r2 > 0.98


def test_exp_law_respects_bounds_on_a_falling_curve():
    L = np.linspace(2.5, 4.0, 30)
    fit = fit_exp_law(L, 0.2 + 0.1 * L)  # inverse: the law cannot follow it
    assert 0 <= fit.eps <= 1 and 0 <= fit.ln_k <= 20 + 1e-9 and 0 <= fit.gamma <= 20


def test_exp_grid_batches_tasks_and_resamples_consistently():
    rng = np.random.default_rng(1)
    L = rng.uniform(2.5, 4.5, 40)
    Y = np.stack([exp_law_acc(L, 0.8, 2.0 + i, 1.0 + 0.3 * i) for i in range(3)], 1)
    W = np.vstack([np.ones(40), rng.multinomial(40, np.full(40, 1 / 40), 2)])
    grid = fit_exp_grid(L, Y, W, FitConfig())
    for t in range(3):
        single = fit_exp_grid(L, Y[:, t], W[:1], FitConfig())
        assert grid.gamma[0, t] == pytest.approx(single.gamma[0, 0])
    assert grid.r2.shape == (3, 3) and np.all(grid.r2[0] > 0.99)


def test_sigmoid_recovers_parameters():
    rng = np.random.default_rng(2)
    x = rng.uniform(0.5, 1.5, 60)
    y = sigmoid_acc(x, 0.5, 0.25, -12.0, 1.0) + rng.normal(0, 0.004, x.size)
    f = fit_sigmoid_batch(x, y[:, None], np.ones((1, x.size)))
    assert f.r2[0, 0] > 0.99
    assert f.a[0, 0] == pytest.approx(0.5, abs=0.05)
    assert f.x0[0, 0] == pytest.approx(1.0, abs=0.05)
    assert f.s[0, 0] < 0


def test_linear_after_transform_recovers_parameters():
    x = np.linspace(2.5, 4.0, 30)
    y = linear_acc(x, 6.0, -2.0, 0.25)
    f = fit_linear_batch(x, y[:, None], np.array([0.25]), np.ones((1, 30)))
    assert f.alpha[0, 0] == pytest.approx(6.0, abs=1e-6)
    assert f.beta[0, 0] == pytest.approx(-2.0, abs=1e-6)


LAW_CASES = {
    "chinchilla": {"E": 1.7, "A": 400.0, "B": 410.0, "alpha": 0.34, "beta": 0.28},
    "gadre": {"E": 1.9, "a": 3.0, "b": 8.0, "eta": 0.1},
    "compute": {"E": 2.0, "A": 300.0, "alpha": 0.15},
}


@pytest.mark.parametrize("law", sorted(LAW_CASES))
def test_loss_laws_recover_parameters(law):
    rng = np.random.default_rng(3)
    N = np.repeat(np.geomspace(1e7, 1e9, 6), 5)
    X = law_inputs(N, N * 20 * np.tile([0.25, 0.5, 1, 4, 16], 6))
    true = LAW_CASES[law]
    L = predict_natural(law, true, X) * np.exp(rng.normal(0, 0.0005, N.size))
    fit = fit_loss_law(law, X, L, n_boot=30)
    assert fit is not None and fit.r2 > 0.99
    for k, v in true.items():
        assert fit.params[k] == pytest.approx(v, rel=0.15), k
    lo, hi = fit.predict_ci(X, 0.9)
    assert np.all(lo <= hi)


def test_loss_law_with_fewer_points_than_parameters_is_skipped():
    X = law_inputs(np.array([1e7, 1e8, 1e9]), np.array([2e8, 2e9, 2e10]))
    with pytest.warns(AnalysisWarning, match="chinchilla: 3 usable points for 5"):
        assert fit_loss_law("chinchilla", X, np.array([4.0, 3.5, 3.0])) is None
