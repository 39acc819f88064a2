"""Each classification rule on synthetic curves of each category."""

from __future__ import annotations

import numpy as np
import pytest

from analysis.config import ClassifyConfig, FitConfig
from analysis.groups.build import Group, bootstrap_weights
from analysis.trends.classify import CATEGORIES, classify_group, trend_rows
from tests.fixtures.analysis_make import curve, curve_group


def _group(kind: str, n: int = 48, seed: int = 0) -> Group:
    rng = np.random.default_rng(seed)
    x = np.sort(rng.uniform(2.5, 4.5, n))[::-1]
    return curve_group(x, [kind], curve(kind, x, rng)[:, None])


@pytest.mark.parametrize("kind", CATEGORIES)
def test_rule_recognises_synthetic_curve(kind):
    g = _group(kind)
    gt = classify_group(g, bootstrap_weights(g.n, 60, 0), ClassifyConfig(), FitConfig())
    row = trend_rows(gt).iloc[0]
    assert row["category"] == kind
    assert row["p_category"] == row[f"p_{kind}"]
    assert sum(row[f"p_{c}"] for c in CATEGORIES) == pytest.approx(1.0)


def test_too_few_models_is_insufficient():
    g = _group("predictable", n=4)
    gt = classify_group(g, bootstrap_weights(g.n, 10, 0), ClassifyConfig(), FitConfig())
    assert trend_rows(gt).iloc[0]["category"] == "insufficient"


def test_snr_threshold_moves_predictable_to_noisy():
    g = _group("predictable")
    strict = ClassifyConfig(snr_pred=1e6)
    gt = classify_group(g, np.ones((1, g.n)), strict, FitConfig())
    assert trend_rows(gt).iloc[0]["category"] == "noisy"


@pytest.mark.parametrize("n", [12, 24, 48, 104])
def test_pure_noise_is_mostly_trendless_whatever_the_group_size(n):
    # snr subtracts the range K bin means of pure noise show by chance, so small groups are
    # not read as trends more often than large ones. Noise still crosses the direction
    # rules now and then (the bootstrap probabilities report that uncertainty).
    cats = []
    for seed in range(40):
        rng = np.random.default_rng(seed)
        g = _group("trendless", n=n, seed=seed)
        g.Y = 0.3 + rng.normal(0, 0.02, (n, 1))
        gt = classify_group(g, np.ones((1, n)), ClassifyConfig(), FitConfig())
        cats.append(trend_rows(gt).iloc[0]["category"])
    assert cats.count("trendless") >= 0.5 * len(cats)
    assert cats.count("predictable") + cats.count("breakthrough") <= 1


def test_trend_rows_carry_the_rule_features():
    g = _group("predictable")
    row = trend_rows(classify_group(g, np.ones((1, g.n)), ClassifyConfig(), FitConfig())).iloc[0]
    assert row["snr"] > ClassifyConfig().snr_pred and row["net"] == pytest.approx(1.0, abs=0.1)
    assert 0 <= row["drop"] < 0.3 and row["plateau"] > ClassifyConfig().plateau_frac
