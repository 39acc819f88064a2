"""Fully sharded data parallelism (FSDP2, `torch.distributed.fsdp.fully_shard`) for one run.

DDP keeps a full copy of the weights, gradients and AdamW moments on every device (16 bytes
per parameter in fp32): a 1.4B model needs ~22 GiB before activations, a 7B one ~110 GiB.
FSDP2 shards all three along dim 0 over the ranks and all-gathers one decoder layer's
weights at a time for forward and backward, so each device holds 16/world bytes per
parameter plus one layer in full.

Layout: every `LlamaDecoderLayer` is its own FSDP group; the loss module (`CausalLMLoss`
around the causal LM) is the root, whose group holds the embedding, the final norm and the
head (tied or not). The batch is split exactly as under DDP (`distributed.local_rows`) and
FSDP averages the reduce-scattered gradients over ranks, so the update is the one-process
update up to float rounding (tests/test_fsdp.py).

Checkpoints stay Hugging Face directories: the full weights are gathered to rank 0 and
written as `model.safetensors` (loadable by `AutoModelForCausalLM.from_pretrained`); the
optimizer state stays sharded, written by every rank with `torch.distributed.checkpoint`
into `optimizer/` inside the step directory. Resuming reads the full weights on every rank
(each keeps its shard) and the sharded optimizer state, possibly at another world size.

Evaluation runs on rank 0 alone, which cannot call a sharded model (its forward needs every
rank), so rank 0 keeps one unsharded replica that the gathered weights are copied into.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from safetensors.torch import load_file
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard
from torch.distributed.tensor import DTensor
from transformers import LlamaForCausalLM, PreTrainedModel

from train import cuda_paths
from train.checkpoint import checked_weights, save_checkpoint
from train.distributed import DistInfo
from train.fast_loss import CausalLMLoss
from train.specs import TrainSpec
from train.step import TrainStep

# `auto` shards models above this many parameters when several processes train one run:
# from ~1B on, AdamW state replicated by DDP (16 B/param) no longer leaves room for activations
# on a 40-80 GB card.
AUTO_FSDP_MIN_PARAMS = 1_000_000_000
OPTIMIZER_DIR = "optimizer"


def wants_fsdp(parallel: str, n_params: int, info: DistInfo) -> bool:
    """Whether this run trains sharded. `ddp` (the default) never; `fsdp` always, even in
    one process (a mesh of one: the sharded code path without a second device); `auto` when
    several processes train a model of more than AUTO_FSDP_MIN_PARAMS parameters. The value
    is one of train.specs.PARALLEL_MODES (harness.config checks it before a run starts)."""
    if parallel == "fsdp":
        return True
    return parallel == "auto" and info.enabled and n_params > AUTO_FSDP_MIN_PARAMS


def init_group(device: torch.device, info: DistInfo) -> None:
    """A process group for FSDP. torchrun launches already joined one (distributed.init); a
    single process gets a group of one over an in-memory store, so no port is needed."""
    if dist.is_initialized():
        return
    if info.enabled:
        raise RuntimeError("FSDP with several ranks needs distributed.init() first")
    dist.init_process_group(
        "nccl" if device.type == "cuda" else "gloo", store=dist.HashStore(), rank=0, world_size=1
    )


def shard(
    model: LlamaForCausalLM, device: torch.device, loss_chunk: int, compile_layers: bool
) -> CausalLMLoss:
    """Shard `model` in place (its parameters become DTensors) and return the loss module to
    step. Build the optimizer after this, over `model.parameters()`.

    compile_layers: compile each decoder layer in place before sharding (per-block compile,
    the FSDP2 pattern: FSDP's hooks stay outside the compiled graphs, and the parameter
    names - hence the HF checkpoint keys - are unchanged).
    """
    mesh = init_device_mesh(device.type, (dist.get_world_size(),))
    # fp32 parameters all-gathered as they are; bf16 comes from the loop's autocast, exactly
    # as under DDP, and gradients are reduced in fp32.
    policy = MixedPrecisionPolicy(reduce_dtype=torch.float32)
    # transformers types PreTrainedModel.to through a decorator that loses `self`
    model.to(device)  # type: ignore[arg-type]
    loss = CausalLMLoss(model, loss_chunk)
    for layer in model.model.layers:
        if compile_layers:
            layer.compile(**cuda_paths.compile_kwargs(device))
        fully_shard(layer, mesh=mesh, mp_policy=policy)
    fully_shard(loss, mesh=mesh, mp_policy=policy)
    return loss


def clip_grad_norm(params: list[torch.nn.Parameter], max_norm: float) -> torch.Tensor:
    """`clip_grad_norm_` over sharded gradients: the total norm is a reduction over ranks
    (a DTensor); it is materialised once so the clip and the logged value are plain tensors."""
    grads = [p.grad for p in params if p.grad is not None]
    total = torch.nn.utils.get_total_norm(grads, 2.0, foreach=True)
    if isinstance(total, DTensor):
        total = total.full_tensor()
    torch.nn.utils.clip_grads_with_norm_(params, max_norm, total, foreach=True)
    return total


def full_state_dict(model: torch.nn.Module) -> dict[str, Any]:
    """The full (unsharded) weights on rank 0's CPU; {} on the other ranks. Collective."""
    return get_model_state_dict(
        model, options=StateDictOptions(full_state_dict=True, cpu_offload=True)
    )


