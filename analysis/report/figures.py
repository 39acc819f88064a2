"""Figures, drawn only from the written tables (runs.parquet, trends.csv, flips.csv,
fits.csv, extrapolation.csv) so `analysis.pipeline.plot` can redraw them without refitting.

* ``task_grid_<val_set>.png``: accuracy vs validation loss per task, one colour per corpus,
  the pooled exp-law curve, category / its bootstrap probability / R^2 in the title;
* ``flip_<i>_<task>_<from>_vs_<to>.png``: the same task under the two settings, side by side;
* ``loss_vs_compute.png``: final validation loss vs FLOPs per corpus, fitted laws and the
  extrapolated targets (predicted x, actual o).
"""

from __future__ import annotations

import json
import math
import re
from functools import partial
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.ticker import NullFormatter  # noqa: E402

from analysis.config import AnalysisConfig, PlotConfig  # noqa: E402
from analysis.errors import warn  # noqa: E402
from analysis.flips.detect import headline_flips  # noqa: E402
from analysis.groups.build import POOLED  # noqa: E402
from analysis.ingest.axes import AXES, axis_label, main_suite, select_points  # noqa: E402
from analysis.laws.downstream import exp_law_acc  # noqa: E402
from analysis.laws.loss import predict_natural  # noqa: E402
from analysis.output import files as io  # noqa: E402
from analysis.report import style  # noqa: E402
from analysis.schemas import TABLES_READ  # noqa: E402,F401  (harness plot names them)
from analysis.trends.classify import LABELS  # noqa: E402

style.use()


