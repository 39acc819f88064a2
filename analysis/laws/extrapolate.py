"""Extrapolation backtests: fit laws on small runs, predict larger held-out runs.

* `testbed_backtest` follows Gadre et al. (2024) on their testbed, per corpus: the loss law
  ``L(C, M) = E + (a M^eta + b M^-eta) C^-eta`` (and the compute law ``E + A C^-alpha``) is
  fitted on runs up to 0.411B parameters at M = 20 plus the 0.011B run at M = 320; the
  average top-1 error law ``Err(L) = eps - k exp(-gamma L)`` additionally uses the 1.4B
  M = 20 run. Every larger run is predicted: its loss, and its average (and per-task)
  top-1 error chained from the *predicted* loss (also from its actual loss).
* `leave_largest_out` is the generic version for any sweep: fit on all but the largest
  size of each corpus, predict that size.

rel_error = |predicted - actual| / actual. M here is tokens per parameter (= 20 x the
table's `multiplier`).
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from analysis.config import AnalysisConfig
from analysis.errors import warn
from analysis.groups.build import final_rows
from analysis.laws.downstream import fit_exp_law
from analysis.laws.fit_quality import fit_flag
from analysis.laws.loss import LossLawFit, fit_loss_law, law_inputs
from analysis.schemas import EXTRAP_COLUMNS


def run_frame(table: pd.DataFrame, val_set: str, tasks: list[str], metric: str = "acc"):
    """One row per final run: inputs, loss on `val_set`, per-task top-1 error, average."""
    fin = final_rows(table)
    runs = (
        fin.drop_duplicates("run_id")
        .set_index("run_id")[["corpus", "size", "n_params", "train_tokens", "multiplier"]]
        .copy()
    )
    lv = fin[(fin["kind"] == "val_loss") & (fin["name"] == val_set)]
    runs["loss"] = lv.groupby("run_id")["value"].mean()
    acc = fin[(fin["kind"] == "task") & (fin["metric"] == metric) & (fin["setup"] == "")]
    err = 1.0 - acc.pivot_table(index="run_id", columns="task", values="value", aggfunc="mean")
    present = [t for t in tasks if t in err.columns] or list(err.columns)
    err = err.reindex(index=runs.index, columns=present)
    runs["err_avg"] = err.mean(axis=1, skipna=False)  # a run missing a task has no average
    return runs, err, present


def _fits_row(
    backtest: str, corpus: str, val_set: str, fit: LossLawFit, compute: np.ndarray
) -> dict:
    """`compute`: the fitted runs' FLOPs; their range bounds where figures draw the law."""
    return {
        "kind": "loss_law",
        "backtest": backtest,
        "law": fit.law,
        "corpus": corpus,
        "val_set": val_set,
        "task": "",
        "setup": "",
        "n_points": fit.n,
        "r2": fit.r2,
        "rmse": fit.rmse,
        "params": json.dumps(fit.params),
        "param_ci": json.dumps(fit.param_ci),
        "x_min": float(np.min(compute)),
        "x_max": float(np.max(compute)),
    }


