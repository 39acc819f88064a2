"""Rolling-origin backtests of every predictor on a table's ladder(s).

Rungs are sizes ordered by parameters. For each origin (the 3rd rung and up, while the
origin is at most the testbed's internal limit), every predictor is fitted on the runs of
the rungs at or below it and predicts every run of a larger rung. A prediction whose
target is at or below the limit is an *internal* fold: only those calibrate the intervals
and choose the default method. Targets above the limit are *held out* and only reported.

Internal limits: OLMo ladder 3B (the 7B-4T and 13B-5T targets are held out), Pythia 2.8B
(6.9B and 12B held out), Gadre et al. 411M (their 1.4B and 6.9B held out); a harness sweep
holds out its largest size. Each corpus of a testbed is its own ladder.

ObsScaling (Ruan et al. 2024): each model family is its own ladder, fitted on that family
alone, with the sweep rule: a family's largest size is held out, the smaller ones are its
internal folds. With one model per size, MIN_RUNS = 4 means a fit needs 4 sizes, so a family
needs >= 5 sizes for a held-out fold and >= 6 for an internal one (on the shipped data: 6
families predicted, 4 of them with internal folds, which alone calibrate and choose the
default); 4-size families are too short for these five-parameter fits. The paper's
pooled protocol (fit every family below Llama-2-7B's compute, predict the larger models) is
`analysis.predict.cutoff`, whose rows are the separate testbed `obsscaling:cutoff`.

Besides the single methods, `ensemble` averages the ENSEMBLE_SIZE methods with the lowest
median error on the internal folds (chosen there, like the default method): errors of
chains that compound differently partly cancel.
"""

from __future__ import annotations

import time
import warnings

import numpy as np
import pandas as pd

from analysis.errors import warn
from analysis.predict.intervals import calibrate, noise_sd, with_noise
from analysis.predict.ladder import Ladder, build_ladder
from analysis.predict.methods import METHODS, NotApplicable, Settings, z_value

ENSEMBLE = "ensemble"
ENSEMBLE_SIZE = 3  # the ensemble averages this many methods, the best on internal folds
MIN_SIZES = 3  # rungs a fit needs (Chinchilla's five parameters on >= 3 sizes x tokens)
MIN_RUNS = 4  # and runs (Pythia has one run per size)
#: source -> largest parameter count whose runs are internal folds
INTERNAL_MAX_PARAMS = {"olmo_ladder": 3.2e9, "pythia": 3.0e9, "gadre2024": 0.5e9}
#: source -> token multipliers of the ladder (others left out; None = every run). The OLMo
#: chain is fitted on 1/2/5/10 x Chinchilla, as published; its targets are kept as well.
KEEP_MULTIPLIERS = {"olmo_ladder": (1.0, 2.0, 5.0, 10.0)}
#: default method when a table has too few internal folds to choose: on the internal folds
#: of the three shipped testbeds, the methods that run on all three first, by their worst
#: per-testbed median error (log_acc_compute 0.018, single_step 0.019), then the others by
#: their pooled median (two_step_loss 0.016, two_step 0.014 on the OLMo ladder only, gadre_exp
#: 0.021); the ensemble needs internal folds to pick its members
FALLBACK_ORDER = ["log_acc_compute", "single_step", "two_step_loss", "two_step", "gadre_exp"]

#: one prediction: where it was fitted, what it predicts, and with which method
KEY_COLUMNS = ["testbed", "corpus", "origin", "target", "task", "method"]
#: a fold's raw prediction, before calibration
RAW_COLUMNS = KEY_COLUMNS + ["predicted", "lo_hw", "hi_hw", "actual", "compute_ratio"]
RAW_COLUMNS += ["n_train", "split"]
PREDICTION_COLUMNS = KEY_COLUMNS + [
    "predicted",
    "lo",
    "hi",
    "actual",
    "abs_error",
    "covered",
    "default",
    "split",
    "compute_ratio",
    "n_train",
    "scale",
    "calibrated",
    "lo_hw",
    "hi_hw",
]


