"""`harness predict`: every method's prediction of a larger model's accuracy per task.

    harness predict root=DIR target.params=N target.tokens=D [out=DIR] [tasks=a,b] [corpus=C]
    harness predict source=olmo_ladder target=13B-5T [path=DIR] [out=DIR] [tasks=a,b]

Prints one row per task (the default method's prediction and 80% interval, every other
method's, the default method's backtest error on these runs, the task's category, and a
warning where the task is not classified predictable or the target lies further than any
backtest reached); writes `<out>/predict/predictions.csv` and one figure per task.
Bad input is one line naming the key, exit 2.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from common.errors import ConfigError

KEYS: tuple[str, ...] = ("root", "source", "path", "target", "target.params", "target.tokens")
KEYS += ("out", "tasks", "corpus")


def parse(args: list[str]) -> dict[str, str]:
    """key=value arguments; an unknown key, a missing value or a repeated key fails."""
    opts: dict[str, str] = {}
    for a in args:
        key, eq, value = a.partition("=")
        if not eq or not value:
            raise ConfigError(f"{key or a}: expected key=value, got '{a}'")
        if key not in KEYS:
            raise ConfigError(f"{key}: unknown key for predict (known: {', '.join(KEYS)})")
        if key in opts:
            raise ConfigError(f"{key}: given twice ('{opts[key]}' and '{value}')")
        opts[key] = value
    if ("root" in opts) == ("source" in opts):
        raise ConfigError("root: give exactly one of root=DIR (a sweep) or source=TESTBED")
    named = "target" in opts
    sized = "target.params" in opts or "target.tokens" in opts
    if named == sized:
        raise ConfigError(
            "target: give target=RUN (a run of a testbed) or target.params=N target.tokens=D"
        )
    for key in ("target.params", "target.tokens"):
        if sized and key not in opts:
            raise ConfigError(f"{key}: required with target.params / target.tokens")
        if key in opts:
            opts[key] = str(_positive(key, opts[key]))
    return opts


def _positive(key: str, value: str) -> float:
    try:
        v = float(value)
    except ValueError:
        raise ConfigError(f"{key}: '{value}' is not a number") from None
    if not math.isfinite(v) or v <= 0:
        raise ConfigError(f"{key}: must be a positive number, got '{value}'")
    return v


def _load(opts: dict[str, str]) -> tuple[pd.DataFrame, str, Path]:
    from analysis.predict.stage import testbed_name

    if "root" in opts:
        from analysis.ingest.records import load_records

        root = Path(opts["root"])
        if not root.is_dir():
            raise ConfigError(f"root: '{root}' is not a directory")
        table = load_records(root)
        return table, testbed_name(table), Path(opts.get("out", root))
    from analysis import testbeds

    name = opts["source"]
    if name not in testbeds.TESTBEDS:
        raise ConfigError(
            f"source: unknown testbed '{name}' (known: {', '.join(testbeds.TESTBEDS)})"
        )
    table = testbeds.get(name).load(opts.get("path"))
    return table, name, Path(opts.get("out", f"outputs/{name}"))


def _target(opts: dict[str, str], table: pd.DataFrame) -> tuple[float, float, str, str | None]:
    """(N, D, run name or "", the corpus to predict in or None)."""
    if "target" not in opts:
        N, D = float(opts["target.params"]), float(opts["target.tokens"])
        return N, D, "", opts.get("corpus")
    name = opts["target"]
    runs = table.drop_duplicates("run_id").set_index("run_id")
    if name not in runs.index:
        known = ", ".join(runs.sort_values("n_params").index[-6:])
        raise ConfigError(f"target: no run '{name}' in these runs (largest: {known})")
    corpus = opts.get("corpus", str(runs.at[name, "corpus"]))
    return float(runs.at[name, "n_params"]), float(runs.at[name, "train_tokens"]), name, corpus


def _categories(table: pd.DataFrame, testbed: str, out: Path):
    """trends.csv of an analysis already written under `out`, else a quick classification
    (200 resamples) on the reference x-axis."""
    from analysis.config import AnalysisConfig
    from analysis.groups.build import build_groups
    from analysis.ingest.axes import main_suite, select_points, with_axes
    from analysis.output import files as io
    from analysis.pipeline import with_present_reference
    from analysis.predict.tables import categories
    from analysis.testbeds import settings_for
    from analysis.trends.classify import classify, corpus_seed, trend_rows

    cfg = settings_for(testbed, AnalysisConfig())
    pts = select_points(main_suite(with_axes(table, cfg.x_axes)), "final")
    cfg = with_present_reference(cfg, pts)  # as `analyze` does: the first val set present
    written = out / "tables" / "trends.csv"
    if written.exists():
        return categories(io.read_csv(written), cfg.reference_val_set), cfg
    rows = []
    for g in build_groups(pts, cfg.accuracy_metric, ()):
        if g.val_set != cfg.reference_val_set:
            continue
        rows.append(trend_rows(classify(g, cfg, corpus_seed(cfg, g.corpus), n_resamples=200)))
    trends = pd.concat(rows, ignore_index=True) if rows else None
    return categories(trends, cfg.reference_val_set), cfg


def _fmt(p: float, lo: float, hi: float) -> str:
    return "n/a" if not np.isfinite(p) else f"{p:.3f} [{lo:.3f}, {hi:.3f}]"


def render(tp) -> str:
    """The printed table: one row per task, default method first."""
    df = tp.rows
    lines = []
    methods = [tp.default] + sorted(m for m in df["method"].unique() if m != tp.default)
    head = ["task", "category", f"{tp.default} (default)"] + methods[1:] + ["backtest err"]
    lines.append(" | ".join(head))
    warn_lines = []
    from analysis.predict.target import warnings_for

    for task, sub in df.groupby("task", sort=False):
        by = sub.set_index("method")
        d = by.loc[tp.default] if tp.default in by.index else None
        cells = [task, str(sub["category"].iloc[0])]
        for m in methods:
            cells.append(_fmt(*by.loc[m, ["predicted", "lo", "hi"]]) if m in by.index else "n/a")
        err = sub["default_backtest_error"].iloc[0]
        cells.append("n/a" if not np.isfinite(err) else f"{err:.3f}")
        if np.isfinite(sub["actual"].iloc[0]):
            cells.append(f"actual {sub['actual'].iloc[0]:.3f}")
        lines.append(" | ".join(cells))
        if d is not None:
            warn_lines += warnings_for(sub[sub["method"] == tp.default].iloc[0])
    t = tp.target
    title = (
        f"target {t['name'] or ''} N={t['N']:.3g} D={t['D']:.3g} (C={t['C']:.3g}), corpus "
        f"{t['corpus']}; fitted on {len(tp.ladder.runs)} runs up to {tp.ladder.sizes()[-1]}; "
        "intervals: central 80%, calibrated on the backtests"
    )
    return "\n".join([title, *lines, *(f"warning: {w}" for w in warn_lines)])


def predict(args: list[str]) -> None:
    """The command (bad input: ConfigError / AnalysisError, one line, exit 2)."""
    from analysis.pipeline import limit_threads

    opts = parse(args)
    # fits of near-constant tasks warn by the hundred; the table says what was not fitted
    with limit_threads(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _predict(opts)


def _predict(opts: dict[str, str]) -> None:
    from analysis.output import files as io
    from analysis.predict.figures import task_figure
    from analysis.predict.stage import loss_val_set, settings_from
    from analysis.predict.target import predict_target

    table, testbed, out = _load(opts)
    N, D, name, corpus = _target(opts, table)
    cats, cfg = _categories(table, testbed, out)
    tasks = [t for t in opts.get("tasks", "").split(",") if t] or None
    tp = predict_target(
        table,
        testbed,
        N,
        D,
        target_name=name,
        tasks=tasks,
        corpus=corpus,
        categories=cats,
        s=settings_from(cfg),
        accuracy_metric=cfg.accuracy_metric,
        val_set=loss_val_set(cfg),
    )
    pdir = out / "predict"
    io.write_csv(pdir / "predictions.csv", tp.rows)
    for i, task in enumerate(tp.ladder.tasks):
        sub = tp.rows[tp.rows["task"] == task].set_index("method")
        if sub.empty:
            continue
        curves = {m: (c, y[i]) for m, (c, y) in tp.curves.items()}
        preds = {m: tuple(sub.loc[m, ["predicted", "lo", "hi"]]) for m in sub.index}
        safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in task)
        task_figure(
            task,
            tp.ladder.runs,
            tp.ladder.acc[task],
            curves,
            (tp.target["C"], preds),
            pdir / f"predict_{safe}.png",
            float(sub["actual"].iloc[0]),
        )
    print(render(tp))
    print(f"wrote {pdir / 'predictions.csv'} and {pdir}/predict_<task>.png")
