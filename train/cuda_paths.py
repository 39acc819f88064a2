"""Which training switches are CUDA-only, and the one way to turn them on for a CPU device.

bf16 autocast, torch.compile, fused AdamW and per-layer compile under FSDP apply on CUDA. A
lent GPU comes with minutes of device time, so a GPU code path that breaks must fail on the
CPU first: with HARNESS_CUDA_PATHS_ON_CPU=1 (set by `bench/gpu_check.py --dry-run` for its
subprocesses, never by a run config) they apply to a CPU device too. There torch.compile uses
the aot_eager backend: dynamo's graph capture and AOTAutograd, the parts a model or loss
change breaks; inductor's code generation differs between the GPU (Triton) and the CPU (C++),
so compiling C++ kernels would test nothing the card runs and costs ~40 s per graph cold.
"""

from __future__ import annotations

import os
from typing import Any

import torch

ENV = "HARNESS_CUDA_PATHS_ON_CPU"


def on_cpu() -> bool:
    """True when the dry-run switch is set."""
    return os.environ.get(ENV) == "1"


def enabled(device: torch.device) -> bool:
    """Whether the CUDA-only switches apply on `device`."""
    return device.type == "cuda" or (device.type == "cpu" and on_cpu())


def compile_kwargs(device: torch.device, mode: str | None = None) -> dict[str, Any]:
    """torch.compile's arguments: `mode` on CUDA; the aot_eager backend for a CPU dry run
    (inductor's modes do not apply to it)."""
    if device.type == "cuda":
        return {} if mode in (None, "default") else {"mode": mode}
    return {"backend": "aot_eager"}