def ladders(table: pd.DataFrame, accuracy_metric: str, val_set: str | None, s: Settings):
    """(corpus, Ladder) per corpus of the table's main suite."""
    out = []
    for corpus in sorted(table["corpus"].dropna().astype(str).unique()):
        lad = build_ladder(table, corpus, accuracy_metric, val_set, s.last_n)
        source = str(table["source"].dropna().iloc[0]) if table["source"].notna().any() else ""
        keep = KEEP_MULTIPLIERS.get(source)
        if keep is not None:
            r = lad.runs
            mult = r["multiplier"].to_numpy(float)[:, None]
            ok = np.isclose(mult, np.array(keep)[None, :], rtol=0.02).any(axis=1)
            lad = lad.subset(r.index[ok | (r["N"] > INTERNAL_MAX_PARAMS[source])])
        if len(lad.runs) and lad.tasks:
            out.append((corpus, lad))
    return out


def internal_max(source: str, lad: Ladder) -> float:
    """Largest parameter count of the internal folds (a sweep: all but its largest size)."""
    if source in INTERNAL_MAX_PARAMS:
        return INTERNAL_MAX_PARAMS[source]
    sizes = np.sort(lad.runs["N"].unique())
    return float(sizes[-2]) if sizes.size >= 2 else float("inf")


