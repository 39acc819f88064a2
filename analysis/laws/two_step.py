"""Two-step task prediction on a model ladder (Bhagia et al. 2024, arXiv 2412.04403).

Step 1 fits a task's loss at the end of training from parameters N and tokens D,
``L(N, D) = E + A / N^alpha + B / D^beta`` (Chinchilla approach 3: Huber on log residuals,
L-BFGS from a grid; `analysis.laws.loss`), on the final values of the ladder runs.
Step 2 fits accuracy from that loss, ``acc = a / (1 + exp(-s (L - L0))) + b``, on every
ladder checkpoint after the first `step2_min_frac` of training (grid, then least squares
bounded so that accuracy stays in [0, 1] beyond the ladder's range).
Chained, they predict each target's final accuracy from its (N, D) alone.

Variants (the `method` column): ``two_step`` (L = the task's bits-per-byte of the correct
answer), ``c4_loss`` (L = the C4 validation loss, same two steps) and ``single_step``
(accuracy directly from (N, D): ``acc = b + a / (1 + exp(E + A / N^alpha + B / D^beta))``,
fitted by least squares on the final values, with a, b in [0, 1]). Final values are means
over a run's last `last_n` checkpoints (the paper's moving average), keeping only checkpoints
within 1% of the run's final tokens, so a target's anneal is not averaged with its
pre-anneal checkpoints.

Published: the per-task chained predictions for the 13B target that the authors' repository
ships (allenai/OLMo-ladder, `src/scripts/paper/figures/chained_main.csv`, commit 4d99344);
for the 7B target no per-task table was found ("not found": NaN).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import least_squares, minimize

from analysis.config import TwoStepConfig
from analysis.errors import warn
from analysis.laws.downstream import fit_sigmoid_batch, sigmoid_acc
from analysis.laws.loss import law_features, law_init_grid, law_terms, logsumexp

TWO_STEP_COLUMNS = [
    "method",
    "target",
    "task",
    "x_feature",
    "predicted_x",
    "actual_x",
    "predicted",
    "actual",
    "abs_error",
    "rel_error",
    "published_predicted",
    "published_actual",
    "published_abs_error",
    "published_rel_error",
    "n_step1",
    "n_step2",
]
VARIANCE_COLUMNS = [
    "task",
    "run",
    "last_n",
    "acc_sd",
    "acc_cv",
    "bpb_sd",
    "bpb_cv",
    "two_step_abs_error_13B",
    "two_step_abs_error_7B",
]


def fit_chinchilla_many(
    N: np.ndarray, D: np.ndarray, Y: np.ndarray, delta: float = 1e-3, n_starts: int = 3
) -> tuple[np.ndarray, dict[str, float]]:
    """Chinchilla law ``E + A / N^alpha + B / D^beta`` for each row of Y (T, n) at once.

    The tasks' objectives are independent, so one L-BFGS over all of them (block-separable
    Huber loss on log residuals, as in `analysis.laws.loss`) fits every task in one go; each
    task starts from its best points of the same initialisation grid. Returns predictions'
    log-space parameters (T, 5) and the reference point, both for `predict_many`.
    """
    X = {"N": np.asarray(N, float), "D": np.asarray(D, float)}
    ref = {k: float(np.median(np.log(v))) for k, v in X.items()}
    f = law_features("chinchilla", X, ref)
    logy = np.log(np.asarray(Y, float))
    grid = law_init_grid("chinchilla")
    Tg, J = law_terms("chinchilla", grid, f)
    lse = logsumexp(Tg, axis=-1)  # (G, n)
    r = lse[None] - logy[:, None]  # (T, G, n)
    ar = np.abs(r)
    per = np.where(ar <= delta, 0.5 * r * r, delta * (ar - 0.5 * delta)).sum(-1)  # (T, G)
    order = np.argsort(per, axis=1)[:, :n_starts]
    Jf = J.reshape(-1, J.shape[-1])
    T_ = logy.shape[0]

    def fun(flat):
        th = flat.reshape(T_, -1)
        terms = np.einsum("njp,tp->tnj", J, th)
        ls = logsumexp(terms, axis=-1)
        res = ls - logy
        a = np.abs(res)
        h = np.where(a <= delta, 0.5 * res * res, delta * (a - 0.5 * delta))
        soft = np.exp(terms - ls[..., None])
        grad = (np.clip(res, -delta, delta)[..., None] * soft).reshape(T_, -1) @ Jf
        return float(h.sum()), grad.ravel()

    best: np.ndarray | None = None
    best_val: np.ndarray | None = None
    for k in range(order.shape[1]):
        th0 = grid[order[:, k]]
        res = minimize(
            fun,
            th0.ravel(),
            jac=True,
            method="L-BFGS-B",
            options={"maxiter": 3000, "ftol": 1e-15, "gtol": 1e-12},
        )
        th = res.x.reshape(T_, -1)
        val = _per_task_loss(th, J, logy, delta)
        if best is None or best_val is None:
            best, best_val = th, val
        else:
            take = val < best_val
            best[take], best_val[take] = th[take], val[take]
    assert best is not None  # order has at least one column: n_starts >= 1
    return best, ref


def _per_task_loss(th, J, logy, delta):
    ls = logsumexp(np.einsum("njp,tp->tnj", J, th), axis=-1)
    r = ls - logy
    a = np.abs(r)
    return np.where(a <= delta, 0.5 * r * r, delta * (a - 0.5 * delta)).sum(-1)


def predict_many(theta: np.ndarray, ref: dict, N: np.ndarray, D: np.ndarray) -> np.ndarray:
    """(T, m) predictions of the laws fitted by `fit_chinchilla_many` at (N, D) (m,)."""
    f = law_features("chinchilla", {"N": np.asarray(N, float), "D": np.asarray(D, float)}, ref)
    terms, _ = law_terms("chinchilla", theta, f)
    return np.exp(logsumexp(terms, axis=-1))


def trailing_mean(df: pd.DataFrame, window: int) -> pd.DataFrame:
    """Trailing moving average of `value` along each run's checkpoints."""
    df = df.sort_values(["run_id", "tokens"])
    df["value"] = df.groupby("run_id")["value"].transform(
        lambda v: v.rolling(window, min_periods=1).mean()
    )
    return df


