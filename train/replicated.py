"""How one training process holds its model: the loop talks to a run object with one small
interface (`wrap`, `step`, `save`, `restore`, `gather`) and does not know which it has.

`ReplicatedRun`: every process holds the whole model, optimizer state and gradients (one
process, or DDP under torchrun). `train.fsdp.ShardedRun` shards all three over the ranks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from transformers import LlamaForCausalLM

from train import cuda_paths, distributed
from train.checkpoint import load_weights, save_checkpoint
from train.distributed import DistInfo
from train.fast_loss import CausalLMLoss
from train.fsdp import OPTIMIZER_DIR, load_optimizer
from train.specs import TrainSpec
from train.step import TrainStep


class ReplicatedRun(TrainStep):
    """The whole model in every process: the loss module DDP-wrapped under torchrun and
    compiled on CUDA; rank 0 writes checkpoints and evaluates the model itself."""

    def __init__(self, model: LlamaForCausalLM, device: torch.device, info: DistInfo):
        self.model, self.device, self.info = model, device, info

    def wrap(self, spec: TrainSpec) -> None:
        """The loss module the step calls: (chunked) loss fused in, DDP-wrapped, compiled on
        CUDA."""
        super().wrap(spec)
        module: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = distributed.wrap(
            CausalLMLoss(self.model, spec.loss_chunk), self.device, self.info
        )
        if spec.compile and cuda_paths.enabled(self.device):
            # static shapes: in a process that trained another size first (a sweep, the bench),
            # dynamo would otherwise recompile this one with a symbolic batch dimension
            kwargs = cuda_paths.compile_kwargs(self.device, spec.compile_mode)
            module = torch.compile(module, dynamic=False, **kwargs)
        self.step_module = module

    def clip(self, max_norm: float) -> torch.Tensor:
        return torch.nn.utils.clip_grad_norm_(self.model.parameters(), max_norm, foreach=True)

    def restore(
        self, optimizer: torch.optim.Optimizer, ckpt: Path, trainer_state: dict[str, Any]
    ) -> None:
        """Weights and optimizer state; the latter from its shards when a sharded run wrote
        the checkpoint (train.parallel may change between launches: it is not keyed)."""
        load_weights(self.model, ckpt)
        if "optimizer" in trainer_state:
            optimizer.load_state_dict(trainer_state["optimizer"])
        else:
            load_optimizer(self.model, optimizer, ckpt / OPTIMIZER_DIR)

    @contextmanager
    def gather(self, step: int) -> Iterator[torch.nn.Module | None]:
        """The model to evaluate after `step`: the model itself on rank 0, None elsewhere."""
        yield self.model if self.info.is_main else None

    def save(
        self,
        ckpt_root: Path,
        step: int,
        tokenizer,
        optimizer: torch.optim.Optimizer,
        trainer_state: dict[str, Any],
    ) -> None:
        """Rank 0 writes the checkpoint, optimizer state included."""
        if self.info.is_main:
            state = {**trainer_state, "optimizer": optimizer.state_dict()}
            save_checkpoint(ckpt_root, step, self.model, tokenizer, state)