def load_full_weights(model: PreTrainedModel, safetensors_path: Path) -> None:
    """Every rank reads the HF checkpoint's full weights and keeps its own shard.

    `save_pretrained` drops the head when it is tied to the embedding; the tied parameter
    is one object under FSDP too, so loading the embedding restores both (strict=False)."""
    sd: dict[str, Any] = load_file(safetensors_path)
    expected = set(model.state_dict())
    missing = expected - set(sd)
    if missing - {"lm_head.weight"} or (missing and not model.config.tie_word_embeddings):
        raise RuntimeError(f"checkpoint {safetensors_path} lacks {sorted(missing)[:5]}")
    set_model_state_dict(model, sd, options=StateDictOptions(full_state_dict=True, strict=False))


def save_optimizer(model: torch.nn.Module, optimizer: torch.optim.Optimizer, path: Path) -> None:
    """Every rank writes its shard of the optimizer state under `path`. Collective."""
    osd = get_optimizer_state_dict(model, optimizer)
    dcp.save({"optimizer": osd}, checkpoint_id=str(path))


def load_optimizer(model: torch.nn.Module, optimizer: torch.optim.Optimizer, path: Path) -> None:
    """Read the sharded optimizer state saved by `save_optimizer` (any world size). Collective."""
    osd = get_optimizer_state_dict(model, optimizer)  # the template: this rank's shards
    dcp.load({"optimizer": osd}, checkpoint_id=str(path))
    set_optimizer_state_dict(model, optimizer, osd)


def staging_dir(ckpt_root: Path, step: int) -> Path:
    """Where the ranks write the sharded optimizer state before rank 0 moves it into the
    step directory (same name on every rank; a leftover from a crash is overwritten)."""
    return ckpt_root / f".optimizer_step_{step}"