def final_means(rows: pd.DataFrame, last_n: int) -> pd.Series:
    """Per run: mean of the last `last_n` checkpoints within 1% of its final tokens."""
    last = rows.groupby("run_id")["tokens"].transform("max")
    tail = rows[rows["tokens"] >= 0.99 * last].sort_values("tokens")
    return tail.groupby("run_id")["value"].apply(lambda v: v.tail(last_n).mean())


def _refine_sigmoid(x: np.ndarray, y: np.ndarray, p0: dict) -> dict:
    """Bounded least-squares polish of a grid sigmoid fit, as a decreasing curve from
    `top` (L -> -inf) to `bottom` (L -> inf) with 0 <= bottom, top <= 1: the grid is coarse
    and the targets lie below the ladder's loss range, where an unbounded fit can run off
    to accuracies above 1."""
    a, b, s, x0 = (p0[k] for k in ("a", "b", "s", "x0"))
    if not np.all(np.isfinite([a, b, s, x0])):
        return p0
    top, bottom = (a + b, b) if s < 0 else (b, a + b)
    start = np.array([np.clip(bottom, 0, 1), np.clip(top, 0, 1), max(abs(s), 1e-3), x0])

    def curve(p, x=x):
        return p[0] + (p[1] - p[0]) / (1 + np.exp(np.clip(p[2] * (x - p[3]), -50, 50)))

    def jac(p, x=x):
        e = np.exp(np.clip(p[2] * (x - p[3]), -50, 50))
        sg = 1 / (1 + e)  # d curve / d top
        dz = -(p[1] - p[0]) * sg * sg * e  # d curve / d z, z = k (x - x0)
        return np.column_stack([1 - sg, sg, dz * (x - p[3]), -dz * p[2]])

    span = float(np.ptp(x)) or 1.0
    fit = least_squares(
        lambda p: curve(p) - y,
        start,
        jac=jac,
        method="trf",
        max_nfev=2000,
        bounds=([0, 0, 0, x.min() - 20 * span], [1, 1, 200 / span, x.max() + 20 * span]),
    )
    bo, to, k, l0 = map(float, fit.x)
    return {"a": to - bo, "b": bo, "s": -k, "x0": l0}


