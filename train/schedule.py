"""Learning-rate schedules as multipliers of the peak rate, for LambdaLR."""

from __future__ import annotations

import math

from common.errors import ConfigError

SCHEDULES = ("cosine", "wsd")


def lr_multiplier(
    step: int, total: int, warmup: int, kind: str, min_ratio: float, decay_frac: float = 0.2
) -> float:
    """Linear warmup, then cosine to `min_ratio`, or warmup-stable-decay (linear decay last)."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    if kind == "cosine":
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
    if kind == "wsd":
        decay_steps = max(1, int(round(decay_frac * total)))
        decay_start = total - decay_steps
        if step < decay_start:
            return 1.0
        return 1.0 - (1 - min_ratio) * min(1.0, (step - decay_start) / decay_steps)
    raise ConfigError(f"train.schedule: unknown schedule '{kind}' (known: {', '.join(SCHEDULES)})")