class ShardedRun(TrainStep):
    """One run's FSDP side, with the interface of train.replicated.ReplicatedRun (wrap, step,
    save, restore, gather): the step module is sharded at construction (before the optimizer
    is built over the sharded parameters). Every method except `__init__` and `wrap` is
    collective: all ranks call it at the same step."""

    def __init__(
        self,
        model: LlamaForCausalLM,
        device: torch.device,
        info: DistInfo,
        loss_chunk: int,
        compile_layers: bool,
    ):
        init_group(device, info)
        self.model, self.device, self.info = model, device, info
        self.cls, self.config = type(model), model.config  # for the unsharded replica
        self.step_module = shard(model, device, loss_chunk, compile_layers)
        self.replica: PreTrainedModel | None = None  # rank 0 only
        self.replica_step: int | None = None

    def wrap(self, spec: TrainSpec) -> None:
        """The step module exists since `__init__` (sharded, layers compiled if asked)."""
        super().wrap(spec)

    def clip(self, max_norm: float) -> torch.Tensor:
        return clip_grad_norm(list(self.model.parameters()), max_norm)

    def restore(
        self, optimizer: torch.optim.Optimizer, ckpt: Path, trainer_state: dict[str, Any]
    ) -> None:
        """Weights from the HF file; optimizer state from its shards, or from a checkpoint
        written without FSDP (train.parallel changed between launches: it is not keyed)."""
        load_full_weights(self.model, checked_weights(self.model, ckpt))
        if (ckpt / OPTIMIZER_DIR).is_dir():
            load_optimizer(self.model, optimizer, ckpt / OPTIMIZER_DIR)
        else:
            full = by_name(self.model, optimizer, trainer_state["optimizer"])
            set_optimizer_state_dict(
                self.model, optimizer, full, options=StateDictOptions(full_state_dict=True)
            )

    def _replica(self, step: int) -> torch.nn.Module | None:
        """Rank 0's unsharded replica holding the weights after `step` (on the CPU); None on
        the other ranks. Gathered once per step, reused by evaluation and the checkpoint."""
        if self.replica_step == step:
            return self.replica
        sd = full_state_dict(self.model)
        if self.info.is_main:
            if self.replica is None:
                self.replica = self.cls(self.config)
            self.replica.load_state_dict(sd, strict=False)
            if self.config.tie_word_embeddings:
                self.replica.tie_weights()
            self.replica.eval()
        self.replica_step = step
        return self.replica

    @contextmanager
    def gather(self, step: int) -> Iterator[torch.nn.Module | None]:
        """The model to evaluate after `step`: rank 0's unsharded replica on the training
        device for the duration, then back on the CPU; None on the other ranks."""
        replica = self._replica(step)
        if replica is None:
            yield None
            return
        replica.to(self.device)
        try:
            yield replica
        finally:
            replica.to("cpu")
            if self.device.type == "cuda":
                torch.cuda.empty_cache()

    def save(
        self,
        ckpt_root: Path,
        step: int,
        tokenizer,
        optimizer: torch.optim.Optimizer,
        trainer_state: dict[str, Any],
    ) -> None:
        """Each rank writes its optimizer shards into a staging directory; rank 0 then writes
        the HF files and trainer state and moves the shards in before the manifest, so a
        checkpoint is complete (manifest present) only with every shard in it."""
        staging = staging_dir(ckpt_root, step)
        if self.info.is_main:
            shutil.rmtree(staging, ignore_errors=True)
            ckpt_root.mkdir(parents=True, exist_ok=True)
        dist.barrier()
        save_optimizer(self.model, optimizer, staging)
        replica = self._replica(step)
        dist.barrier()
        if self.info.is_main:
            state = {k: v for k, v in trainer_state.items() if k != "optimizer"}
            save_checkpoint(
                ckpt_root, step, replica, tokenizer, state, extra_dirs={OPTIMIZER_DIR: staging}
            )


def by_name(
    model: torch.nn.Module, optimizer: torch.optim.Optimizer, plain: dict[str, Any]
) -> dict[str, Any]:
    """A plain `optimizer.state_dict()` (parameters numbered in param-group order) keyed by
    parameter name instead, the form `set_optimizer_state_dict` reads."""
    names = {id(p): n for n, p in model.named_parameters()}
    order = [names[id(p)] for g in optimizer.param_groups for p in g["params"]]
    groups = []
    for g in plain["param_groups"]:
        groups.append({**g, "params": [order[i] for i in g["params"]]})
    return {"state": {order[i]: v for i, v in plain["state"].items()}, "param_groups": groups}
