"""Each classification rule on synthetic curves of each category."""

from __future__ import annotations

import numpy as np
import pytest

from analysis.classify import CATEGORIES, classify_group, trend_rows
from analysis.config import ClassifyConfig, FitConfig
from analysis.matrix import Group, bootstrap_weights
from tests.fixtures.analysis_make import curve


def _group(kind: str, n: int = 48, seed: int = 0) -> Group:
    rng = np.random.default_rng(seed)
    x = np.sort(rng.uniform(2.5, 4.5, n))[::-1]
    y = curve(kind, x, rng)
    return Group(val_set="v", corpus="c", run_ids=np.arange(n).astype(object),
                 run_corpus=np.array(["c"] * n), size=np.array(["s"] * n),
                 n_params=np.geomspace(1e6, 1e9, n), x=x, names=[kind], tasks=[kind],
                 setups=[""], Y=y[:, None], S=np.sqrt(y * (1 - y) / 2000)[:, None],
                 chance=np.array([0.25]))


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


def test_r2_threshold_moves_predictable_to_noisy():
    g = _group("predictable")
    strict = ClassifyConfig(r2_min=1.01)
    gt = classify_group(g, np.ones((1, g.n)), strict, FitConfig())
    assert trend_rows(gt).iloc[0]["category"] == "noisy"
