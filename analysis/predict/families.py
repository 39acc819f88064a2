"""Per-family backtests WITH the other model families' data (observational scaling, Ruan et
al. 2024): the capability axis is shared across families, so a link from capability to a
task's score, fitted on every other family's models plus a family's smaller ones, predicts the
family's larger ones. Rows are testbed `<testbed>:with_others`, beside the family-alone rows
of `analysis.predict.backtest` (whose fits need 4 own sizes, so a family needs >= 5 sizes to
be predicted there); here MIN_OWN_SIZES = 3 own sizes fit, so every family with >= 4 sizes is.

Folds, per family with >= MIN_OWN_SIZES + 1 sizes: an origin at each of its sizes from the
MIN_OWN_SIZES-th to the second largest; the targets are its larger models; training = its
models up to the origin + every model of every other family (any compute: they are public).
Split as in the family-alone backtest: targets up to the family's second largest size are
*internal* (they calibrate the intervals and choose the default), its largest size is *held
out*. An internal fit never sees a held-out model of any family (they leave the other
families' training too), so no held-out score reaches a scale or the default; a held-out fit
uses all other families' models.

Capability: `analysis.predict.cutoff.capability_fit` on the standard benchmarks, leaving the
task out when it is one of them (its own score never enters its x); standardisation and
loadings fitted on the other families' training models of the split (none of the family's
own, so one axis serves all its folds); every model is placed on it by its own benchmarks.

Link, per task, c the chance accuracy (0 where unknown), least squares on the training models
with a score (`cutoff.fit_sigmoids`, weighted): pooled, accuracy = c + (1 - c) sigmoid(w s + b);
`_offset` methods: with one intercept per family, c + (1 - c) sigmoid(w s + b + d_family), the
slope shared, the predicted family's d fitted on its own training models (`_link_families`).
Where the target's capability comes from:

* `capability_sigmoid[_offset]`: its own OTHER benchmark scores (the paper's use: it needs
  the target's other benchmarks, never its score on the task);
* `family_trend_sigmoid[_offset]`: extrapolated along the family's own least-squares line
  s = a + k log10(C) through its training models; nothing of the target is used;
* `naive`: `analysis.predict.methods.naive` on the family's own training models.

Raw half-width: z x the link's RMSE on the training models (the trend methods: times the rungs
extrapolated, `methods.extrapolation_factor`), with the evaluation noise, then split-conformal
scaling on the internal folds (`analysis.predict.intervals`). Default: the fitted method with
the lowest median error on the internal folds (`cutoff.choose_default`).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd

from analysis.predict.cutoff import _sigmoid, capability_of, choose_default, fit_sigmoids
from analysis.predict.intervals import calibrate, noise_sd, with_noise
from analysis.predict.ladder import Ladder, build_ladder
from analysis.predict.methods import Settings, extrapolation_factor, naive, z_value

SUFFIX = ":with_others"
MIN_OWN_SIZES = 3  # a line in log compute through 3 sizes keeps one degree of freedom
MIN_FIT = 4  # models with a score a link needs
FAMILY_ROUNDS = 3  # alternations of the shared link and the family intercepts
REFIT_ROUNDS = 15  # Levenberg-Marquardt iterations of each warm-started refit
OFFSET_ROUNDS = 5  # Gauss-Newton steps of the intercepts per alternation
OFFSET_MAX = 5.0  # bound on the intercept (logit units): a family at chance cannot push it off
METHODS = (
    "capability_sigmoid",
    "capability_sigmoid_offset",
    "family_trend_sigmoid",
    "family_trend_sigmoid_offset",
    "naive",
)


def _axes(bench: pd.DataFrame, train: pd.Index, tasks: list[str]) -> np.ndarray:
    """(T, runs) capability per task, fitted on `train`; a benchmark task's axis leaves it out."""
    A, cols = bench.to_numpy(float), list(bench.columns)
    fit = bench.index.get_indexer(train)
    cache = {}
    out = []
    for t in tasks:
        key = t if t in cols else None
        if key not in cache:
            use = [j for j, b in enumerate(cols) if b != key]
            cache[key] = capability_of(A[:, use], fit)
        out.append(cache[key])
    return np.vstack(out)


def _trend(s_own: np.ndarray, lc_own: np.ndarray, lc_tg: np.ndarray) -> np.ndarray:
    """(T, m) least-squares line s = a + k log10 C per row of s_own (T, n), at lc_tg (m,)."""
    ok = np.isfinite(s_own)
    w = ok.astype(float)
    n = np.maximum(w.sum(1, keepdims=True), 1)
    xm = (w * lc_own).sum(1, keepdims=True) / n
    sm = (w * np.where(ok, s_own, 0.0)).sum(1, keepdims=True) / n
    vx = (w * (lc_own - xm) ** 2).sum(1, keepdims=True)
    k = (w * (lc_own - xm) * (np.where(ok, s_own, 0.0) - sm)).sum(1, keepdims=True)
    k = np.where(vx > 0, k / np.where(vx > 0, vx, 1), np.nan)
    out = sm + k * (lc_tg[None, :] - xm)
    return np.where(ok.sum(1, keepdims=True) >= MIN_OWN_SIZES, out, np.nan)


