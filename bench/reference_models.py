"""Reference training steps the throughput bench measures the harness against, on the same
card in the same process:

  hf_eager     plain transformers `LlamaForCausalLM` (SDPA attention), its own loss (labels=)
  hf_compile   the same under `torch.compile`
  mini_eager   `MiniLlama` below: the same shapes written out by hand, no framework around it
  mini_compile `MiniLlama` under `torch.compile`

All untied, bf16 autocast and fused AdamW on CUDA (fp32 and foreach AdamW on CPU, unless a
dry run switches the CUDA paths on: train/cuda_paths.py), no
gradient clipping, no logging: the step as plainly as it can be written. MFU numbers use
`flops_per_token` (PaLM convention): 6 x (every matmul weight: all parameters but the input
embedding) + 12 x L x d x T for attention.
"""

from __future__ import annotations

import math
import statistics
import time
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from train import cuda_paths

KINDS = ("hf_eager", "hf_compile", "mini_eager", "mini_compile")


def flops_per_token(
    n_params: int, input_embedding: int, n_layers: int, d_model: int, seq: int
) -> float:
    """PaLM convention: 6 FLOPs per matmul weight per token (the input embedding is a lookup,
    not a matmul; a tied head is counted through the embedding) plus attention's 12·L·d·T."""
    return 6.0 * (n_params - input_embedding) + 12.0 * n_layers * d_model * seq


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.rms_norm(x, (x.size(-1),), self.weight, self.eps)


def rotary_tables(
    head_dim: int, seq: int, theta: float = 10000.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin of the rotary angles, [seq, head_dim], in the rotate-half layout HF Llama uses."""
    freqs = theta ** (-torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
    angles = torch.arange(seq, dtype=torch.float32)[:, None] * freqs[None, :]
    angles = torch.cat([angles, angles], dim=-1)
    return angles.cos(), angles.sin()


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    half = x.size(-1) // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * cos + rotated * sin


class Layer(nn.Module):
    """Pre-norm attention (one fused q/k/v projection) and SwiGLU (one fused gate/up)."""

    def __init__(self, d: int, heads: int, ffn: int):
        super().__init__()
        self.heads, self.ffn = heads, ffn
        self.attn_norm, self.mlp_norm = RMSNorm(d), RMSNorm(d)
        self.qkv = nn.Linear(d, 3 * d, bias=False)
        self.out = nn.Linear(d, d, bias=False)
        self.gate_up = nn.Linear(d, 2 * ffn, bias=False)
        self.down = nn.Linear(ffn, d, bias=False)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = (
            self.qkv(self.attn_norm(x))
            .view(b, t, 3, self.heads, d // self.heads)
            .permute(2, 0, 3, 1, 4)
        )
        y = F.scaled_dot_product_attention(
            apply_rotary(q, cos, sin), apply_rotary(k, cos, sin), v, is_causal=True
        )
        x = x + self.out(y.transpose(1, 2).reshape(b, t, d))
        gate, up = self.gate_up(self.mlp_norm(x)).split(self.ffn, dim=-1)
        return x + self.down(F.silu(gate) * up)


class MiniLlama(nn.Module):
    """A LLaMA-style decoder of the harness's shapes (untied head), forward returns the mean
    next-token cross-entropy with the logits upcast to fp32, as the harness's loss does."""

    def __init__(self, vocab: int, d: int, n_layers: int, heads: int, ffn: int, seq: int):
        super().__init__()
        self.embed = nn.Embedding(vocab, d)
        self.layers = nn.ModuleList(Layer(d, heads, ffn) for _ in range(n_layers))
        self.norm = RMSNorm(d)
        self.head = nn.Linear(d, vocab, bias=False)
        cos, sin = rotary_tables(d // heads, seq)
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)
        for p in self.parameters():
            if p.ndim == 2:
                nn.init.normal_(p, std=0.02)

    def forward(self, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        x = self.embed(inputs)
        t = inputs.size(1)
        cos, sin = self.cos[:t], self.sin[:t]
        for layer in self.layers:
            x = layer(x, cos, sin)
        logits = self.head(self.norm(x)).float()
        return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1))


def hf_llama(vocab: int, d: int, n_layers: int, heads: int, ffn: int, seq: int) -> nn.Module:
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(
        vocab_size=vocab,
        hidden_size=d,
        intermediate_size=ffn,
        num_hidden_layers=n_layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=seq,
        tie_word_embeddings=False,
        rms_norm_eps=1e-5,
        attn_implementation="sdpa",
    )
    return LlamaForCausalLM(cfg)


class _HFLoss(nn.Module):
    """transformers' own loss (labels=, shifted inside the model): the plain user's step."""

    def __init__(self, lm: nn.Module):
        super().__init__()
        self.lm = lm

    def forward(self, inputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.lm(input_ids=inputs, labels=labels).loss


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_reference(
    kind: str,
    shape: tuple[int, int, int, int],
    seq: int,
    batch: int,
    vocab: int,
    steps: int,
    warm: int,
    device: torch.device,
) -> dict[str, Any]:
    """Train `kind` for warm + steps steps on fixed random tokens; tokens/s is the median over
    the timed steps (each step synchronised on CUDA so one slow step cannot hide)."""
    if kind not in KINDS:
        raise ValueError(f"kind: unknown reference '{kind}' (known: {', '.join(KINDS)})")
    d, n_layers, heads, ffn = shape
    torch.manual_seed(0)
    cuda = device.type == "cuda"
    fast = cuda_paths.enabled(device)  # CUDA, or a CPU dry run
    if kind.startswith("hf"):
        model = hf_llama(vocab, d, n_layers, heads, ffn, seq).to(device)
        emb = model.get_input_embeddings().weight.numel()
        step_loss = _HFLoss(model)
    else:
        model = MiniLlama(vocab, d, n_layers, heads, ffn, seq).to(device)
        emb = model.embed.weight.numel()
        step_loss = model
    n_params = sum(p.numel() for p in model.parameters())
    fpt = flops_per_token(n_params, emb, n_layers, d, seq)
    compiled = kind.endswith("compile")
    if compiled:
        torch._dynamo.reset()  # no shapes or recompile budget left over from another size
    fn = (
        torch.compile(
            step_loss, dynamic=False, **(cuda_paths.compile_kwargs(device) if fast else {})
        )
        if compiled
        else step_loss
    )
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=fast, foreach=None if fast else True)
    g = torch.Generator().manual_seed(0)
    window = torch.randint(0, vocab, (batch, seq + 1), generator=g).to(device)
    # HF's labels= are shifted inside the model: give it the inputs; the others the targets
    x, y = window[:, :-1], (window[:, :-1] if kind.startswith("hf") else window[:, 1:])
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    times, t_start = [], time.perf_counter()
    for _ in range(warm + steps):
        t = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=fast):
            loss = fn(x, y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        _sync(device)
        times.append(time.perf_counter() - t)
    tps = batch * seq / statistics.median(times[warm:])
    row = dict(
        kind=kind,
        d=d,
        L=n_layers,
        B=batch,
        T=seq,
        params=n_params,
        tokens_per_s=tps,
        flops_per_token=fpt,
        warmup_s=sum(times[:warm]),
        wall_s=time.perf_counter() - t_start,
        peak_mem_gib=torch.cuda.max_memory_allocated(device) / 2**30 if cuda else None,
        loss=loss.item(),
    )
    if not math.isfinite(row["loss"]):
        row["error"] = f"loss is {row['loss']}"
    del model, step_loss, opt, fn
    if cuda:
        torch.cuda.empty_cache()
    return row
