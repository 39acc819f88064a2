"""Validation loss (mean nats per token) of a model on named, pre-tokenized sets."""

from __future__ import annotations

import torch
import torch.nn.functional as F


@torch.no_grad()
def validation_loss(model: torch.nn.Module, windows: torch.Tensor, batch_size: int = 32) -> float:
    """Mean next-token cross-entropy over `windows` ([n, seq_len + 1] token ids)."""
    device = next(model.parameters()).device
    use_bf16 = device.type == "cuda"
    total, count = torch.zeros((), device=device, dtype=torch.float64), 0
    for i in range(0, len(windows), batch_size):
        w = windows[i : i + batch_size].to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
            logits = model(input_ids=w[:, :-1]).logits
        loss = F.cross_entropy(
            logits.float().reshape(-1, logits.size(-1)), w[:, 1:].reshape(-1), reduction="sum"
        )
        total += loss.double()
        count += w[:, 1:].numel()
    return float(total.item() / count)


def validation_losses(
    model: torch.nn.Module, sets: dict[str, torch.Tensor], batch_size: int = 32
) -> dict[str, float]:
    """`validation_loss` for each named set, in a fixed order."""
    was_training = model.training
    model.eval()
    out = {name: validation_loss(model, windows, batch_size) for name, windows in sets.items()}
    model.train(was_training)
    return out
