"""Flips a reader can trust (issue 21): valid p-values, q-values, the scale and size checks,
and a measured null, on constructed tables whose truth is known."""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.config import AnalysisConfig
from analysis.flips.detect import category_rows, detect_flips
from analysis.flips.evidence import axis_falls, n_facts, with_q
from analysis.flips.rates import null_rates
from analysis.groups.build import POOLED, build_groups
from analysis.ingest.table import conform, with_all_columns
from analysis.pipeline import compute
from analysis.trends.classify import classify


def _table(sizes, mixes=("m",), seeds=(0,), tasks=None, noise=0.01, rng_seed=0, rising=False):
    """Runs over sizes x mixes x seeds; loss falls with size (rises when `rising`); each task
    is acc(loss) + noise."""
    rng = np.random.default_rng(rng_seed)
    tasks = tasks or {"t": lambda L: 0.25 + 0.5 * np.exp(-(L - 2.0))}
    rows = []
    for mix in mixes:
        for seed in seeds:
            for i, n in enumerate(sizes):
                L = 2.0 + 1.5 * (1 - i / max(len(sizes) - 1, 1)) + rng.normal(0, 0.01)
                base = {
                    "run_id": f"{mix}-{n:g}-s{seed}",
                    "source": "t",
                    "corpus": mix,
                    "size": f"{n:g}",
                    "seed": seed,
                    "n_params": float(n),
                    "final": True,
                    "setup": "",
                }
                vals = (("v", L), ("w", 5.0 - L if rising else L + 0.3))
                rows += [
                    {**base, "kind": "val_loss", "name": v, "task": v, "metric": "loss", "value": x}
                    for v, x in vals
                ]
                for name, f in tasks.items():
                    task, _, setup = name.partition("@")
                    rows.append(
                        {
                            **base,
                            "kind": "task",
                            "name": name,
                            "task": task,
                            "setup": setup,
                            "metric": "acc",
                            "value": float(f(L) + rng.normal(0, noise)),
                            "stderr": noise,
                            "chance": 0.25,
                        }
                    )
    return conform(with_all_columns(pd.DataFrame(rows)))


def _trends(table, cfg, n=300):
    return {
        (g.val_set, g.corpus): classify(g, cfg, 1 + hash(g.corpus) % 97, n)
        for g in build_groups(table)
    }


def test_p_values_are_valid_without_a_true_flip():
    """Two independent draws of the same truth (borderline and clear tasks): the share of
    p <= a stays near or below a at every level (valid, roughly uniform at the low end)."""
    cfg = AnalysisConfig()
    laws = {
        "pred": lambda L: 0.25 + 0.5 * np.exp(-(L - 2.0)),
        "weak": lambda L: 0.3 + 0.03 * (3.5 - L),
        "flat": lambda L: 0.3 + 0 * L,
        "down": lambda L: 0.5 - 0.05 * (3.5 - L),
    }
    ps = []
    for rep in range(8):
        tabs = [
            _table(np.geomspace(1e6, 1e8, 8), tasks=laws, noise=0.02, rng_seed=s)
            for s in (rep, 100 + rep)
        ]
        a, b = (_trends(t, cfg)[("v", "m")] for t in tabs)
        idx = list(range(len(a.group.names)))
        ps += [r["p_value"] for r in category_rows(a, b, "null", "", "A", "B", idx, idx)]
    ps = np.array(ps)
    assert len(ps) >= 30
    for alpha in (0.05, 0.1, 0.2):
        assert (ps <= alpha).mean() <= alpha + 0.05


def test_flat_noise_study_gives_no_flip(tmp_path):
    """The issue's flat-noise study: accuracy 0.335-0.345, binomial SE 0.021, 3 sizes x 2
    mixes: nothing is found, and every report says how many tests ran."""
    t = _table(
        [1e5, 3e5, 1e6],
        mixes=("a", "b"),
        tasks={"flat": lambda L: 0.34 + 0 * L},
        noise=0.003,
    )
    t.loc[t["kind"] == "task", "stderr"] = 0.021
    res = compute(t)
    flips = res.tables["flips"]
    assert not (flips["q_value"] < 0.05).any()
    assert "flip_rates" in res.tables