def fit_step2(x: np.ndarray, y: np.ndarray) -> dict | None:
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 5:
        return None
    g = fit_sigmoid_batch(x[ok], y[ok, None], np.ones((1, int(ok.sum()))))
    p = {k: float(getattr(g, k)[0, 0]) for k in ("a", "b", "s", "x0")}
    return _refine_sigmoid(x[ok], y[ok], p)


def _single_step_many(
    N: np.ndarray, D: np.ndarray, Y: np.ndarray, Nt: np.ndarray, Dt: np.ndarray
) -> np.ndarray:
    """Single-step predictions (T, targets): per task,
    ``acc = b + (top - b) / (1 + exp(E + A' (N/1e9)^-alpha + B' (D/1e11)^-beta))`` with
    b, top in [0, 1], fitted by least squares from two starts."""
    lN, lD = np.log(N / 1e9), np.log(D / 1e11)  # scaled so the exponents start near 0

    def f(p, lN, lD):
        bo, to, e, la, alpha, lb, beta = p
        z = e + np.exp(la - alpha * lN) + np.exp(lb - beta * lD)
        return bo + (to - bo) / (1 + np.exp(np.clip(z, -50, 50)))

    lo, hi = [0.0, 0.0, -20.0, -20.0, 0.0, -20.0, 0.0], [1.0, 1.0, 20.0, 20.0, 3.0, 20.0, 3.0]
    out = []
    for y in Y:
        best: Any = None  # scipy's OptimizeResult
        for e0 in (-2.0, 1.0):
            p0 = [
                np.clip(y.min() - 0.05, 0, 1),
                np.clip(y.max() + 0.1, 0, 1),
                e0,
                0.0,
                0.3,
                0.0,
                0.3,
            ]
            r = least_squares(lambda p, y=y: f(p, lN, lD) - y, p0, bounds=(lo, hi), max_nfev=400)
            if best is None or r.cost < best.cost:
                best = r
        out.append(f(best.x, np.log(Nt / 1e9), np.log(Dt / 1e11)))
    return np.array(out)


def _row(method, target, task, feature, px, ax, pred, act, n1, n2) -> dict:
    return {
        "method": method,
        "target": target,
        "task": task,
        "x_feature": feature,
        "predicted_x": px,
        "actual_x": ax,
        "predicted": pred,
        "actual": act,
        "abs_error": abs(pred - act),
        "rel_error": abs(pred - act) / abs(act),
        # set by with_published_chained from the testbed's published numbers
        "published_predicted": np.nan,
        "published_actual": np.nan,
        "published_abs_error": np.nan,
        "published_rel_error": np.nan,
        "n_step1": n1,
        "n_step2": n2,
    }


