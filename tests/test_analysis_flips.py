"""Flip detection on a constructed ranking reversal, and on a no-flip control."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis.config import AnalysisConfig
from analysis.flips.detect import TEST_COLUMNS, detect_flips
from analysis.groups.build import bootstrap_weights, build_groups
from analysis.ingest.table import conform, with_all_columns
from analysis.trends.classify import classify_group


def _table(reverse: bool) -> pd.DataFrame:
    """Corpus A is 0.08 above B at matched v1 loss; under v2, B is above (or not)."""
    rng = np.random.default_rng(0)
    h = lambda L: 0.2 + np.exp(-(L - 2.0))  # noqa: E731
    hinv = lambda a: 2.0 - np.log(a - 0.2)  # noqa: E731
    rows = []
    for corpus, shift in (("A", 0.0), ("B", -0.08)):
        for i, L1 in enumerate(np.linspace(2.3, 3.6, 24)):
            acc = h(L1) + shift + rng.normal(0, 0.003)
            L2 = hinv(acc - 0.08) if (corpus == "B" and reverse) else hinv(acc - shift)
            base = {
                "run_id": f"{corpus}{i}",
                "source": "t",
                "corpus": corpus,
                "size": str(i),
                "n_params": 1e6 * (i + 1),
                "final": True,
                "setup": "",
            }
            rows += [
                {**base, "kind": "val_loss", "name": v, "task": v, "metric": "loss", "value": L}
                for v, L in (("v1", L1), ("v2", L2))
            ]
            rows.append(
                {
                    **base,
                    "kind": "task",
                    "name": "t",
                    "task": "t",
                    "metric": "acc",
                    "value": acc,
                    "stderr": 0.005,
                    "chance": 0.0,
                }
            )
    return conform(with_all_columns(pd.DataFrame(rows)))


def _flips(table: pd.DataFrame) -> pd.DataFrame:
    cfg = AnalysisConfig()
    trends, weights = {}, {}
    for g in build_groups(table):
        W = bootstrap_weights(g.n, 200, hash(g.corpus) % 1000)
        trends[(g.val_set, g.corpus)] = classify_group(g, W, cfg.classify, cfg.fit)
        weights[(g.val_set, g.corpus)] = W
    return detect_flips(trends, weights, cfg.flips)


def test_constructed_reversal_is_detected():
    flips = _flips(_table(reverse=True))
    assert list(flips.columns) == TEST_COLUMNS
    rev = flips[flips["kind"] == "ranking_reversal"]
    assert len(rev) == 1 and rev.iloc[0]["level"] == "reversal"
    r = rev.iloc[0]
    assert (r["from"], r["to"], r["context"]) == ("v1", "v2", "A vs B")
    assert r["effect_from"] == pytest.approx(0.08, abs=0.02)
    assert r["effect"] == pytest.approx(-0.08, abs=0.02)
    assert r["ci_high"] < 0 and r["p_value"] < 0.05


def test_no_flip_control():
    flips = _flips(_table(reverse=False))
    assert not flips["level"].eq("reversal").any()
    assert (flips["setting"] == "val_set").sum() >= 1  # the gap was tested, and not flagged
