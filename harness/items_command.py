"""`harness items root=DIR task=T a=RUN[@STEP] b=RUN[@STEP] [top=N] [metric=acc]`: the items of
a task that moved most between two scorings kept by `eval.log_samples=true`.

RUN is a run id (or a unique prefix of one), a model size (`cpu-40k`) when one run of the
sweep has that size, or SIZE/MIX (`cpu-40k/toy_code`); STEP is a checkpoint step, `first` or
`final` (the default: the last step with per-item scores). A and B may be two checkpoints of
one run or two runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from common.errors import ConfigError
from harness.store import iter_run_dirs, read_record

KEYS = ("root", "task", "a", "b", "top", "metric")


@dataclass(frozen=True)
class Side:
    path: Path
    run_id: str
    label: str  # size, mix, seed
    step: int


def parse(args: list[str]) -> dict[str, str]:
    opts: dict[str, str] = {}
    for arg in args:
        key, eq, value = arg.partition("=")
        if not eq:
            raise ConfigError(f"{arg}: expected key=value (keys: {', '.join(KEYS)})")
        if key not in KEYS:
            raise ConfigError(f"{key}: unknown key (known: {', '.join(KEYS)})")
        opts[key] = value
    for key in ("root", "task", "a", "b"):
        if not opts.get(key):
            raise ConfigError(f"{key}: required (harness items root=DIR task=T a=RUN b=RUN)")
    top = opts.get("top", "10")
    if not top.isdigit() or int(top) < 1:
        raise ConfigError(f"top: must be a positive integer, got '{top}'")
    if not Path(opts["root"]).is_dir():
        raise ConfigError(f"root: no such directory '{opts['root']}'")
    return opts


def _runs(root: Path) -> list[tuple[Path, str, str, str | None, str | None]]:
    """(run dir, run id, 'size, mix, seed N', size, mix) of every run with a readable record."""
    out = []
    for path in iter_run_dirs(root):
        rec = read_record(path)
        if rec is not None:
            size, mix = rec.model.size, rec.data.mix
            out.append((path, path.name, f"{size}, {mix}, seed {rec.seed}", size, mix))
    return out


def resolve(root: Path, runs: list, selector: str, key: str) -> Side:
    """The run and checkpoint `selector` (RUN[@STEP]) names among `runs` (`_runs(root)`)."""
    from eval.samples import sample_steps

    run, _, step = selector.partition("@")
    size, _, mix = run.partition("/")
    hits = [r for r in runs if r[1].startswith(run)] or [
        r for r in runs if r[3] == size and mix in ("", r[4])
    ]
    if not hits:
        raise ConfigError(f"{key}: no run '{run}' under {root} (give a run id, a size or SIZE/MIX)")
    if len(hits) > 1:
        which = "; ".join(f"{r[1]} ({r[2]})" for r in hits)
        raise ConfigError(
            f"{key}: '{run}' matches {len(hits)} runs ({which}); give a run id or SIZE/MIX"
        )
    path, rid, label = hits[0][:3]
    steps = sample_steps(path)
    if not steps:
        raise ConfigError(
            f"{key}: run {rid} kept no per-item scores (run it with eval.log_samples=true)"
        )
    if step in ("", "final"):
        chosen = steps[-1]
    elif step == "first":
        chosen = steps[0]
    elif step.isdigit() and int(step) in steps:
        chosen = int(step)
    else:
        raise ConfigError(
            f"{key}: run {rid} has no per-item scores at step '{step}' "
            f"(steps: {', '.join(map(str, steps))}, first, final)"
        )
    return Side(path, rid, label, chosen)


def items(args: list[str]) -> None:
    """Print the summary and the top items."""
    from analysis.items import format_movers, movers
    from eval.samples import read_samples

    opts = parse(args)
    root = Path(opts["root"])
    runs = _runs(root)  # every record read once for both sides
    a, b = resolve(root, runs, opts["a"], "a"), resolve(root, runs, opts["b"], "b")
    metric = opts.get("metric", "acc")
    ranked, summary = movers(
        read_samples(a.path, a.step), read_samples(b.path, b.step), opts["task"], metric
    )
    print(f"{opts['task']}:")
    print(f"  A = run {a.run_id} ({a.label}) at step {a.step}")
    print(f"  B = run {b.run_id} ({b.label}) at step {b.step}")
    print(format_movers(ranked, summary, metric, int(opts.get("top", "10"))))
