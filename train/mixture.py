"""Deterministic batches from a weighted mix of token caches.

The batch for step `s` is a pure function of (seed, s): each row picks a source by the mix
weights and a random window in it. So the data cursor is the step number, and a resumed run
sees exactly the batches an uninterrupted one would.
"""

from __future__ import annotations

import numpy as np
import torch

from common.errors import ConfigError, DataError
from train.token_cache import TokenCache


def check_weights(weights: dict[str, float], where: str = "data.weights") -> None:
    """Negative, non-finite or all-zero weights are an error."""
    for name, w in weights.items():
        if not np.isfinite(w) or w < 0:
            raise ConfigError(f"{where}.{name}: weight must be a finite number >= 0, got {w}")
    if sum(weights.values()) <= 0:
        raise ConfigError(f"{where}: all weights are zero ({weights})")


def normalise_weights(weights: dict[str, float], where: str = "data.weights") -> dict[str, float]:
    """Weights summing to one; negative, non-finite or all-zero weights are an error."""
    check_weights(weights, where)
    total = sum(weights.values())
    return {n: w / total for n, w in weights.items() if w > 0}


class MixtureSampler:
    """Samples [batch, seq_len + 1] token windows from several caches by weight."""

    def __init__(
        self,
        caches: dict[str, TokenCache],
        weights: dict[str, float],
        seq_len: int,
        batch_size: int,
        seed: int,
    ):
        self.names = sorted(weights)
        self.probs = np.array([weights[n] for n in self.names])
        self.arrays = [caches[n].array() for n in self.names]
        for name, arr in zip(self.names, self.arrays, strict=True):
            if len(arr) < seq_len + 2:
                raise DataError(
                    f"data.weights.{name}: source has {len(arr)} tokens, fewer than one "
                    f"sequence of {seq_len + 1}"
                )
        self.seq_len = seq_len
        self.batch_size = batch_size
        self.seed = seed

    def batch(self, step: int) -> torch.Tensor:
        rng = np.random.default_rng([self.seed, step])
        which = rng.choice(len(self.names), size=self.batch_size, p=self.probs)
        out = np.empty((self.batch_size, self.seq_len + 1), dtype=np.int64)
        for row, k in enumerate(which):
            arr = self.arrays[k]
            start = int(rng.integers(0, len(arr) - self.seq_len - 1))
            out[row] = arr[start : start + self.seq_len + 1]
        return torch.from_numpy(out)


def eval_windows(cache: TokenCache, seq_len: int, max_tokens: int) -> torch.Tensor:
    """Non-overlapping [n, seq_len + 1] windows from the start of a validation cache."""
    arr = cache.array()
    n = min((len(arr) - 1) // seq_len, max(1, max_tokens // seq_len))
    if n < 1:
        raise DataError(
            f"validation cache '{cache.path.name}' has {len(arr)} tokens, fewer than one "
            f"sequence of {seq_len + 1}"
        )
    idx = np.arange(n)[:, None] * seq_len + np.arange(seq_len + 1)[None, :]
    return torch.from_numpy(np.asarray(arr[idx], dtype=np.int64))