def two_step_backtest(
    table: pd.DataFrame, cfg: TwoStepConfig, accuracy_metric: str = "acc", huber_delta: float = 1e-3
) -> pd.DataFrame:
    """Predictions for every target and task shared with the ladder (TWO_STEP_COLUMNS)."""
    runs = table.drop_duplicates("run_id").set_index("run_id")
    mult_ok = runs["multiplier"].apply(
        lambda m: any(np.isclose(m, v, rtol=0.02) for v in cfg.train_multipliers)
    )
    ladder = list(
        runs.index[
            runs["size"].isin(cfg.train_sizes)
            & mult_ok
            & ~runs["sweep"].astype(str).str.contains(":")
        ]
    )
    targets = [r for r in cfg.targets if r in runs.index]
    if len(ladder) < 6 or not targets:
        warn(f"two-step backtest: {len(ladder)} ladder runs and targets {targets}; not run")
        return pd.DataFrame(columns=TWO_STEP_COLUMNS)
    tasks = table[table["kind"] == "task"]
    acc = tasks[tasks["metric"] == accuracy_metric]
    bpb = tasks[tasks["metric"] == "bpb"]
    c4 = table[(table["kind"] == "val_loss") & (table["name"] == cfg.loss_val_set)]
    names = sorted(
        set(acc.loc[acc["run_id"].isin(ladder), "name"])
        & set(acc.loc[acc["run_id"].isin(targets), "name"])
        & set(bpb.loc[bpb["run_id"].isin(ladder), "name"])
    )
    Nl = runs.loc[ladder, "n_params"].to_numpy(float)
    Dl = runs.loc[ladder, "train_tokens"].to_numpy(float)
    Nt = runs.loc[targets, "n_params"].to_numpy(float)
    Dt = runs.loc[targets, "train_tokens"].to_numpy(float)
    y_fin = {n: final_means(acc[acc["name"] == n], cfg.last_n) for n in names}
    x_fin = {n: final_means(bpb[bpb["name"] == n], cfg.last_n) for n in names}
    names = [n for n in names if set(ladder) <= set(x_fin[n].index) & set(y_fin[n].index)]
    c4_fin = final_means(c4, cfg.last_n)
    # step 1, every task at once (and the task-free C4 law)
    feats = [("two_step", "task bpb", n, bpb[bpb["name"] == n], x_fin[n]) for n in names]
    if set(ladder) <= set(c4_fin.index):
        feats += [("c4_loss", f"{cfg.loss_val_set} loss", n, c4, c4_fin) for n in names]
    Xl = np.array([fx.loc[ladder].to_numpy(float) for *_, fx in feats])
    theta, ref = fit_chinchilla_many(Nl, Dl, Xl, huber_delta, n_starts=2)
    px_all = predict_many(theta, ref, Nt, Dt)  # (F, targets)
    rows = []
    c4_pts = trailing_mean(c4[c4["run_id"].isin(ladder)].copy(), cfg.last_n)
    for i, (method, feature, name, frows, fx) in enumerate(feats):
        a_name = acc[(acc["name"] == name) & acc["run_id"].isin(ladder)].copy()
        xr = (
            c4_pts
            if method == "c4_loss"
            else trailing_mean(frows[frows["run_id"].isin(ladder)].copy(), cfg.last_n)
        )
        pts = paired_points(xr, trailing_mean(a_name, cfg.last_n), cfg.step2_min_frac)
        s2 = fit_step2(pts["x"].to_numpy(), pts["y"].to_numpy())
        if s2 is None:
            warn(f"two-step {name} ({method}): step 2 could not be fitted")
            continue
        for j, tg in enumerate(targets):
            pred = float(sigmoid_acc(px_all[i, j], **s2))
            rows.append(
                _row(
                    method,
                    tg,
                    name,
                    feature,
                    float(px_all[i, j]),
                    float(fx.get(tg, np.nan)),
                    pred,
                    float(y_fin[name].get(tg, np.nan)),
                    len(ladder),
                    len(pts),
                )
            )
    Y = np.array([y_fin[n].loc[ladder].to_numpy(float) for n in names])
    for k, pred in enumerate(_single_step_many(Nl, Dl, Y, Nt, Dt)):
        for j, tg in enumerate(targets):
            rows.append(
                _row(
                    "single_step",
                    tg,
                    names[k],
                    "(N, D)",
                    np.nan,
                    np.nan,
                    float(pred[j]),
                    float(y_fin[names[k]].get(tg, np.nan)),
                    len(ladder),
                    0,
                )
            )
    return pd.DataFrame(rows, columns=TWO_STEP_COLUMNS)


def paired_points(x_rows: pd.DataFrame, y_rows: pd.DataFrame, min_frac: float) -> pd.DataFrame:
    keys = ["run_id", "step"]
    m = x_rows[keys + ["tokens", "value"]].merge(
        y_rows[keys + ["value"]], on=keys, suffixes=("_x", "_y")
    )
    last = m.groupby("run_id")["tokens"].transform("max")
    m = m[m["tokens"] >= min_frac * last]
    return m.rename(columns={"value_x": "x", "value_y": "y"})