def _link(S: np.ndarray, Y: np.ndarray, c: np.ndarray, pos: np.ndarray):
    """Per task (w, b) of the link on the runs at `pos`, its RMSE there, and which tasks have
    MIN_FIT points."""
    x, y = S[:, pos], Y[:, pos]
    W = (np.isfinite(x) & np.isfinite(y)).astype(float)
    wb = fit_sigmoids(x, y, c, W)
    fit = c + (1 - c) * _sigmoid(wb[:, :1] * np.where(W > 0, x, 0.0) + wb[:, 1:])
    sse = (W * (np.where(W > 0, y, 0.0) - fit) ** 2).sum(1)
    return wb, np.sqrt(sse / np.maximum(W.sum(1), 1)), W.sum(1) >= MIN_FIT


def _link_families(
    S: np.ndarray, Y: np.ndarray, c: np.ndarray, pos: np.ndarray, fam: np.ndarray, wb: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The link with one intercept per family: c + (1 - c) sigmoid(w s + b + d_f), w and b
    shared, on the runs at `pos` whose families are `fam` (codes 0..F-1), from the pooled fit
    `wb` (T, 2), alternating damped Gauss-Newton steps of the intercepts given (w, b) and a
    refit of (w, b) given the intercepts (warm-started, so REFIT_ROUNDS iterations suffice).
    Returns (w, b) (T, 2), intercepts (T, F) (0 for a family without a score), RMSE (T,)."""
    x, y = S[:, pos], Y[:, pos]
    W = (np.isfinite(x) & np.isfinite(y)).astype(float)
    x, y = np.where(W > 0, x, 0.0), np.where(W > 0, y, 0.0)
    G = np.zeros((len(pos), int(fam.max()) + 1))
    G[np.arange(len(pos)), fam] = 1.0
    d = np.zeros((len(S), G.shape[1]))
    for r in range(FAMILY_ROUNDS + 1):
        if r:
            wb = fit_sigmoids(x, y, c, W, d[:, fam], init=wb, rounds=REFIT_ROUNDS)
        z0 = wb[:, :1] * x + wb[:, 1:]
        for _ in range(OFFSET_ROUNDS):
            sg = _sigmoid(z0 + d[:, fam])
            res, j = y - c - (1 - c) * sg, (1 - c) * sg * (1 - sg)
            step = ((W * j * res) @ G) / ((W * j * j) @ G + 1e-6)
            d = np.clip(d + step, -OFFSET_MAX, OFFSET_MAX)
    d = np.where(W @ G > 0, d, 0.0)
    fit = c + (1 - c) * _sigmoid(wb[:, :1] * x + wb[:, 1:] + d[:, fam])
    sse = (W * (y - fit) ** 2).sum(1)
    return wb, d, np.sqrt(sse / np.maximum(W.sum(1), 1))


def _own(lad: Ladder, pos: np.ndarray) -> Ladder:
    """The runs at `pos` as a Ladder of final values (what `naive`, the extrapolation factor
    and the sizes read), by position: cheaper than `Ladder.subset` in every fold."""
    return replace(lad, runs=lad.runs.iloc[pos], acc=lad.acc.iloc[pos], noise=lad.noise.iloc[pos])


def _fold(
    lad: Ladder,
    S: np.ndarray,
    fam: str,
    origin: str,
    own: pd.Index,
    train: pd.Index,
    targets: pd.Index,
    split: str,
    s: Settings,
) -> list[pd.DataFrame]:
    """Raw rows (backtest.RAW_COLUMNS) of one family, origin and split; S (T, runs): each
    task's capability axis."""
    runs, tasks = lad.runs, lad.tasks
    Y = lad.acc.to_numpy(float).T
    ch = lad.chance.reindex(tasks).to_numpy(float)
    c = np.where(np.isfinite(ch), ch, 0.0)[:, None]
    ix = runs.index.get_indexer
    tr, ow, tg = ix(train), ix(own), ix(targets)
    wb, rmse, ok = _link(S, Y, c, tr)
    codes = pd.factorize(runs["corpus"].astype(str).to_numpy()[tr])[0]
    wbf, d, rmse_f = _link_families(S, Y, c, tr, codes, wb)
    own_code = codes[np.flatnonzero(runs.index[tr] == own[0])[0]]
    lc = np.log10(runs["C"].to_numpy(float))
    z = z_value(s.level)
    own_lad = _own(lad, ow)
    N, D = runs["N"].to_numpy(float)[tg], runs["D"].to_numpy(float)[tg]
    grow = extrapolation_factor(own_lad, N, D)[None, :]
    x_tg: dict[str, tuple[np.ndarray, float | np.ndarray]] = {
        "capability_sigmoid": (S[:, tg], 1.0),
        "family_trend_sigmoid": (_trend(S[:, ow], lc[ow], lc[tg]), grow),
    }
    out = {}
    for m, (x, g) in x_tg.items():
        variants: tuple[tuple[str, tuple[np.ndarray, float | np.ndarray, np.ndarray]], ...] = (
            (m, (wb, 0.0, rmse)),
            (f"{m}_offset", (wbf, d[:, own_code : own_code + 1], rmse_f)),
        )
        for name, (w_b, shift, err) in variants:
            p = c + (1 - c) * _sigmoid(w_b[:, :1] * x + w_b[:, 1:] + shift)
            h = z * err[:, None] * g * np.ones((1, tg.size))
            out[name] = (np.where(ok[:, None], p, np.nan), h, h)
    nv = naive(own_lad, N, D, s, None)
    out["naive"] = (nv.pred, nv.lo, nv.hi)
    sd = noise_sd(lad.noise.iloc[tr], s.last_n, False)
    actual = Y[:, tg]
    T, m = actual.shape
    ratio = runs["C"].to_numpy(float)[tg] / runs["C"].to_numpy(float)[ow].max()
    frames = []
    for method, (pred, lo, hi) in out.items():
        lo, hi = with_noise(lo, hi, sd, z)
        keep = (np.isfinite(pred) & np.isfinite(actual)).ravel()
        frames.append(
            pd.DataFrame(
                {
                    "corpus": fam,
                    "origin": origin,
                    "target": np.tile(targets.to_numpy(), T),
                    "task": np.repeat(tasks, m),
                    "method": method,
                    "predicted": pred.ravel(),
                    "lo_hw": lo.ravel(),
                    "hi_hw": hi.ravel(),
                    "actual": actual.ravel(),
                    "compute_ratio": np.tile(ratio, T),
                    "n_train": len(train),
                    "split": split,
                }
            )[keep]
        )
    return frames


def _families(lad: Ladder, source: str) -> list[tuple[str, pd.DataFrame, list[str], float]]:
    """(family, its runs, its sizes in order, its internal limit) for each family with at
    least MIN_OWN_SIZES + 1 sizes."""
    from analysis.predict.backtest import internal_max

    out = []
    for fam in sorted(lad.runs["corpus"].dropna().astype(str).unique()):
        sub = _own(lad, np.flatnonzero(lad.runs["corpus"].to_numpy() == fam))
        sizes = sub.sizes()
        if len(sizes) > MIN_OWN_SIZES:
            out.append((fam, sub.runs, sizes, internal_max(source, sub)))
    return out


def with_others_backtest(
    table: pd.DataFrame,
    testbed: str,
    benchmarks: list[str],
    s: Settings,
    accuracy_metric: str = "acc",
    lad: Ladder | None = None,
) -> pd.DataFrame:
    """Calibrated rows (backtest.PREDICTION_COLUMNS) of testbed `<testbed>:with_others`;
    empty without benchmarks for a capability axis or without two families. `lad`: the
    table's pooled ladder when already built (`build_ladder(table, None, ...)`)."""
    from analysis.predict.backtest import PREDICTION_COLUMNS, RAW_COLUMNS

    empty = pd.DataFrame(columns=PREDICTION_COLUMNS)
    if not benchmarks or table["corpus"].dropna().nunique() < 2:
        return empty
    source = str(table["source"].dropna().iloc[0]) if table["source"].notna().any() else ""
    lad = lad if lad is not None else build_ladder(table, None, accuracy_metric, None, s.last_n)
    bench = lad.acc[[b for b in benchmarks if b in lad.acc.columns]]
    fams = _families(lad, source)
    if bench.shape[1] < 2 or not fams:
        return empty
    runs = lad.runs
    held = pd.Index([r for _, fr, _, lim in fams for r in fr.index[fr["N"] > lim]])
    frames = []
    for fam, fr, sizes, limit in fams:
        others = runs.index[runs["corpus"] != fam]
        # the axis of a family's folds: fitted on the other families' models of the split
        axes = {
            split: _axes(bench, ext, lad.tasks)
            for split, ext in (("internal", others.difference(held)), ("held_out", others))
        }
        n_of = fr.groupby("size")["N"].max()
        for k in range(MIN_OWN_SIZES - 1, len(sizes) - 1):
            own = fr.index[fr["size"].isin(sizes[: k + 1])]
            bigger = fr[fr["N"] > n_of[sizes[k]]]
            for split, tg in (
                ("internal", bigger.index[bigger["N"] <= limit]),
                ("held_out", bigger.index[bigger["N"] > limit]),
            ):
                if tg.empty:
                    continue
                ext = others.difference(held) if split == "internal" else others
                train = runs.index[runs.index.isin(own.union(ext))]
                frames += _fold(lad, axes[split], fam, sizes[k], own, train, tg, split, s)
    df = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    if df.empty:
        return empty
    df.insert(0, "testbed", f"{testbed}{SUFFIX}")
    df = df[RAW_COLUMNS]
    df = calibrate(df, s.level, df["split"] == "internal")
    df["abs_error"] = (df["predicted"] - df["actual"]).abs()
    df["default"] = df["method"] == choose_default(df[df["split"] == "internal"], METHODS)
    return df[PREDICTION_COLUMNS].reset_index(drop=True)