def test_planted_verdict_flip_found_at_q_below_005():
    """One setup rises tightly, the other is flat: a verdict flip among null tests. With
    R = 1000 resamples the smallest p is 0.002: BH over m tests needs m small or many
    discoveries."""
    tasks = {f"n{i}": (lambda L, i=i: 0.3 + 0.01 * i + 0 * L) for i in range(4)}
    tasks["k"] = lambda L: 0.25 + 0.5 * np.exp(-(L - 2.0))
    tasks["k@flat"] = lambda L: 0.3 + 0 * L
    cfg = AnalysisConfig()
    t = _table(np.geomspace(1e6, 1e8, 24), tasks=tasks, noise=0.005)
    tests = with_q(detect_flips(_trends(t, cfg, 1000), None, cfg.flips, "v", "m"))
    hit = tests[(tests["setting"] == "setup") & (tests["task"] == "k")]
    assert len(hit) == 1
    r = hit.iloc[0]
    assert r["level"] == "verdict" and r["q_value"] < 0.05
    others = tests[tests["task"] != "k"]
    assert not (others["level"].isin(["verdict", "reversal"]) & (others["q_value"] < 0.05)).any()


def test_rising_loss_axis_is_refused():
    """A validation loss that rises with size is not a scale: no flip uses it, and the
    report says so in one line."""
    t = _table(np.geomspace(1e6, 1e8, 6), rising=True)
    g = next(g for g in build_groups(t) if g.val_set == "w")
    assert not axis_falls(g.x, g.n_params, g.run_corpus)
    gv = next(g for g in build_groups(t) if g.val_set == "v")
    assert axis_falls(gv.x, gv.n_params, gv.run_corpus)
    res = compute(t)
    assert not (res.tables["flips"]["to"] == "w").any()
    assert any("`w` does not fall with model size" in n for n in res.flip_notes)


def test_too_few_sizes_are_not_compared():
    """2 sizes x 2 mixes x 2 seeds: eight runs, two sizes: no trend comparison."""
    tasks = {"k": lambda L: 0.25 + 0.5 * np.exp(-(L - 2.0)), "k@flat": lambda L: 0.3 + 0 * L}
    t = _table([1e6, 1e7], mixes=("a", "b"), seeds=(0, 1), tasks=tasks)
    cfg = AnalysisConfig()
    assert detect_flips(_trends(t, cfg), None, cfg.flips, "v").empty


def test_null_rate_on_a_ladder_with_two_seeds_is_at_most_5pct():
    laws = {
        f"t{i}": (lambda L, i=i: 0.25 + (0.05 * i) * np.exp(-(L - 2.0)) + 0.01 * i)
        for i in range(8)
    }
    cfg = AnalysisConfig()
    t = _table(np.geomspace(1e6, 1e8, 8), seeds=(1, 2), tasks=laws, noise=0.01)
    gt = _trends(t, cfg, 500)[("v", "m")]
    null = null_rates(gt, t, cfg)
    assert null["null_seed_rate"] <= 0.05
    assert null["null_split_rate"] <= 0.05 and null["null_split_max"] <= 0.05


def test_seed_null_is_measured_when_the_points_are_checkpoints():
    """With `analysis.points=all` each point is `<run>#<step>`: the seed null still finds each
    point's run and its seed (it used to match none and leave the rate unmeasured)."""
    laws = {f"t{i}": (lambda L, i=i: 0.25 + (0.05 * i) * np.exp(-(L - 2.0))) for i in range(4)}
    cfg = AnalysisConfig()
    t = _table(np.geomspace(1e6, 1e8, 6), seeds=(1, 2), tasks=laws, noise=0.01)
    steps = pd.concat([t.assign(run_id=t["run_id"] + f"#{s}") for s in (100, 200)])
    gt = _trends(steps, cfg, 300)[("v", "m")]
    assert gt.group.cluster is not None  # the points are checkpoints of runs
    null = null_rates(gt, steps, cfg)
    assert not np.isnan(null["null_seed_rate"])
    assert null["null_seed_rate"] <= 0.05