def _predict_block(
    backtest: str,
    corpus: str,
    runs: pd.DataFrame,
    err: pd.DataFrame,
    train: pd.Index,
    err_train: pd.Index,
    targets: pd.Index,
    cfg: AnalysisConfig,
    val_set: str,
) -> tuple[list[dict], list[dict]]:
    rows, fits = [], []
    ci = cfg.bootstrap.ci
    tr = runs.loc[train].dropna(subset=["loss"])
    X = law_inputs(tr["n_params"], tr["train_tokens"])
    tg = runs.loc[targets]
    Xt = law_inputs(tg["n_params"], tg["train_tokens"])
    names = [
        f"{corpus}/{s}@M={20 * m:g}" for s, m in zip(tg["size"], tg["multiplier"], strict=True)
    ]
    laws = {}
    for law in ("gadre", "compute", "chinchilla"):
        if law == "gadre" and tr["multiplier"].nunique() < 2:
            continue  # M must vary for its exponent to be identified
        if law == "chinchilla" and (
            tr["n_params"].nunique() < 2 or tr["train_tokens"].nunique() < 3
        ):
            continue
        fit = fit_loss_law(
            law,
            X,
            tr["loss"].to_numpy(),
            cfg.bootstrap.loss_law_resamples,
            cfg.bootstrap.seed,
            cfg.fit.huber_delta,
            ci,
        )
        if fit is None:
            continue
        laws[law] = fit
        fits.append(_fits_row(backtest, corpus, val_set, fit, X["C"]))
        lflag = fit_flag(law, fit.params, fit.r2, cfg.fit)
        pred = fit.predict(Xt)
        lo, hi = fit.predict_ci(Xt, ci)
        for i, rid in enumerate(tg.index):
            act = tg.at[rid, "loss"]
            rows.append(
                _row(
                    backtest,
                    corpus,
                    names[i],
                    f"loss:{val_set}",
                    law,
                    pred[i],
                    lo[i],
                    hi[i],
                    act,
                    tg.iloc[i],
                    len(tr),
                    lflag,
                )
            )
    etr = runs.loc[err_train].dropna(subset=["loss", "err_avg"])
    if len(etr) < 4:
        warn(f"{backtest} {corpus}: {len(etr)} runs for the error law (needs 4); not fitted")
        return rows, fits
    main = laws.get("gadre") or laws.get("compute") or next(iter(laws.values()), None)
    pred_loss = main.predict(Xt) if main is not None else np.full(len(tg), np.nan)
    cols = [("top1_error_avg", etr["err_avg"], tg["err_avg"])] + [
        (f"top1_error:{t}", err.loc[etr.index, t], err.loc[tg.index, t]) for t in err.columns
    ]
    for quantity, ytr, yact in cols:
        ef = fit_exp_law(etr["loss"].to_numpy(), 1.0 - ytr.to_numpy(float), cfg.fit)
        if not np.isfinite(ef.eps):
            continue
        eflag = fit_flag("exp", {"eps": ef.eps, "ln_k": ef.ln_k, "gamma": ef.gamma}, ef.r2, cfg.fit)
        # a chained prediction is as sound as both of its fits
        mflag = fit_flag(main.law, main.params, main.r2, cfg.fit) if main is not None else ""
        cflag = "; ".join(f for f in (eflag, f"loss law: {mflag}" if mflag else "") if f)
        if quantity == "top1_error_avg":
            fits.append(
                {
                    "kind": "error_law",
                    "backtest": backtest,
                    "law": "exp",
                    "corpus": corpus,
                    "val_set": val_set,
                    "task": "avg",
                    "setup": "",
                    "n_points": ef.n,
                    "r2": ef.r2,
                    "rmse": ef.rmse,
                    "params": json.dumps({"eps": ef.eps, "ln_k": ef.ln_k, "gamma": ef.gamma}),
                    "param_ci": "{}",
                }
            )
        for i in range(len(tg)):
            chained = 1.0 - ef.predict(np.array([pred_loss[i]]))[0]
            direct = 1.0 - ef.predict(np.array([tg["loss"].iloc[i]]))[0]
            law = f"exp<-{main.law}" if main is not None else "exp"
            rows.append(
                _row(
                    backtest,
                    corpus,
                    names[i],
                    quantity,
                    law,
                    chained,
                    np.nan,
                    np.nan,
                    yact.iloc[i],
                    tg.iloc[i],
                    len(etr),
                    cflag,
                )
            )
            rows.append(
                _row(
                    backtest,
                    corpus,
                    names[i],
                    quantity + ".from_actual_loss",
                    "exp",
                    direct,
                    np.nan,
                    np.nan,
                    yact.iloc[i],
                    tg.iloc[i],
                    len(etr),
                    eflag,
                )
            )
    return rows, fits


