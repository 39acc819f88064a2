"""LLaMA-style decoders built from transformers' own config and model classes, so every
checkpoint loads with `AutoModelForCausalLM.from_pretrained`.

FLOPs convention: training FLOPs = 6 * N * D with N the total parameter count and D the
tokens seen (Gadre et al. 2024's convention, so harness runs and the testbed share an axis).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from common.errors import ConfigError
from train.specs import ModelSpec

FLOPS_CONVENTION = "6*N*D, N = total parameters, D = training tokens"


def ffn_hidden(spec: ModelSpec) -> int:
    if spec.ffn_hidden:
        return spec.ffn_hidden
    return -(-int(8 * spec.d_model / 3) // 32) * 32


def llama_config(spec: ModelSpec, vocab_size: int) -> LlamaConfig:
    if spec.d_model % spec.n_heads:
        raise ConfigError(f"model.n_heads: {spec.n_heads} does not divide d_model {spec.d_model}")
    kv = spec.n_kv_heads or spec.n_heads
    if spec.n_heads % kv:
        raise ConfigError(f"model.n_kv_heads: {kv} does not divide n_heads {spec.n_heads}")
    return LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=spec.d_model,
        intermediate_size=ffn_hidden(spec),
        num_hidden_layers=spec.n_layers,
        num_attention_heads=spec.n_heads,
        num_key_value_heads=kv,
        max_position_embeddings=spec.max_seq_len,
        tie_word_embeddings=spec.tie_embeddings,
        rope_theta=spec.rope_theta,
        rms_norm_eps=1e-5,
        initializer_range=0.02,
        attn_implementation="sdpa",
    )  # type: ignore[call-arg]  # transformers 5 takes these two as extra kwargs, unlisted


def pad_vocab(n: int, multiple: int = 64) -> int:
    """Round the embedding size up: matmuls over a multiple of 64 run faster on GPUs."""
    return -(-n // multiple) * multiple


def build_model(spec: ModelSpec, vocab_size: int, seed: int) -> LlamaForCausalLM:
    """A freshly initialised model; the init depends only on `seed`."""
    torch.manual_seed(seed)
    return LlamaForCausalLM(llama_config(spec, pad_vocab(vocab_size)))


@dataclass(frozen=True)
class ModelStats:
    n_params: int
    n_params_nonembedding: int


def model_stats(model: LlamaForCausalLM) -> ModelStats:
    """Total parameters, and all but the input embedding (the output head does compute, so it
    counts, as in Gadre et al.'s `params_no_embed` and the PaLM MFU convention)."""
    total = sum(p.numel() for p in model.parameters())
    emb = sum(p.numel() for p in model.get_input_embeddings().parameters())
    return ModelStats(total, total - emb)


def training_flops(n_params: int, tokens: int) -> float:
    return 6.0 * n_params * tokens
