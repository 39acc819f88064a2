"""The training loss, optionally as a fused, chunked linear + cross-entropy.

For small models over a large vocabulary the output head dominates: the full [tokens, vocab]
logits (and their fp32 copy, and the softmax gradient) are several times the size of all other
activations. `chunked_linear_cross_entropy` computes the loss and both gradients chunk by
chunk inside the forward pass, so no more than [chunk, vocab] logits ever exist; backward
only rescales the stored gradients. Same loss and gradients as the full-logits path (to
float rounding; tests/test_fastpath.py checks 1e-6 in fp32).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from transformers import LlamaForCausalLM


class _ChunkedLinearCE(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx, hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, chunk: int
    ) -> torch.Tensor:
        n = hidden.shape[0]
        w = weight.to(hidden.dtype)  # under autocast the matmul runs in the activations' dtype
        grad_h = torch.empty_like(hidden)
        grad_w = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device)
        total = torch.zeros((), dtype=torch.float32, device=hidden.device)
        for lo in range(0, n, chunk):
            h = hidden[lo : lo + chunk]
            t = targets[lo : lo + chunk]
            logits = (h @ w.t()).float()
            lse = torch.logsumexp(logits, dim=-1)
            total += (lse - logits.gather(1, t[:, None]).squeeze(1)).sum()
            # d(sum of CE)/d(logits) = softmax - onehot; computed in place to save a copy
            g = logits.sub_(lse[:, None]).exp_()
            g.scatter_add_(1, t[:, None], torch.full_like(t[:, None], -1, dtype=g.dtype))
            g = g.to(hidden.dtype)
            grad_h[lo : lo + chunk] = g @ w
            grad_w += g.t() @ h  # accumulated in fp32 whatever the matmul's dtype
        ctx.save_for_backward(grad_h, grad_w)
        ctx.n = n
        ctx.w_dtype = weight.dtype
        return total / n

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        grad_h, grad_w = ctx.saved_tensors
        scale = grad_out / ctx.n
        return (grad_h * scale.to(grad_h.dtype), (grad_w * scale).to(ctx.w_dtype), None, None)


def chunked_linear_cross_entropy(
    hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, chunk: int
) -> torch.Tensor:
    """Mean cross-entropy of `hidden @ weight.T` against `targets`, never holding full logits.

    hidden: [N, d]; weight: [V, d]; targets: [N] (all counted; no ignore index).
    """
    return _ChunkedLinearCE.apply(hidden, weight, targets, chunk)


def full_linear_cross_entropy(
    hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor
) -> torch.Tensor:
    """The plain path: full logits, upcast to fp32, then cross-entropy (the reference)."""
    logits = F.linear(hidden, weight)
    return F.cross_entropy(logits.float(), targets)


class CausalLMLoss(torch.nn.Module):
    """Wraps a transformers causal LM so one `forward(inputs, targets)` returns the mean loss.

    One module holding the whole step's computation is what DDP (gradient hooks set up in its
    forward) and torch.compile (one graph with the loss fused in) both want.
    """

    def __init__(self, lm: LlamaForCausalLM, loss_chunk: int = 0):
        super().__init__()
        self.lm = lm
        self.loss_chunk = loss_chunk

    def forward(self, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        hidden = self.lm.model(input_ids=inputs).last_hidden_state
        hidden = hidden.reshape(-1, hidden.size(-1))
        weight = self.lm.lm_head.weight
        if self.loss_chunk and self.loss_chunk < hidden.shape[0]:
            return chunked_linear_cross_entropy(
                hidden, weight, targets.reshape(-1), self.loss_chunk
            )
        return full_linear_cross_entropy(hidden, weight, targets.reshape(-1))