def predict_all(
    train: Ladder, N: np.ndarray, D: np.ndarray, s: Settings, methods=None, clock=None
) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Every applicable method's (pred, lo_hw, hi_hw), each (T, m), noise included;
    CPU seconds per method are added to `clock` when given."""
    rng = np.random.default_rng(s.seed)
    has_ck = train.checkpoints["step"].notna().any()
    sd = noise_sd(train.noise, s.last_n, bool(has_ck))
    out = {}
    for name in methods or METHODS:
        t0 = time.process_time()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                o = METHODS[name](train, np.asarray(N, float), np.asarray(D, float), s, rng)
        except NotApplicable:
            continue
        except (ValueError, FloatingPointError, np.linalg.LinAlgError) as exc:
            # a degenerate ladder fails one method, never the whole analysis
            warn(f"predictions: {name} could not be fitted on {len(train.runs)} runs ({exc!r})")
            continue
        finally:
            if clock is not None:
                clock[name] = clock.get(name, 0.0) + time.process_time() - t0
        lo, hi = with_noise(o.lo, o.hi, sd, z_value(s.level))
        out[name] = (o.pred, lo, hi)
    return out


def rolling_origin(
    table: pd.DataFrame,
    testbed: str,
    s: Settings | None = None,
    accuracy_metric: str = "acc",
    val_set: str | None = None,
) -> tuple[pd.DataFrame, dict]:
    """Calibrated predictions (PREDICTION_COLUMNS) of every method at every origin, and
    timing / default-method facts."""
    s = s or Settings()
    t0 = time.process_time()
    source = str(table["source"].dropna().iloc[0]) if table["source"].notna().any() else ""
    rows: list[tuple] = []
    clock: dict[str, float] = {}
    for corpus, lad in ladders(table, accuracy_metric, val_set, s):
        limit = internal_max(source, lad)
        sizes = lad.sizes()
        n_of = lad.runs.groupby("size")["N"].max()
        for k in range(MIN_SIZES - 1, len(sizes) - 1):
            origin = sizes[k]
            if n_of[origin] > limit:
                break
            train = lad.subset(lad.runs.index[lad.runs["size"].isin(sizes[: k + 1])])
            tg = lad.runs[lad.runs["N"] > n_of[origin]]
            if len(train.runs) < MIN_RUNS or tg.empty:
                continue
            res = predict_all(train, tg["N"].to_numpy(), tg["D"].to_numpy(), s, clock=clock)
            cmax = train.runs["C"].max()
            for method, (pred, lo, hi) in res.items():
                for i, task in enumerate(lad.tasks):
                    for j, rid in enumerate(tg.index):
                        rows.append(
                            (
                                testbed,
                                corpus,
                                origin,
                                rid,
                                task,
                                method,
                                pred[i, j],
                                lo[i, j],
                                hi[i, j],
                                lad.acc.at[rid, task],
                                tg.at[rid, "C"] / cmax,
                                len(train.runs),
                                "internal" if tg.at[rid, "N"] <= limit else "held_out",
                            )
                        )
    df = pd.DataFrame(rows, columns=RAW_COLUMNS)
    df = df[np.isfinite(df["predicted"].astype(float))]
    members = ensemble_members(df[df["split"] == "internal"])
    df = pd.concat([df, ensemble_rows(df, members)], ignore_index=True)
    if df.empty:
        warn(f"predictions {testbed}: no origin with {MIN_SIZES} sizes and a larger one")
        return pd.DataFrame(columns=PREDICTION_COLUMNS), {"seconds": time.process_time() - t0}
    df = calibrate(df, s.level, df["split"] == "internal")
    df["abs_error"] = (df["predicted"] - df["actual"]).abs()
    default = choose_default(df[df["split"] == "internal"], list(df["method"].unique()))
    df["default"] = df["method"] == default
    info = {
        "default": default,
        "members": members,
        "method_seconds": clock,
        "seconds": time.process_time() - t0,
    }
    return df[PREDICTION_COLUMNS].reset_index(drop=True), info


def _median_errors(internal: pd.DataFrame) -> pd.DataFrame:
    """Per method: median absolute error and count on the internal folds with an actual,
    keeping methods that predict at least 80% of what the best-covering one predicts."""
    ok = internal[np.isfinite(internal["actual"].astype(float))]
    err = (ok["predicted"] - ok["actual"]).abs()
    stats = err.groupby(ok["method"]).agg(["median", "size"])
    return stats[(stats["size"] >= 0.8 * stats["size"].max()) & (stats.index != "naive")]


def ensemble_members(internal: pd.DataFrame, k: int = ENSEMBLE_SIZE) -> list[str]:
    """The `k` methods with the lowest median internal error (none with too few folds)."""
    if len(internal) < 10:
        return []
    stats = _median_errors(internal[internal["method"] != ENSEMBLE])
    if len(stats) < 2:
        return []
    order = {m: i for i, m in enumerate(METHODS)}
    return sorted(stats.index, key=lambda m: (round(stats.at[m, "median"], 6), order[m]))[:k]


def ensemble_rows(df: pd.DataFrame, members: list[str]) -> pd.DataFrame:
    """Rows of method `ensemble`: the mean of the members' predictions where all of them
    predict; raw half-widths = the members' mean half-width combined in quadrature with
    the spread (sd) of their predictions."""
    if not members:
        return df.iloc[:0]
    key = KEY_COLUMNS[:-1]
    sub = df[df["method"].isin(members)]
    g = sub.groupby(key, sort=False)
    agg = g.agg(
        predicted=("predicted", "mean"),
        spread=("predicted", "std"),
        lo_hw=("lo_hw", "mean"),
        hi_hw=("hi_hw", "mean"),
        k=("method", "size"),
    )
    agg = agg[agg["k"] == len(members)]
    first = g.first().loc[agg.index, ["actual", "compute_ratio", "n_train", "split"]]
    out = pd.concat([agg, first], axis=1).reset_index()
    sp = out["spread"].fillna(0.0)
    out["lo_hw"] = np.sqrt(out["lo_hw"] ** 2 + sp**2)
    out["hi_hw"] = np.sqrt(out["hi_hw"] ** 2 + sp**2)
    return out.assign(method=ENSEMBLE)[df.columns]


def choose_default(internal: pd.DataFrame, present: list[str]) -> str:
    """The method with the lowest median absolute error on the internal folds, among those
    that predict at least 80% of the folds the best-covering method predicts (the order of
    METHODS breaks ties); the fallback order when there are too few folds."""
    if len(internal) >= 10:
        stats = _median_errors(internal)
        if not stats.empty:
            order = {m: i for i, m in enumerate([*METHODS, ENSEMBLE])}
            best = sorted(stats.index, key=lambda m: (round(stats.at[m, "median"], 6), order[m]))
            return best[0]
    return next((m for m in FALLBACK_ORDER if m in present), present[0] if present else "naive")