def _safe(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", s)[:60]


def figure_name(
    kind: str, val_set: str = "", task: str = "", frm: str = "", to: str = "", index: int = -1
) -> str:
    """The file stem of a figure, the one place it is built (the report links by it):
    ``task_grid_<val_set>``, ``flip_<index>_<task>_<from>_vs_<to>`` (with index -1: the part
    after the index, ``_<task>_<from>_vs_<to>``, which names the flip whatever its rank),
    ``loss_vs_compute``."""
    if kind == "task_grid":
        return f"task_grid_{_safe(val_set)}"
    if kind == "flip":
        tail = f"_{_safe(task)}_{_safe(frm)}_vs_{_safe(to)}"
        return tail if index < 0 else f"flip_{index}{tail}"
    if kind == "loss_vs_compute":
        return "loss_vs_compute"
    raise ValueError(f"figure kind: unknown '{kind}'")


def _save(fig, path: Path, pcfg: PlotConfig) -> list[Path]:
    """One file per configured format (png, pdf, svg), each written atomically."""
    out = []
    for fmt in pcfg.formats:
        target = path.with_suffix(f".{fmt}")
        io.atomic_write(target, partial(fig.savefig, dpi=pcfg.dpi, format=fmt))
        out.append(target)
    plt.close(fig)
    return out


def _xlabel(val_set: str) -> str:
    """x-axis label with its unit (validation losses are nats per token)."""
    if val_set in ("compute", "params"):
        return axis_label(val_set)
    return f"validation loss on {val_set} (nats/token)"


ACC_LABEL = "accuracy (fraction correct)"
CATEGORY_TEXT = {"insufficient": "too few models or sizes", "not_a_scale": "x-axis is not a scale"}
FLIP_TEXT = {
    "ranking_reversal": "Ranking reversal",
    "ranking_change": "Ranking change",
    "category": "Category change",
    "slope_sign": "Slope sign flip",
}


def _r2_text(r2: float) -> str:
    if not np.isfinite(r2):
        return "R² n/a"
    if r2 < 0.005:  # would print as 0.00 or -0.00: the law explains nothing
        return "R² ≤ 0 (no fit)" if r2 <= 0 else "R² ≈ 0 (no fit)"
    return f"R² {r2:.2f}"


def _number(v) -> str:
    """A flip effect for a title: floats to 3 decimals, labels ('noisy->predictable') as is."""
    try:
        return f"{float(v):+.3f}"
    except (TypeError, ValueError):
        return str(v).replace("->", " → ")


def grid_legend() -> list:
    """Handles for every line style a task-grid panel may draw (markers are per corpus)."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    return [
        Line2D([], [], color="black", lw=1.5, label="fitted law, all runs pooled"),
        Line2D(
            [], [], color="grey", lw=0.8, ls="--", label="fitted law, one data mix (its colour)"
        ),
        Line2D([], [], color="grey", lw=0.8, ls=":", label="chance"),
        Patch(color="grey", alpha=0.2, label="binomial 95% band around the pooled fit"),
    ]


class _Data:
    """Final-checkpoint accuracies and losses, reshaped once for all panels."""

    def __init__(self, out_dir: Path, cfg: AnalysisConfig):
        runs = main_suite(pd.read_parquet(out_dir / "tables" / "runs.parquet"))
        # loss laws are fitted on final checkpoints whatever `points` says (laws.extrapolate)
        last = runs[runs["final"].fillna(False).astype(bool)]
        self.run_loss = last[last["kind"] == "val_loss"].pivot_table(
            index="run_id", columns="name", values="value", aggfunc="mean"
        )
        last = last.drop_duplicates("run_id").set_index("run_id")
        self.run_flops, self.run_corpus = last["flops"].astype(float), last["corpus"].astype(str)
        # the points the groups used: main suite, final or every checkpoint (analysis.ingest.axes)
        runs = select_points(runs, cfg.points, cfg.checkpoint_min_frac)
        fin = runs[runs["final"].fillna(False).astype(bool)]
        self.loss = fin[fin["kind"] == "val_loss"].pivot_table(
            index="run_id", columns="name", values="value", aggfunc="mean"
        )
        acc = fin[(fin["kind"] == "task") & (fin["metric"] == cfg.accuracy_metric)]
        self.acc = acc.pivot_table(index="run_id", columns="name", values="value", aggfunc="mean")
        info = fin.drop_duplicates("run_id").set_index("run_id")
        self.corpus = info["corpus"].astype(str)
        self.trends = io.read_csv(out_dir / "tables" / "trends.csv")
        every = sorted(self.corpus.unique())
        # corpora with a group of their own (min_corpus_models); the rest are drawn together,
        # only in pooled panels (dozens of one-size model families otherwise)
        own = set(self.trends["corpus"]) if not self.trends.empty else set(every)
        self.corpora = [c for c in every if c in own] or every
        self.pooled_only = [c for c in every if c not in self.corpora]
        cmap = plt.get_cmap("tab10")
        self.color = {c: cmap(i % 10) for i, c in enumerate(self.corpora)}

    def trend(self, val_set: str, corpus: str, name: str) -> pd.Series | None:
        t = self.trends
        if t.empty:
            return None
        sub = t[(t["val_set"] == val_set) & (t["corpus"] == corpus) & (t["name"] == name)]
        return None if sub.empty else sub.iloc[0]


def _law_points(tr: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """The exp law of a trends row over its fitted loss range plus the stated margin (the
    law is linear in loss), accuracies outside [0, 1] left undrawn."""
    L = style.fit_grid(tr["x_min"], tr["x_max"], log=False, n=60)
    return L, style.accuracy(exp_law_acc(L, tr["eps"], tr["ln_k"], tr["gamma"]))


def _has_law(tr: pd.Series | None) -> bool:
    return tr is not None and bool(
        np.isfinite([tr["eps"], tr["ln_k"], tr["gamma"], tr["x_min"], tr["x_max"]]).all()
    )


def _curve(ax, tr: pd.Series | None, color, lw=1.5, ls="-"):
    if _has_law(tr):
        ax.plot(*_law_points(tr), color=color, lw=lw, ls=ls)


def _panel(
    ax, d: _Data, val_set: str, name: str, corpora: list[str], title_corpus: str, small: bool = True
) -> tuple[float, float] | None:
    """Draw one task's panel; returns the accuracy range it needs (None: nothing drawn),
    which the caller applies (alone, or joined with the other panels of a comparison)."""
    if val_set not in d.loss or name not in d.acc:
        ax.set_title(f"{name}: no data", fontsize=style.MIN_FONT)
        return None
    for c in corpora:
        ids = d.corpus.index[d.corpus == c]
        ids = [i for i in ids if i in d.acc.index and i in d.loss.index]
        ax.scatter(
            d.loss.loc[ids, val_set],
            d.acc.loc[ids, name],
            s=8 if small else 18,
            color=d.color[c],
            label=c,
            alpha=0.8,
        )
        if len(corpora) > 1 or title_corpus != c:
            _curve(ax, d.trend(val_set, c, name), d.color[c], lw=0.8, ls="--")
    if title_corpus == POOLED and d.pooled_only:
        ids = d.corpus.index[d.corpus.isin(d.pooled_only)]
        ids = [i for i in ids if i in d.acc.index and i in d.loss.index]
        ax.scatter(
            d.loss.loc[ids, val_set],
            d.acc.loc[ids, name],
            s=8 if small else 18,
            color="grey",
            marker="x",
            label=f"{len(d.pooled_only)} more corpora (pooled only)",
            alpha=0.6,
        )
    tr = d.trend(val_set, title_corpus, name)
    _curve(ax, tr, "black")
    yrange = _band_and_chance(
        ax, tr, d.acc.loc[[i for i in d.acc.index if i in d.loss.index], name]
    )
    cat = (
        ""
        if tr is None
        else (
            f"{CATEGORY_TEXT.get(tr['category'], tr['category'])} "
            f"(p {tr['p_category']:.2f}), {_r2_text(float(tr['r2']))}"
            + (
                ", between mixes only"
                if str(tr.get("within_mix", "")) == "between mixes only"
                else ""
            )
        )
    )
    ax.set_title(f"{name}\n{cat}", fontsize=style.MIN_FONT if small else 10)
    ax.invert_xaxis()  # better (lower) loss to the right, as in the paper
    ax.tick_params(labelsize=style.MIN_FONT)
    return yrange


def _band_and_chance(ax, tr: pd.Series | None, acc: pd.Series) -> tuple[float, float] | None:
    """Chance as a dotted line, the binomial 95% band around the pooled fit, and the y-range
    wide enough for both (returned): scatter within the band is noise and must look like it."""
    lo, hi = np.nanmin(acc.to_numpy(float)), np.nanmax(acc.to_numpy(float))
    if tr is None:
        return _acc_range(lo, hi)
    se = float(tr.get("binomial_se", np.nan))
    chance = float(tr.get("chance", np.nan))
    if np.isfinite(chance):
        ax.axhline(chance, color="grey", lw=0.8, ls=":")
        lo, hi = min(lo, chance), max(hi, chance)
    if np.isfinite(se) and _has_law(tr):
        L, y = _law_points(tr)
        ax.fill_between(
            L,
            np.clip(y - 1.96 * se, 0, 1),
            np.clip(y + 1.96 * se, 0, 1),
            color="grey",
            alpha=0.2,
            lw=0,
        )
        if np.isfinite(y).any():
            lo = min(lo, float(np.nanmin(y)) - 1.96 * se)
            hi = max(hi, float(np.nanmax(y)) + 1.96 * se)
    if np.isfinite(se):
        lo, hi = lo - 2 * se, hi + 2 * se
    return _acc_range(lo, hi)


def _acc_range(lo: float, hi: float) -> tuple[float, float] | None:
    """[lo, hi] padded by 5% and kept within [0, 1] (None when either end is unknown)."""
    if not np.isfinite([lo, hi]).all():
        return None
    pad = 0.05 * max(hi - lo, 0.02)
    return max(0.0, lo - pad), min(1.0, hi + pad)


def _join(ranges: list[tuple[float, float] | None]) -> tuple[float, float] | None:
    """One y-range covering every panel's, so the panels of a comparison share their scale."""
    known = [r for r in ranges if r is not None]
    return (min(r[0] for r in known), max(r[1] for r in known)) if known else None


def _head_corpus(d: _Data) -> str:
    return POOLED if len(d.corpora) > 1 else d.corpora[0]


def task_grids(out_dir: Path, d: _Data, cfg: AnalysisConfig) -> list[Path]:
    vsets = [v for v in cfg.plot.grid_val_sets if v in d.loss.columns]
    if not vsets:
        ref = cfg.reference_val_set
        vsets = [ref if ref in d.loss.columns else d.loss.columns[0]]
    head = _head_corpus(d)
    order = {c: i for i, c in enumerate(LABELS)}
    files = []
    for v in vsets:
        t = (
            d.trends[(d.trends["val_set"] == v) & (d.trends["corpus"] == head)]
            if not d.trends.empty
            else pd.DataFrame()
        )
        names = (
            list(
                t.sort_values(
                    ["category", "name"],
                    key=lambda s: s.map(order).fillna(99) if s.name == "category" else s,
                )["name"]
            )
            if not t.empty
            else list(d.acc.columns)
        )
        ncol = min(6, max(math.ceil(math.sqrt(len(names))), 1))  # roughly square, 6 wide at most
        nrow = math.ceil(len(names) / ncol)
        fig, axes = plt.subplots(nrow, ncol, figsize=(3.0 * ncol, 2.5 * nrow + 0.6), squeeze=False)
        for ax, name in zip(axes.flat, names, strict=False):
            # each panel is its own task (own chance level): its own y-range
            yr = _panel(ax, d, v, name, d.corpora, head)
            if yr is not None:
                ax.set_ylim(*yr)
        for ax in axes.flat[len(names) :]:
            ax.axis("off")
        handles, labels = axes.flat[0].get_legend_handles_labels()
        handles += grid_legend()
        ncol = min(len(handles), max(2, min(ncol, 4)))  # as wide as the panels allow
        fig.legend(handles=handles, loc="upper center", ncol=ncol, fontsize=style.MIN_FONT)
        fig.supxlabel(f"{_xlabel(v)}; fitted laws {style.MARGIN_TEXT}", fontsize=9)
        fig.supylabel(ACC_LABEL, fontsize=9)
        top = 1 - (0.22 * math.ceil(len(handles) / ncol) + 0.15) / (2.5 * nrow + 0.6)
        fig.tight_layout(rect=(0, 0, 1, top))
        stem = figure_name("task_grid", val_set=v)
        files += _save(fig, out_dir / "figures" / f"{stem}.png", cfg.plot)
    return files


def _pick_flips(flips: pd.DataFrame, cfg: AnalysisConfig) -> pd.DataFrame:
    if flips.empty:
        return flips
    ref = cfg.reference_val_set
    # metric flips and the task_bpb axis have no loss panel to draw (their tables say it)
    f = flips[
        (flips["setting"] != "metric")
        & (flips["to"] != "task_bpb")
        & ~flips["from"].astype(str).str.startswith("interp(")
    ].copy()
    f["pinned"] = (
        f["task"].isin(cfg.plot.flip_tasks)
        & (f["setting"] == "val_set")
        & ((f["from"] == ref) | (f["to"] == ref))
        & f["kind"].str.startswith("ranking")
    )
    f["code"] = f["from"].str.contains("code") | f["to"].str.contains("code")
    f["rank"] = (
        f["kind"]
        .map({"ranking_reversal": 0, "category": 1, "ranking_change": 2, "slope_sign": 3})
        .fillna(4)
    )
    f = f.sort_values(["pinned", "code", "rank", "p_value"], ascending=[False, False, True, True])
    # the flips report.md's first screen names are drawn first, so every one has its figure
    head = headline_flips(flips, ref, cfg.flips.alpha)
    first = f.loc[[i for i in head.index if i in f.index]]
    f = f.drop_duplicates(["task", "setup", "setting", "from", "to"])
    pinned = f[f["pinned"] & ~f.index.isin(first.index)].drop_duplicates("task")
    rest = f[~f.index.isin(pinned.index) & ~f.index.isin(first.index)]
    return pd.concat([first, pinned, rest]).head(cfg.plot.max_flip_figures)


VARIANT_SETTINGS = ("seed", "precision", "batch_size")  # run-vs-run flips (analysis.flips.variants)


def _trajectory_figure(out_dir: Path, r, name: str, i: int, cfg: AnalysisConfig) -> list[Path]:
    """A run and its variant along training: accuracy against training FLOPs."""
    runs = pd.read_parquet(out_dir / "tables" / "runs.parquet")
    rows = runs[
        (runs["kind"] == "task")
        & (runs["metric"] == cfg.accuracy_metric)
        & (runs["name"] == name)
        & runs["run_id"].isin([r.frm, r.to])
    ]
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for rid, sub in rows.sort_values("flops").groupby("run_id"):
        ax.plot(sub["flops"], sub["value"], "o-", ms=3, lw=1, label=str(rid))
    ax.set_xscale("log")
    ax.set_xlabel("training FLOPs at the checkpoint (6ND)")
    ax.set_ylabel("accuracy")
    ax.legend(loc="best")
    eff = r.effect if isinstance(r.effect, str) else f"{float(r.effect):+.3f}"
    ax.set_title(f"{r.kind} ({r.setting}): {name}\n[{r.context}] {eff}", fontsize=9)
    fig.tight_layout()
    fname = figure_name("flip", task=name, frm=r.frm, to=r.to, index=i) + ".png"
    return _save(fig, out_dir / "figures" / fname, cfg.plot)


def flip_figures(out_dir: Path, d: _Data, cfg: AnalysisConfig) -> list[Path]:
    flips = io.read_csv(out_dir / "tables" / "flips.csv")
    files = []
    head = _head_corpus(d)
    for i, r in enumerate(_pick_flips(flips, cfg).rename(columns={"from": "frm"}).itertuples()):
        name = r.task if not r.setup else f"{r.task}@{r.setup}"
        if r.setting in VARIANT_SETTINGS:
            files += _trajectory_figure(out_dir, r, name, i, cfg)
            continue
        ctx = dict(kv.split("=", 1) for kv in str(r.context).split(",") if "=" in kv)
        if r.setting == "val_set":
            corp = [c for c in d.corpora if c in str(r.context)] or d.corpora
            tc = ctx.get("corpus", head if len(corp) > 1 else corp[0])
            panels = [(r.frm, name, corp, tc), (r.to, name, corp, tc)]
        elif r.setting == "corpus":
            v: str | None = ctx.get("val_set", cfg.reference_val_set)
            panels = [(v, name, [r.frm], r.frm), (v, name, [r.to], r.to)]
        else:
            v, c = ctx.get("val_set"), ctx.get("corpus", head)
            corp = d.corpora if c == POOLED else [c]

            panels = [
                (v, r.task if s == "default" else f"{r.task}@{s}", corp, c) for s in (r.frm, r.to)
            ]
        # one accuracy scale for both panels: chance sits at the same height in each
        fig, axes = plt.subplots(1, 2, figsize=(8, 4.6), sharey=True)
        yr = _join(
            [
                _panel(ax, d, v, nm, corp, tc, small=False)
                for ax, (v, nm, corp, tc) in zip(axes, panels, strict=True)
            ]
        )
        for ax, (v, *_) in zip(axes, panels, strict=True):
            ax.set_xlabel(_xlabel(v))
            ax.yaxis.set_tick_params(labelleft=True)
        if yr is not None:
            axes[0].set_ylim(*yr)
        axes[0].set_ylabel(ACC_LABEL)
        # every panel's point labels once (each panel may show other corpora), then the lines
        seen: dict[str, object] = {}
        for ax in axes:
            for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
                seen.setdefault(lab, h)
        handles = list(seen.values()) + grid_legend()
        # below the panels, never over the points
        fig.legend(handles=handles, loc="lower center", ncol=3, fontsize=style.MIN_FONT)
        what = FLIP_TEXT.get(r.kind, str(r.kind).replace("_", " ").capitalize())
        setting = str(r.setting).replace("_", " ")
        context = str(r.context).replace(",", ", ").replace("=", " ")
        fig.suptitle(
            f"{what} when the {setting} changes from {r.frm} to {r.to}: {name}\n"
            f"({context}; effect {_number(r.effect)}; fitted laws {style.MARGIN_TEXT})",
            fontsize=9,
        )
        rows = math.ceil(len(handles) / 3)
        fig.tight_layout(rect=(0, (0.25 * rows + 0.1) / 4.6, 1, 1))
        fname = figure_name("flip", task=name, frm=r.frm, to=r.to, index=i) + ".png"
        files += _save(fig, out_dir / "figures" / fname, cfg.plot)
    return files


def _fitted_compute(r, d: _Data, corpus: str, targets: pd.Index) -> tuple[float, float]:
    """The FLOPs range a loss law was fitted on: fits.csv's x_min/x_max, or (tables written
    before they existed) the corpus's final runs that were not predicted."""
    lo, hi = float(getattr(r, "x_min", np.nan)), float(getattr(r, "x_max", np.nan))
    if np.isfinite([lo, hi]).all() and lo > 0:
        return lo, hi
    ids = [i for i in d.run_corpus.index[d.run_corpus == corpus] if i not in targets]
    c = d.run_flops.loc[ids].dropna() if ids else d.run_flops[d.run_corpus == corpus].dropna()
    return float(c.min()), float(c.max())


LAW_STYLE = {"compute": ("k-", "E + A C^-α"), "gadre": ("k--", "Gadre law, M=20")}


def loss_vs_compute(out_dir: Path, d: _Data, cfg: AnalysisConfig) -> list[Path]:
    """Final loss against compute per corpus (one loss scale for all panels), each fitted law
    over its fitted FLOPs range plus the stated margin (log x: the law is a power law in C),
    and the backtest's predicted (x) and actual (o) losses of the held-out runs."""
    fits = io.read_csv(out_dir / "tables" / "fits.csv")
    ext = io.read_csv(out_dir / "tables" / "extrapolation.csv")
    lf = fits[fits["kind"] == "loss_law"] if not fits.empty else fits
    if lf.empty:
        vset = (
            cfg.extrapolate.val_set
            if cfg.extrapolate.val_set in d.run_loss
            else d.run_loss.columns[0]
        )
    else:
        vset = lf["val_set"].iloc[0]
    if vset in AXES:
        # no validation loss (Pythia): the "loss" would be compute itself, a line of x
        # against x that looks like a law and is no evidence of one
        return []
    bt = (
        "gadre_protocol"
        if (not lf.empty and (lf["backtest"] == "gadre_protocol").any())
        else "leave_largest_out"
    )
    n = len(d.corpora)
    fig, axes = plt.subplots(1, n, figsize=(4.2 * n, 4.0), squeeze=False, sharey=True)
    curves, measured = [], []  # drawn after the common loss range is known
    for ax, c in zip(axes[0], d.corpora, strict=True):
        ids = [i for i in d.run_corpus.index[d.run_corpus == c] if i in d.run_loss.index]
        if vset not in d.run_loss:
            continue
        C, L = d.run_flops.loc[ids], d.run_loss.loc[ids, vset]
        ax.scatter(C, L, s=12, color=d.color[c], label="runs (final checkpoints)")
        measured += list(L.dropna())
        e = pd.DataFrame()
        if not ext.empty:
            e = ext[
                (ext["corpus"] == c)
                & (ext["backtest"] == bt)
                & ext["quantity"].str.startswith("loss:")
            ]
            e = e[e["law"] == ("gadre" if (e["law"] == "gadre").any() else "compute")]
            e = e[e["run_id"].isin(d.run_flops.index)]
        targets = pd.Index(e["run_id"]) if not e.empty else pd.Index([])
        sub = lf[(lf["corpus"] == c) & (lf["backtest"] == bt)] if not lf.empty else lf
        for r in sub.itertuples():
            if r.law not in LAW_STYLE:
                continue
            grid = style.fit_grid(*_fitted_compute(r, d, c, targets), log=True)
            X = {"C": grid, "M": np.full_like(grid, 20.0)}
            curves.append((ax, r.law, grid, predict_natural(r.law, json.loads(r.params), X)))
        if not e.empty:
            x = d.run_flops.loc[e["run_id"]].to_numpy()
            ax.scatter(x, e["predicted"], marker="x", color="red", s=40, label="predicted")
            ax.scatter(x, e["actual"], facecolors="none", edgecolors="red", s=40, label="actual")
            measured += list(e["actual"].dropna()) + list(e["predicted"].dropna())
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())  # minor labels collide on short ranges
        ax.set_title(c, fontsize=10)
        ax.set_xlabel("training compute (FLOPs, 6ND)")
    measured = [v for v in measured if np.isfinite(v)]
    if measured:
        # the loss range the panels show: what was measured or predicted, padded; a law
        # leaving it (or going below 0) is not drawn there
        lo, hi = min(measured), max(measured)
        pad = 0.1 * max(hi - lo, 0.05 * abs(hi), 1e-6)
        ylo, yhi = max(0.0, lo - pad), hi + pad
        axes[0][0].set_ylim(ylo, yhi)
    else:
        ylo, yhi = 0.0, np.inf
    for ax, law, grid, y in curves:
        fmt, label = LAW_STYLE[law]
        ax.plot(grid, style.within(y, max(ylo, 0.0), yhi), fmt, lw=1, label=label)
    axes[0][0].set_ylabel(_xlabel(vset))
    for ax in axes[0]:
        ax.yaxis.set_tick_params(labelleft=True)
        if ax.has_data():
            ax.legend(loc="best")
    fig.text(
        0.5,
        0.01,
        f"Fitted laws {style.MARGIN_TEXT} (log compute).",
        ha="center",
        fontsize=style.MIN_FONT,
    )
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    return _save(fig, out_dir / "figures" / f"{figure_name('loss_vs_compute')}.png", cfg.plot)


def plot_all(out_dir: Path, plot: dict | None = None) -> list[Path]:
    """Every figure of the report, from the tables under `out_dir/tables`, with the analysis
    settings saved beside them; `plot` overrides their `plot` part (dpi, formats, ...)."""
    out_dir = Path(out_dir)
    cpath = out_dir / "analysis_config.json"
    saved = json.loads(cpath.read_text()) if cpath.exists() else {}
    if plot:
        saved["plot"] = {**saved.get("plot", {}), **plot}
    cfg = AnalysisConfig.from_dict(saved)
    d = _Data(out_dir, cfg)
    files: list[Path] = []
    for job in (task_grids, flip_figures, loss_vs_compute):
        try:
            files += job(out_dir, d, cfg)
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            plt.close("all")
            warn(f"figure {job.__name__} not drawn: {exc!r}")
    return files
