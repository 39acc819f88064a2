"""`harness tasks`: the downstream tasks a run can name in `eval.tasks`, with their setup
variants, chance level and size.

The project's toy tasks are generated (once, cached) from the configured world, so their
chance levels and item counts are read from the generated index, not typed in here. Standard
lm-eval tasks are listed by name from lm-eval's own index; their chance and size need the
dataset, which a run records (`tasks_meta` in record.json) when it loads it.
"""

from __future__ import annotations

from typing import Any

from train.specs import RunSpec

SHOT_NOTE = "@<N>shot"  # any task takes a few-shot variant, e.g. hellaswag@5shot


def toy_rows(spec: RunSpec) -> list[dict[str, Any]]:
    """One row per toy task (variants folded into the row), from the generated index."""
    from harness.data_prep import toy_task_dir
    from toyworld.tasks import load_task_specs

    folder, _ = toy_task_dir(spec)
    rows: dict[str, dict[str, Any]] = {}
    for _, ts in sorted(load_task_specs(folder).items()):
        row = rows.setdefault(
            ts.task,
            {
                "task": ts.task,
                "variants": [],
                "chance": ts.chance,
                "items": ts.n_samples,
                "source": "toy world",
            },
        )
        if ts.setup:
            row["variants"].append(f"@{ts.setup}")
    return list(rows.values())


def world_line(spec: RunSpec) -> str:
    """Which world the toy tasks' counts are of: they depend on the sweep's world (a preset's
    n_entities, n_unseen, world_seed), so the table says which one it counted."""
    from toyworld.world import world_options

    seed, n_entities = world_options(spec.sources["toyworld"].options)
    return (
        f"toy tasks of sweep '{spec.sweep}' (world_seed {seed}, {n_entities} entities, "
        f"n_per_task {spec.eval.n_per_task}); another sweep's: harness tasks sweep=NAME"
    )


def lm_eval_rows(include_paths: tuple[str, ...], pattern: str = "") -> list[dict[str, Any]]:
    from eval.lm_eval_runner import task_manager

    tm = task_manager(include_paths)
    names = sorted(n for n in tm.all_tasks if pattern in n)
    return [
        {"task": n, "variants": [SHOT_NOTE], "chance": None, "items": None, "source": "lm-eval"}
        for n in names
    ]


def format_rows(rows: list[dict[str, Any]]) -> str:
    def cell(r: dict[str, Any], c: str) -> str:
        v = r[c]
        if c == "variants":
            return " ".join(v) or "-"
        if v is None:
            return "-"
        return f"{v:.3g}" if isinstance(v, float) else str(v)

    cols = ("task", "variants", "chance", "items", "source")
    widths = {c: max(len(c), *(len(cell(r, c)) for r in rows)) for c in cols}
    out = ["  ".join(c.ljust(widths[c]) for c in cols)]
    out += ["  ".join(cell(r, c).ljust(widths[c]) for c in cols) for r in rows]
    return "\n".join(out)


def list_tasks(spec: RunSpec, all_lm_eval: bool, pattern: str = "") -> str:
    """The table `harness tasks` prints."""
    rows: list[dict[str, Any]] = []
    if spec.eval.toy_tasks:
        rows += [r for r in toy_rows(spec) if pattern in r["task"]]
    if all_lm_eval:
        rows += lm_eval_rows(tuple(spec.eval.include_paths), pattern)
    else:  # the suite's own non-toy tasks, named as configured
        toy = {r["task"] for r in rows}
        rows += [
            {
                "task": t,
                "variants": [SHOT_NOTE],
                "chance": None,
                "items": None,
                "source": f"suite {spec.eval.suite}",
            }
            for t in spec.eval.tasks
            if t.split("@")[0] not in toy and pattern in t
        ]
    if not rows:
        return ""
    head = world_line(spec) + "\n" if any(r["source"] == "toy world" for r in rows) else ""
    note = "\nvariants: name them as task@variant in eval.tasks."
    if any(r["chance"] is None for r in rows):
        note = (
            "\nvariants: name them as task@variant in eval.tasks; chance and items of lm-eval "
            "tasks ('-') need their datasets and are recorded per run (record.json tasks_meta)."
        )
    return head + format_rows(rows) + note