def test_a_fact_is_one_test_however_many_rows_show_it():
    """Ten rows of one corpus gap enter Benjamini-Hochberg once: with one other test, the
    fact's q is its p times 2 tests, not times 11."""
    rows = [
        {"p_value": 0.01, "level": "reversal", "family": "scaling", "fact": "gap|t|A|B"}
        for _ in range(10)
    ]
    rows.append({"p_value": 0.5, "level": "verdict", "family": "scaling", "fact": ""})
    q = with_q(pd.DataFrame(rows))["q_value"]
    assert q.iloc[:10].tolist() == [0.02] * 10
    assert q.iloc[10] == 0.5
    assert n_facts(pd.DataFrame(rows)) == 2


def test_seed_rerun_null_counts_verdict_changes_only():
    """OLMo-style reruns: a rerun's trajectory noisy -> trendless is churn, not a verdict
    flip; predictable -> noisy at q < 0.05 is one."""
    from analysis.flips.rates import seed_rerun_rate

    def row(task, effect, q):
        return {
            "task": task,
            "setting": "seed",
            "family": "trajectory",
            "kind": "category",
            "effect": effect,
            "q_value": q,
        }

    tests = pd.DataFrame(
        [
            row("a", "noisy->trendless", 0.001),
            row("b", "predictable->noisy", 0.001),
            row("c", "predictable->noisy", 0.5),
            row("d", "predictable->predictable", 1.0),
        ]
    )
    assert seed_rerun_rate(tests, 0.05) == 0.25


def test_bad_flip_settings_are_one_line_errors():
    import pytest

    from analysis.errors import AnalysisError

    for key, value in (("min_sizes", 1), ("null_splits", -1), ("alpha", 1.5)):
        with pytest.raises(AnalysisError, match=f"analysis.flips.{key}"):
            AnalysisConfig.from_dict({"flips": {key: value}})


def test_trends_on_a_rising_axis_are_not_a_scale_and_not_counted():
    """Classification uses the flips' check: every task against a loss that rises with size
    is `not_a_scale` in trends.csv, its fraction predictable is n/a (not 0), and the x-axis
    that falls is classified as before."""
    t = _table(np.geomspace(1e6, 1e8, 6), rising=True)
    res = compute(t)
    tr = res.tables["trends"]
    assert set(tr.loc[tr["val_set"] == "w", "category"]) == {"not_a_scale"}
    assert set(tr.loc[tr["val_set"] == "v", "category"]) == {"predictable"}
    pred = res.tables["predictable"].set_index("val_set")
    assert np.isnan(pred.loc["w", "frac"]) and pred.loc["v", "frac"] == 1.0
    assert not res.tables["sensitivity"]["val_set"].eq("w").any()


def test_fewer_distinct_sizes_than_min_sizes_are_insufficient():
    """2 sizes x 2 mixes x 3 seeds is 12 runs (>= min_models 6) but 2 distinct
    sizes: every trend is `insufficient` and the report's n/a names the sizes."""
    from analysis.report.findings import insufficient_reason

    t = _table([1e6, 1e7], mixes=("a", "b"), seeds=(0, 1, 2))
    cfg = AnalysisConfig()
    res = compute(t, cfg)
    tr = res.tables["trends"]
    assert set(tr["category"]) == {"insufficient"} and set(tr["n_sizes"]) == {2}
    assert np.isnan(res.tables["predictable"]["frac"]).all()
    why = insufficient_reason(tr, "v", POOLED, cfg)
    assert why == "too few sizes: 2 distinct, a trend needs 3"