def variance_analysis(
    table: pd.DataFrame, cfg: TwoStepConfig, backtest: pd.DataFrame, accuracy_metric: str = "acc"
) -> pd.DataFrame:
    """Per task: spread of accuracy and bpb over the last checkpoints of `variance_run`
    (standard deviation and coefficient of variation), beside the two-step errors."""
    run = table[(table["run_id"] == cfg.variance_run) & (table["kind"] == "task")]
    if run.empty:
        warn(f"variance analysis: run {cfg.variance_run} not in the table; not run")
        return pd.DataFrame(columns=VARIANCE_COLUMNS)
    steps = sorted(run["step"].dropna().unique())[-cfg.variance_last_n :]
    tail = run[run["step"].isin(steps)]
    rows = []
    err = backtest[backtest["method"] == "two_step"] if not backtest.empty else backtest
    for name, sub in tail.groupby("name"):
        a = sub.loc[sub["metric"] == accuracy_metric, "value"].astype(float)
        b = sub.loc[sub["metric"] == "bpb", "value"].astype(float)
        e = {} if err.empty else err[err["task"] == name].set_index("target")["abs_error"]
        rows.append(
            {
                "task": name,
                "run": cfg.variance_run,
                "last_n": len(steps),
                "acc_sd": a.std(),
                "acc_cv": a.std() / a.mean() if len(a) else np.nan,
                "bpb_sd": b.std(),
                "bpb_cv": b.std() / b.mean() if len(b) else np.nan,
                "two_step_abs_error_13B": _get(e, "13B"),
                "two_step_abs_error_7B": _get(e, "7B"),
            }
        )
    return pd.DataFrame(rows, columns=VARIANCE_COLUMNS)


def _get(e, prefix: str) -> float:
    if isinstance(e, dict) or e is None:
        return np.nan
    hit = [v for k, v in e.items() if str(k).startswith(prefix)]
    return float(hit[0]) if hit else np.nan


def with_published_chained(
    bt: pd.DataFrame, published: dict[str, tuple[float, float]], target_prefix: str = "13B"
) -> pd.DataFrame:
    """two_step rows with the published chained prediction beside ours: `published` maps
    task -> (actual, predicted) for the target named `target_prefix`..., two-step method."""
    if bt.empty or not published:
        return bt
    out = bt.copy()
    for i, r in enumerate(bt.itertuples(index=False)):
        pub = published.get(r.task)
        if pub is None or r.method != "two_step" or not str(r.target).startswith(target_prefix):
            continue
        for col, v in (
            ("published_predicted", pub[1]),
            ("published_actual", pub[0]),
            ("published_abs_error", abs(pub[1] - pub[0])),
            ("published_rel_error", abs(pub[1] - pub[0]) / pub[0]),
        ):
            out.iloc[i, out.columns.get_loc(col)] = v
    return out


def with_two_step(extrap: pd.DataFrame, bt: pd.DataFrame) -> pd.DataFrame:
    """extrapolation.csv rows for the two-step backtest (abs/rel errors beside published)."""
    if bt.empty:
        return extrap
    rows = pd.DataFrame(
        {
            "backtest": "two_step_ladder",
            "corpus": "",
            "target": bt["target"],
            "run_id": bt["target"],
            "quantity": "acc:" + bt["task"],
            "law": bt["method"],
            "predicted": bt["predicted"],
            "ci_low": np.nan,
            "ci_high": np.nan,
            "actual": bt["actual"],
            "rel_error": bt["rel_error"],
            "published_rel_error": bt["published_rel_error"],
            "n_train": bt["n_step1"],
            "abs_error": bt["abs_error"],
            "published_abs_error": bt["published_abs_error"],
        }
    )
    return pd.concat([extrap, rows], ignore_index=True) if not extrap.empty else rows