def _row(backtest, corpus, target, quantity, law, pred, lo, hi, actual, run, n, flag=""):
    rel = abs(pred - actual) / abs(actual) if np.isfinite(actual) and actual != 0 else np.nan
    return {
        "backtest": backtest,
        "corpus": corpus,
        "target": target,
        "run_id": run.name,
        "quantity": quantity,
        "law": law,
        "predicted": float(pred),
        "ci_low": float(lo),
        "ci_high": float(hi),
        "actual": float(actual),
        "rel_error": float(rel),
        "published_rel_error": np.nan,  # set by with_published
        "n_train": int(n),
        "flag": flag,
    }


def with_published(
    extrap: pd.DataFrame, table: pd.DataFrame, published: dict[tuple[str, float, str], float]
) -> pd.DataFrame:
    """extrapolation rows with `published_rel_error` filled where a publication reports the
    same prediction: `published` maps (size, tokens per parameter M, "loss" |
    "top1_error_avg") to its relative error; loss rows and the chained average error match."""
    if extrap.empty or not published:
        return extrap
    runs = final_rows(table).drop_duplicates("run_id").set_index("run_id")
    q = extrap["quantity"].astype(str)
    key = np.where(q.str.startswith("loss:"), "loss", np.where(q == "top1_error_avg", q, ""))
    out = extrap.copy()
    for i, (rid, k) in enumerate(zip(extrap["run_id"], key, strict=True)):
        if k and rid in runs.index:
            size, mult = runs.at[rid, "size"], runs.at[rid, "multiplier"]
            out.iloc[i, out.columns.get_loc("published_rel_error")] = published.get(
                (size, round(20 * mult, 6), k), np.nan
            )
    return out


def testbed_backtest(
    table: pd.DataFrame, cfg: AnalysisConfig, val_set: str
) -> tuple[pd.DataFrame, list[dict]]:
    """The Gadre et al. protocol on the imported testbed (see module doc)."""
    e = cfg.extrapolate
    runs, err, _ = run_frame(table, val_set, e.average_tasks, cfg.accuracy_metric)
    key = runs["size"] + "@" + runs["multiplier"].map(lambda m: f"{m:.1f}")
    small = (runs["n_params"] <= e.testbed_train_max_params) & runs["multiplier"].isin(
        e.testbed_train_multipliers
    )
    train_mask = small | key.isin([_norm_key(k) for k in e.testbed_extra_train])
    err_mask = train_mask | key.isin([_norm_key(k) for k in e.testbed_error_extra])
    target_mask = (runs["n_params"] > e.testbed_train_max_params) & ~err_mask
    rows, fits = [], []
    for corpus, sub in runs.groupby("corpus"):
        idx = sub.index
        tr, etr, tg = idx[train_mask[idx]], idx[err_mask[idx]], idx[target_mask[idx]]
        if len(tg) == 0:
            warn(f"testbed backtest {corpus}: no held-out target runs")
            continue
        r, f = _predict_block("gadre_protocol", str(corpus), runs, err, tr, etr, tg, cfg, val_set)
        rows += r
        fits += f
    return pd.DataFrame(rows, columns=EXTRAP_COLUMNS), fits


def _norm_key(k: str) -> str:
    size, _, mult = k.partition("@")
    return f"{size}@{float(mult):.1f}"


def leave_largest_out(
    table: pd.DataFrame, cfg: AnalysisConfig, val_set: str
) -> tuple[pd.DataFrame, list[dict]]:
    """Per corpus: fit on every size but the largest, predict the largest size's runs."""
    runs, err, _ = run_frame(table, val_set, cfg.extrapolate.average_tasks, cfg.accuracy_metric)
    rows, fits = [], []
    for corpus, sub in runs.groupby("corpus"):
        biggest = sub["n_params"].max()
        tr = sub.index[sub["n_params"] < biggest]
        tg = sub.index[sub["n_params"] == biggest]
        if sub["n_params"].nunique() < 3:
            warn(f"leave-largest-out {corpus}: {sub['n_params'].nunique()} sizes; not fitted")
            continue
        r, f = _predict_block("leave_largest_out", str(corpus), runs, err, tr, tr, tg, cfg, val_set)
        rows += r
        fits += f
    return pd.DataFrame(rows, columns=EXTRAP_COLUMNS), fits
