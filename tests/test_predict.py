"""Predictors, calibrated intervals, rolling-origin backtests and `harness predict`, on
synthetic ladders small enough to fit in seconds."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis.errors import AnalysisError
from analysis.ingest.table import conform, with_all_columns
from analysis.predict.backtest import choose_default, rolling_origin
from analysis.predict.intervals import calibrate, conformal_scale
from analysis.predict.ladder import build_ladder
from analysis.predict.methods import METHODS, Settings, resample_weights
from analysis.predict.target import predict_target
from analysis.trends.classify import LABELS
from harness.predict_command import parse

SIZES = {"s1": 2e7, "s2": 5e7, "s3": 1.2e8, "s4": 3e8, "s5": 7e8, "s6": 1.6e9}
MULTS = (1.0, 2.0, 5.0, 10.0)
#: task -> (E, A, alpha) of the generating law -ln acc = E + A (C / 1e15)^-alpha
TASKS = {"t_easy": (0.1, 2.0, 0.25), "t_mid": (0.2, 3.0, 0.3), "t_hard": (0.3, 4.0, 0.22)}
FAST = Settings(n_boot=2, n_boot_grid=20)


def _acc(task: str, C: np.ndarray) -> np.ndarray:
    e, a, al = TASKS[task]
    return np.exp(-(e + a * (C / 1e15) ** -al))


def ladder_table(noise: float = 0.0, seed: int = 0) -> pd.DataFrame:
    """6 sizes x 4 token budgets, 5 checkpoints each: accuracy follows a log-accuracy power
    law in compute (plus Gaussian noise per evaluation), bits-per-byte and the validation
    loss follow Chinchilla laws of their own (so the loss-based chains are misspecified)."""
    rng = np.random.default_rng(seed)
    rows = []
    for size, n in SIZES.items():
        for m in MULTS:
            total = 20 * n * m
            run = f"{size}-{m:g}x"
            for k, f in enumerate(np.linspace(0.2, 1.0, 5)):
                tok = total * f
                C = 6 * n * tok
                base = {
                    "run_id": run,
                    "source": "harness",
                    "sweep": "synthetic",
                    "corpus": "mix",
                    "size": size,
                    "seed": 0,
                    "n_params": n,
                    "train_tokens": total,
                    "multiplier": m,
                    "step": k + 1,
                    "tokens": tok,
                    "flops": C,
                    "final": k == 4,
                }
                loss = 1.8 + 400 / n**0.34 + 410 / tok**0.28
                rows.append(
                    base
                    | {"kind": "val_loss", "name": "val", "task": "val", "metric": "loss"}
                    | {"value": loss, "setup": ""}
                )
                for t in TASKS:
                    acc = float(_acc(t, np.array([C]))[0]) + noise * rng.normal()
                    bpb = 0.4 + 300 / n**0.3 + 200 / tok**0.25
                    for metric, v in (("acc", acc), ("bpb", bpb)):
                        rows.append(
                            base
                            | {"kind": "task", "name": t, "task": t, "setup": ""}
                            | {"metric": metric, "value": v, "chance": 0.25, "n_samples": 2000}
                        )
    return conform(with_all_columns(pd.DataFrame(rows)))


@pytest.fixture(scope="module")
def clean():
    return ladder_table()


@pytest.fixture(scope="module")
def clean_backtest(clean):
    return rolling_origin(clean, "synthetic", FAST)


@pytest.fixture
def backtest_once(clean, clean_backtest, monkeypatch):
    """`predict_target` runs the rolling-origin backtest of its table; for `clean` with FAST
    that is exactly `clean_backtest` (seeded), so it gets a copy of that instead of fitting
    every method at every origin again. Any other arguments run the real backtest."""
    import analysis.predict.target as target

    real = target.rolling_origin

    def once(table, testbed, s=None, accuracy_metric="acc", val_set=None):
        same = (testbed, s, accuracy_metric, val_set) == ("synthetic", FAST, "acc", None)
        if table is clean and same:
            df, info = clean_backtest
            return df.copy(), dict(info)
        return real(table, testbed, s, accuracy_metric, val_set)

    monkeypatch.setattr(target, "rolling_origin", once)


def test_every_method_predicts_every_task(clean):
    lad = build_ladder(clean)
    assert lad.tasks == sorted(TASKS) and len(lad.runs) == 24 and lad.val_set == "val"
    rng = np.random.default_rng(0)
    for name, fn in METHODS.items():
        out = fn(lad, np.array([5e9]), np.array([1e11]), FAST, rng)
        assert out.pred.shape == (3, 1), name
        assert np.isfinite(out.pred).all() and ((out.pred >= 0) & (out.pred <= 1)).all(), name
        assert (out.lo >= 0).all() and (out.hi >= 0).all(), name


def test_the_generating_law_wins_and_its_interval_covers(clean_backtest):
    df, info = clean_backtest
    held = df[df["split"] == "held_out"]
    med = held.groupby("method")["abs_error"].median()
    # accuracy is exactly a log-accuracy power law in compute: that method must win
    assert med.idxmin() == "log_acc_compute", med.to_dict()
    assert med["log_acc_compute"] < 0.005
    assert med["log_acc_compute"] < med["naive"] / 5
    la = held[held["method"] == "log_acc_compute"]
    assert la["covered"].mean() >= 0.7  # calibrated to 80% on the internal folds
    assert info["default"] in ("log_acc_compute", "ensemble")
    assert df.loc[df["default"], "method"].nunique() == 1


def test_backtest_splits_and_columns(clean_backtest):
    df, _ = clean_backtest
    assert set(df["split"]) == {"internal", "held_out"}
    # a harness sweep holds out its largest size; internal folds never target it
    assert set(df.loc[df["split"] == "held_out", "target"].str[:2]) == {"s6"}
    assert (df.loc[df["split"] == "internal", "target"].str[:2] != "s6").all()
    assert (df["compute_ratio"] > 0).all()  # a larger size on fewer tokens may be < 1
    assert ((df["lo"] <= df["predicted"]) & (df["predicted"] <= df["hi"])).all()
    assert np.allclose(df["abs_error"], (df["predicted"] - df["actual"]).abs())


def test_noisy_ladder_keeps_coverage():
    df, _ = rolling_origin(ladder_table(noise=0.01, seed=3), "synthetic", FAST)
    held = df[df["split"] == "held_out"]
    d = held[held["default"]]
    assert 0.6 <= d["covered"].mean() <= 1.0
    pooled = held.groupby("method")["covered"].mean()
    assert pooled.between(0.5, 1.0).all(), pooled.to_dict()
    # noise of 0.01 per evaluation: the default still beats the naive baseline
    assert d["abs_error"].median() < held.loc[held["method"] == "naive", "abs_error"].median()


def test_conformal_scale_is_the_finite_sample_quantile():
    scores = np.arange(1, 21, dtype=float)  # 20 scores
    assert conformal_scale(scores, 0.8) == 17.0  # ceil(21 * 0.8) = 17th smallest
    assert np.isnan(conformal_scale(scores[:5], 0.8))  # too few to calibrate


def test_calibration_uses_internal_rows_only():
    rng = np.random.default_rng(0)
    n = 200
    df = pd.DataFrame(
        {
            "method": "m",
            "predicted": 0.5,
            "actual": 0.5 + rng.normal(0, 0.02, n),
            "lo_hw": 0.01,
            "hi_hw": 0.01,
        }
    )
    internal = pd.Series(np.arange(n) < 100)
    # the held-out half is far off: it must not change the scale
    df.loc[~internal, "actual"] = 0.9
    out = calibrate(df, 0.8, internal)
    assert out.loc[internal, "covered"].mean() == pytest.approx(0.8, abs=0.05)
    assert out.loc[~internal, "covered"].mean() == 0.0
    assert out["calibrated"].all()


def test_default_is_chosen_on_internal_folds():
    rows = []
    for method, err in (("two_step", 0.01), ("single_step", 0.02), ("naive", 0.0)):
        for _ in range(20):
            rows.append({"method": method, "predicted": 0.5 + err, "actual": 0.5})
    internal = pd.DataFrame(rows)
    # naive is the baseline, never the default, even when it errs least
    assert choose_default(internal, ["two_step", "single_step", "naive"]) == "two_step"
    # too few folds: the fallback order
    assert choose_default(internal.iloc[:3], ["single_step", "naive"]) == "single_step"


def test_one_run_per_size_gets_delete_one_resamples(clean):
    lad = build_ladder(clean)
    one = lad.subset([r for r in lad.runs.index if r.endswith("-10x")])
    W = resample_weights(one, 8, np.random.default_rng(0))
    assert (W[0] == 1).all() and (W[1:].sum(1) == len(one.runs) - 1).all()
    W = resample_weights(lad, 8, np.random.default_rng(0))
    per_size = pd.DataFrame(W[1:].T).groupby(lad.runs["size"].to_numpy()).sum()
    assert (per_size == 4).all().all()  # every size keeps its 4 draws


def test_predict_target_rejects_bad_targets(clean):
    with pytest.raises(AnalysisError, match="target.params"):
        predict_target(clean, "synthetic", 1e8, 1e10, s=FAST)
    with pytest.raises(AnalysisError, match="task: 'nope'"):
        predict_target(clean, "synthetic", 1e10, 2e11, tasks=["nope"], s=FAST)
    few = clean[clean["size"].isin(["s1", "s2"])]
    with pytest.raises(AnalysisError, match="runs:"):
        predict_target(few, "synthetic", 1e10, 2e11, s=FAST)


def test_predict_target_rows(clean, backtest_once):
    tp = predict_target(clean, "synthetic", 4e9, 4e11, s=FAST)
    rows = tp.rows
    assert set(rows["task"]) == set(TASKS)
    assert rows.groupby("task")["default"].sum().eq(1).all()
    truth = {t: float(_acc(t, np.array([6 * 4e9 * 4e11]))[0]) for t in TASKS}
    la = rows[rows["method"] == "log_acc_compute"].set_index("task")
    for t, v in truth.items():
        assert la.at[t, "lo"] <= v <= la.at[t, "hi"]
    assert (rows["compute_ratio"] > 1).all()


@pytest.mark.parametrize(
    "args,msg",
    [
        (["root=x", "source=pythia", "target=a"], "root: give exactly one"),
        (["root=x"], "target: give"),
        (["root=x", "target.params=1e9"], "target.tokens: required"),
        (["root=x", "target.params=-1", "target.tokens=1e9"], "target.params: must be"),
        (["root=x", "target.params=abc", "target.tokens=1e9"], "target.params: 'abc'"),
        (["root=x", "target=a", "colour=red"], "colour: unknown key"),
        (["root=x", "target=a", "target=b"], "target: given twice"),
        (["root=x", "target"], "target: expected key=value"),
    ],
)
def test_parse_rejects_bad_arguments(args, msg):
    from common.errors import ConfigError

    with pytest.raises(ConfigError, match=msg):
        parse(args)


@pytest.mark.parametrize(
    "args,msg",
    [
        (["source=pythia", "target=pythia-70m"], "target.params:"),
        (["source=pythia", "target=pythia-99b"], "target: no run 'pythia-99b'"),
        (["source=nope", "target=x"], "source: unknown testbed 'nope'"),
        (["root=/nonexistent/sweep", "target.params=1e9", "target.tokens=1e9"], "root:"),
        (["source=pythia", "target=pythia-12b", "corpus=pile", "tasks=nope"], "task: 'nope'"),
    ],
)
def test_cli_bad_input_is_one_line_exit_2(args, msg, tmp_path, run_cli):
    code, _, err = run_cli("predict", *args, f"out={tmp_path}")
    assert code == 2, err
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and msg in lines[0], err
    assert "Traceback" not in err


def test_analyze_writes_the_predictions_section(clean, tmp_path):
    from analysis.config import AnalysisConfig
    from analysis.pipeline import analyze

    cfg = AnalysisConfig.from_dict(
        {"bootstrap": {"n_resamples": 20, "loss_law_resamples": 0}, "reference_val_set": "val"}
    )
    analyze(clean, tmp_path, cfg)
    t = tmp_path / "tables"
    pred = pd.read_csv(t / "predictions.csv")
    assert {"internal", "held_out"} == set(pred["split"])
    assert pred.groupby(["origin", "target", "task"])["default"].sum().eq(1).all()
    methods = pd.read_csv(t / "prediction_methods.csv")
    assert set(METHODS) <= set(methods["method"])
    cats = pd.read_csv(t / "prediction_categories.csv")
    assert set(cats["category"]) <= set(LABELS) | {"unclassified"}
    report = (tmp_path / "report.md").read_text()
    assert "## Predictions" in report and "predictions_error_vs_ratio.png" in report
    assert (tmp_path / "figures" / "predictions_by_category.png").stat().st_size > 0


def test_summary_table_pools_the_default_coverage(clean_backtest, tmp_path):
    from analysis.predict.stage import predictions_summary
    from analysis.report.markdown import md_table as _md

    df, _ = clean_backtest
    for name in ("a", "b"):
        (tmp_path / name / "tables").mkdir(parents=True)
        df.assign(testbed=name).to_csv(tmp_path / name / "tables" / "predictions.csv", index=False)
    text = predictions_summary(tmp_path, ["a", "b"], _md)
    table = pd.read_csv(tmp_path / "summary" / "predictions.csv")
    assert set(table["testbed"]) == {"a", "b"} and (table["n"] > 0).all()
    held = df[(df["split"] == "held_out") & df["default"]]
    assert f"held-out intervals: {held['covered'].mean():.0%}" in text
