"""Data-parallel helpers: one run across several processes (torchrun), exact token accounting.

Every rank draws the same global batch from `MixtureSampler.batch(step)` (a pure function of
the step) and keeps its own contiguous slice of rows, so the global batch - and with equal
slices and DDP's gradient averaging, the gradient - is exactly the one-process batch. Only
rank 0 writes logs, checkpoints and records. Environment as set by torchrun: RANK,
WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from common.errors import ConfigError


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def dist_info() -> DistInfo:
    """Rank and world size from the environment (torchrun / SLURM launch); 1 process otherwise."""
    env = os.environ
    world = int(env.get("WORLD_SIZE", "1"))
    return DistInfo(
        rank=int(env.get("RANK", "0")),
        world_size=world,
        local_rank=int(env.get("LOCAL_RANK", "0")),
        local_world_size=int(env.get("LOCAL_WORLD_SIZE", str(world))),
    )


def init(device_type: str) -> DistInfo:
    """Join the process group when launched with several ranks (gloo on CPU, nccl on CUDA)."""
    info = dist_info()
    if info.enabled and not dist.is_initialized():
        if device_type == "cuda":
            torch.cuda.set_device(info.local_rank)
        dist.init_process_group(
            "nccl" if device_type == "cuda" else "gloo", rank=info.rank, world_size=info.world_size
        )
    return info


def local_device(device: torch.device, info: DistInfo) -> torch.device:
    """Each rank on a node uses its own GPU."""
    if device.type == "cuda" and info.enabled:
        return torch.device("cuda", info.local_rank)
    if device.type == "cuda" and device.index is None:  # an explicit index for set_device & co.
        return torch.device("cuda", torch.cuda.current_device())
    return device


def local_rows(global_batch: int, info: DistInfo) -> slice:
    """This rank's rows of the global batch; equal slices keep the mean loss exact."""
    if global_batch % info.world_size:
        raise ConfigError(
            f"train.batch_size: {global_batch} is not divisible by the {info.world_size} "
            "data-parallel processes"
        )
    n = global_batch // info.world_size
    return slice(info.rank * n, (info.rank + 1) * n)


def mean_across(t: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """The mean of `t` over ranks (a no-op in one process)."""
    if info.enabled:
        t = t.clone()
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        t /= info.world_size
    return t


def any_across(flag: bool, info: DistInfo) -> bool:
    """True on every rank when it is true on any (e.g. a stop signal reached one rank)."""
    if not info.enabled:
        return flag
    t = torch.tensor([1.0 if flag else 0.0])
    if dist.get_backend() == "nccl":
        t = t.cuda()
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def wrap(module: torch.nn.Module, device: torch.device, info: DistInfo) -> torch.nn.Module:
    """DDP around the loss module (gradients all-reduced, bucketed, overlapped with backward)."""
    if not info.enabled:
        return module
    from torch.nn.parallel import DistributedDataParallel as DDP

    ids = [device.index] if device.type == "cuda" else None
    return DDP(module, device_ids=ids)


def cpu_threads(info: DistInfo) -> int:
    """All cores this process may use, shared evenly between the ranks on this node."""
    cores = (
        len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    )
    return max(1, cores // max(1, info.local_world_size))
