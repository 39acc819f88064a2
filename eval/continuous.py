"""Continuous metrics of multiple-choice tasks from lm-eval's per-sample log-likelihoods.

Accuracy jumps between 0 and 1 per item; these move smoothly as a model improves, which is
what two-step ladder fits need (Bhagia et al. 2024) and what makes small-scale rankings
more stable (Magnusson et al. 2025). Per item, with ll_i the summed log-likelihood of
choice i's continuation and g the correct choice:
- logprob            = ll_g                         (nats)
- logprob_per_token  = ll_g / tokens(continuation_g)
- logprob_per_byte   = ll_g / bytes(continuation_g)
- bpb                = -ll_g / (bytes(continuation_g) * ln 2)   (bits per byte)
- prob_correct       = softmax(ll)_g                (mass on the correct choice among the choices)
- brier              = sum_i (softmax(ll)_i - [i == g])^2
Each is averaged over items, with the standard error of the mean as `<metric>_stderr`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

METRICS = ("logprob", "logprob_per_token", "logprob_per_byte", "bpb", "prob_correct", "brier")


def request_args(sample: dict[str, Any]) -> list[Sequence[Any]]:
    """A logged sample's requests as (context, continuation, ...) sequences, one per request,
    whichever form this lm-eval logs them in; [] when it logged none."""
    args = sample.get("arguments")
    if isinstance(args, dict):  # newer lm-eval: {"gen_args_0": {"arg_0": ctx, "arg_1": cont}, ...}
        args = [tuple(v.values()) if isinstance(v, dict) else v for v in args.values()]
    return list(args) if isinstance(args, (list, tuple)) else []


def continuations(sample: dict[str, Any]) -> list[str] | None:
    args = request_args(sample)
    if not args:
        return None
    try:
        return [str(a[1]) for a in args]
    except (IndexError, TypeError, KeyError):
        return None


def gold_index(sample: dict[str, Any], n_choices: int) -> int | None:
    target = sample.get("target")
    if isinstance(target, (list, tuple)):
        target = target[0] if target else None
    if isinstance(target, (int, np.integer)) or (isinstance(target, str) and target.isdigit()):
        g = int(target)
        return g if 0 <= g < n_choices else None
    return None


def choice_logliks(sample: dict[str, Any]) -> tuple[list[float], list[str], int] | None:
    """(log-likelihood of each choice, the choices, the gold index) of a multiple-choice
    sample; None for any other kind of sample (generation, rolling loglikelihood)."""
    resps = sample.get("filtered_resps") or sample.get("resps")
    conts = continuations(sample)
    if not resps or conts is None or len(conts) != len(resps) or len(resps) < 2:
        return None
    try:
        lls = [float(r[0] if isinstance(r, (list, tuple)) else r) for r in resps]
    except (TypeError, ValueError):
        return None
    gold = gold_index(sample, len(lls))
    return None if gold is None else (lls, conts, gold)


def item_metrics(
    lls: list[float], gold: int, continuations: list[str], n_tokens: list[int]
) -> dict[str, float]:
    """The metrics above for one item."""
    ll = np.asarray(lls, dtype=np.float64)
    p = np.exp(ll - ll.max())
    p /= p.sum()
    n_bytes = max(1, len(continuations[gold].encode("utf-8")))
    onehot = np.zeros_like(p)
    onehot[gold] = 1.0
    return {
        "logprob": float(ll[gold]),
        "logprob_per_token": float(ll[gold] / max(1, n_tokens[gold])),
        "logprob_per_byte": float(ll[gold] / n_bytes),
        "bpb": float(-ll[gold] / (n_bytes * math.log(2))),
        "prob_correct": float(p[gold]),
        "brier": float(((p - onehot) ** 2).sum()),
    }


def continuous_metrics(samples: list[dict[str, Any]], tokenizer) -> dict[str, float]:
    """Means and standard errors of the metrics over a task's logged samples.

    Returns {} for tasks that are not multiple choice (no per-choice log-likelihoods).
    """
    rows = []
    for s in samples:
        scored = choice_logliks(s)
        if scored is None:
            return {}
        lls, conts, gold = scored
        n_tokens = [len(tokenizer(c, add_special_tokens=False)["input_ids"]) for c in conts]
        rows.append(item_metrics(lls, gold, conts, n_tokens))
    if not rows:
        return {}
    out: dict[str, float] = {}
    for m in METRICS:
        vals = np.array([r[m] for r in rows])
        out[m] = float(vals.mean())
        out[f"{m}_stderr"] = (
            float(vals.std(ddof=1) / math.sqrt(len(vals))) if len(vals) > 1 else float("nan")
        )
    return out
