"""Plain dataclasses describing one run. `harness.config` builds them from Hydra configs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ModelSpec:
    """Shape of a LLaMA-style decoder; `vocab_size` comes from the tokenizer at build time."""

    name: str
    d_model: int
    n_layers: int
    n_heads: int
    n_kv_heads: int | None = None
    ffn_hidden: int | None = None  # None: 8/3 * d_model rounded up to a multiple of 32
    max_seq_len: int = 256
    tie_embeddings: bool = True
    rope_theta: float = 10000.0


@dataclass(frozen=True)
class SourceSpec:
    """A named text source. `kind` picks the reader; `options` are that reader's settings."""

    name: str
    kind: str  # toyworld | stdlib_code | files | hf
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class MixSpec:
    """A data mix: weights over source names, normalised to sum to one."""

    name: str
    weights: dict[str, float]


@dataclass(frozen=True)
class TokenizerSpec:
    """`bpe`: trained with HF tokenizers on `train_sources`; `pretrained`: loaded by `name`."""

    kind: str = "bpe"
    vocab_size: int = 2048
    name: str | None = None
    train_sources: tuple[str, ...] = ()
    train_docs: int = 4000  # documents per source used to train the BPE
    trust_remote_code: bool = False


@dataclass(frozen=True)
class ValSetSpec:
    """A validation set: one split of one source, truncated to `max_tokens`."""

    name: str
    source: str
    split: str
    max_tokens: int = 65536


PARALLEL_MODES = ("ddp", "fsdp", "auto")  # how several processes share one run (train/fsdp.py)
# torch.compile modes (on CUDA; train.compile_mode)
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


@dataclass(frozen=True)
class TrainSpec:
    """Optimisation and budget. Exactly one of `tokens` / `tokens_per_param` is set."""

    tokens: int | None = None
    tokens_per_param: float | None = None
    batch_size: int = 32
    seq_len: int = 128
    lr: float = 0.004
    min_lr_ratio: float = 0.1
    warmup_frac: float = 0.05
    schedule: str = "cosine"  # cosine | wsd
    decay_frac: float = 0.2  # wsd: fraction of steps in the final decay
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0
    device: str = "auto"  # auto | cpu | cuda
    precision: str = "auto"  # auto | fp32 | bf16
    compile: bool = False
    num_threads: int = 0  # CPU threads; 0 = all cores
    log_every: int = 10
    checkpoint_every: int = 0  # steps between resumable checkpoints; 0 = only at eval points
    keep_checkpoints: int = 0  # 0 = keep all (they are evaluated later by backfill)
    spike_factor: float = 0.0  # stop when loss > factor * running mean; 0 = off
    compile_mode: str = (
        "default"  # torch.compile mode on CUDA: default | reduce-overhead | max-autotune
    )
    loss_chunk: int = 512  # rows per chunk of the fused linear + cross-entropy; 0 = full logits
    activation_checkpointing: bool = False  # recompute layer activations in backward (less memory)
    parallel: str = (
        "ddp"  # several processes: ddp | fsdp (sharded, train/fsdp.py) | auto (fsdp > 1B params)
    )


@dataclass(frozen=True)
class EvalSpec:
    """What is measured and when: validation sets, lm-eval tasks, checkpoint schedule."""

    suite: str = "none"
    tasks: tuple[str, ...] = ()
    include_paths: tuple[str, ...] = ()
    toy_tasks: bool = False  # generate the toy-world tasks into the cache and include them
    n_per_task: int = 200
    limit: int | None = None
    batch_size: int | str = 32
    num_checkpoints: int = 4  # log-spaced evaluation points including the final one
    every_tokens: int | None = None  # overrides num_checkpoints when set
    tasks_at: str = "all"  # all | final: which checkpoints get downstream tasks
    log_samples: bool = False  # keep each item's scores per checkpoint (runs/<id>/samples/)


@dataclass(frozen=True)
class RunSpec:
    """Everything one run needs. `run_id` hashes its semantic part (see harness.identity)."""

    sweep: str
    seed: int
    model: ModelSpec
    tokenizer: TokenizerSpec
    sources: dict[str, SourceSpec]
    mix: MixSpec
    validation: tuple[ValSetSpec, ...]
    train: TrainSpec
    eval: EvalSpec
    cache_dir: str = ".cache/harness"
