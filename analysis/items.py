"""The items of a task that moved most between two scorings (two checkpoints of a run, or two
runs of other settings), from the per-item files `eval.log_samples=true` keeps.

An item's movement: first whether its correctness changed (the metric, `acc` by default,
0 or 1 per item), then how far the log-likelihood of its correct choice moved. Items are
matched by `doc_id` and must be the same documents (`doc_hash`) on both sides.
"""

from __future__ import annotations

import pandas as pd

from analysis.errors import AnalysisError

PROMPT_WIDTH = 60


def _gold_loglik(frame: pd.DataFrame) -> pd.Series:
    """log-likelihood of the correct choice per item (NaN where the task is not multiple
    choice)."""

    def one(row) -> float:
        lls, gold = row["loglik"], row["gold"]
        if lls is None or gold is None or pd.isna(gold):
            return float("nan")
        return float(lls[int(gold)])

    return frame.apply(one, axis=1) if len(frame) else pd.Series(dtype=float)


def _side(frame: pd.DataFrame, task: str, metric: str, label: str) -> pd.DataFrame:
    rows = frame[frame["task"] == task]
    if rows.empty:
        known = ", ".join(sorted(frame["task"].unique()))
        raise AnalysisError(f"task: '{task}' has no items in {label} (logged: {known})")
    if metric not in rows.columns or rows[metric].isna().all():
        have = [c for c in rows.columns if c in ("acc", "acc_norm", "exact_match", "f1")]
        raise AnalysisError(
            f"metric: task '{task}' logs no '{metric}' per item in {label} "
            f"(has: {', '.join(have) or 'none'})"
        )
    return pd.DataFrame(
        {
            "doc_id": rows["doc_id"].to_numpy(),
            "doc_hash": rows["doc_hash"].to_numpy(),
            "prompt": rows["prompt"].to_numpy(),
            "answer": [
                c[int(g)] if c is not None and g is not None and not pd.isna(g) else t
                for c, g, t in zip(rows["choices"], rows["gold"], rows["target"], strict=True)
            ],
            "score": rows[metric].to_numpy(dtype=float),
            "gold_ll": _gold_loglik(rows).to_numpy(),
        }
    )


def movers(
    a: pd.DataFrame, b: pd.DataFrame, task: str, metric: str = "acc"
) -> tuple[pd.DataFrame, dict[str, float]]:
    """Every item of `task` scored on both sides, most moved first, and a summary: items,
    the metric's mean on each side, items that became right and that became wrong."""
    left, right = _side(a, task, metric, "A"), _side(b, task, metric, "B")
    both = left.merge(right, on="doc_id", suffixes=("_a", "_b"))
    if both.empty:
        raise AnalysisError(f"task: '{task}' has no item scored in both A and B")
    differ = both["doc_hash_a"] != both["doc_hash_b"]
    if differ.any():
        raise AnalysisError(
            f"task: '{task}' item {int(both.loc[differ, 'doc_id'].iloc[0])} is another "
            "document in A than in B (the two sides scored different task data)"
        )
    both["d_score"] = both["score_b"] - both["score_a"]
    both["d_ll"] = both["gold_ll_b"] - both["gold_ll_a"]
    order = pd.DataFrame(
        {"s": both["d_score"].abs(), "l": both["d_ll"].abs().fillna(0.0), "id": both["doc_id"]}
    ).sort_values(["s", "l", "id"], ascending=[False, False, True])
    ranked = both.loc[order.index].reset_index(drop=True)
    summary = {
        "items": len(both),
        "mean_a": float(both["score_a"].mean()),
        "mean_b": float(both["score_b"].mean()),
        "gained": int((both["d_score"] > 0).sum()),
        "lost": int((both["d_score"] < 0).sum()),
    }
    return ranked, summary


def _short(text: object, width: int = PROMPT_WIDTH) -> str:
    """The end of a prompt on one line (the question sits at its end, after any shots)."""
    flat = " ".join(str(text).split()) if text is not None else ""
    return flat if len(flat) <= width else "…" + flat[-(width - 1) :]


def _num(x: float, fmt: str) -> str:
    return "-" if pd.isna(x) else format(x, fmt)


def format_movers(ranked: pd.DataFrame, summary: dict[str, float], metric: str, top: int) -> str:
    lines = [
        f"{metric}: {summary['mean_a']:.3f} -> {summary['mean_b']:.3f} over {summary['items']} "
        f"items; {summary['gained']} became right, {summary['lost']} became wrong",
        f"top {min(top, len(ranked))} items by change ({metric} first, then the correct "
        "answer's log-likelihood):",
    ]
    head = ranked.head(top)
    cells = [
        (
            str(int(r.doc_id)),
            f"{_num(r.score_a, 'g')} -> {_num(r.score_b, 'g')}",
            f"{_num(r.gold_ll_a, '.2f')} -> {_num(r.gold_ll_b, '.2f')}",
            _short(r.prompt_b),
            _short(r.answer_b, 20),
        )
        for r in head.itertuples()
    ]
    cols = ("doc_id", metric, "gold loglik", "prompt (end)", "answer")
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    lines.append("  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True)).rstrip())
    for row in cells:
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    return "\n".join(lines)
