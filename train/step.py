"""One training step, shared by the two kinds of run (train.replicated.ReplicatedRun,
train.fsdp.ShardedRun): autocast forward, backward, gradient clip."""

from __future__ import annotations

from collections.abc import Callable

import torch
from transformers import LlamaForCausalLM

from train import cuda_paths
from train.specs import TrainSpec


class TrainStep:
    """The forward, backward and clip of one step, the same for both kinds of run; the step
    module (`wrap`) and the gradient clip (`clip`) are where they differ."""

    model: LlamaForCausalLM
    device: torch.device
    # the loss module: DDP-wrapped, sharded or compiled (torch.compile returns a plain callable)
    step_module: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None
    use_bf16: bool = False
    cudagraphs: bool = False

    def wrap(self, spec: TrainSpec) -> None:
        """Settle the precision and CUDA-graph marking of the step."""
        cuda = self.device.type == "cuda"
        self.use_bf16 = cuda_paths.enabled(self.device) and spec.precision in ("auto", "bf16")
        self.cudagraphs = spec.compile and cuda and spec.compile_mode == "reduce-overhead"

    def clip(self, max_norm: float) -> torch.Tensor:
        raise NotImplementedError

    def step(self, window: torch.Tensor, max_norm: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Forward and backward on this rank's rows, then clip: (loss, gradient norm). The
        caller zeroes the gradients before and steps the optimizer after."""
        if self.step_module is None:
            raise RuntimeError("TrainStep.step: call wrap() first")
        if self.cudagraphs:
            torch.compiler.cudagraph_mark_step_begin()
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.use_bf16):
            loss = self.step_module(window[:, :-1], window[:, 1:])
        loss.backward()
        return loss, self.clip(max_norm)
