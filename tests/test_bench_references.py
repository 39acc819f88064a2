"""The throughput bench's own references: the minimal LLaMA computes what transformers' Llama
computes (same shapes, same loss from the same weights), so a speed ratio against it compares
implementations of one model, not two models."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

from reference_models import MiniLlama, flops_per_token, hf_llama, run_reference  # noqa: E402
from throughput_rows import Peaks, finish, nominal_peak  # noqa: E402

SHAPE = dict(vocab=96, d=32, n_layers=2, heads=4, ffn=88, seq=16)


def copy_hf_into_mini(hf: torch.nn.Module, mini: MiniLlama) -> None:
    with torch.no_grad():
        mini.embed.weight.copy_(hf.model.embed_tokens.weight)
        for src, dst in zip(hf.model.layers, mini.layers, strict=True):
            a, m = src.self_attn, src.mlp
            dst.qkv.weight.copy_(torch.cat([a.q_proj.weight, a.k_proj.weight, a.v_proj.weight]))
            dst.out.weight.copy_(a.o_proj.weight)
            dst.gate_up.weight.copy_(torch.cat([m.gate_proj.weight, m.up_proj.weight]))
            dst.down.weight.copy_(m.down_proj.weight)
            dst.attn_norm.weight.copy_(src.input_layernorm.weight)
            dst.mlp_norm.weight.copy_(src.post_attention_layernorm.weight)
        mini.norm.weight.copy_(hf.model.norm.weight)
        mini.head.weight.copy_(hf.lm_head.weight)


def test_mini_llama_equals_transformers_llama():
    torch.manual_seed(0)
    hf = hf_llama(
        SHAPE["vocab"], SHAPE["d"], SHAPE["n_layers"], SHAPE["heads"], SHAPE["ffn"], SHAPE["seq"]
    )
    mini = MiniLlama(**SHAPE)
    copy_hf_into_mini(hf, mini)
    assert sum(p.numel() for p in mini.parameters()) == sum(p.numel() for p in hf.parameters())
    w = torch.randint(0, SHAPE["vocab"], (3, SHAPE["seq"] + 1))
    ref = torch.nn.functional.cross_entropy(
        hf(input_ids=w[:, :-1]).logits.float().reshape(-1, SHAPE["vocab"]), w[:, 1:].reshape(-1)
    )
    assert mini(w[:, :-1], w[:, 1:]).item() == pytest.approx(ref.item(), abs=1e-5)


def test_flops_per_token_palm_convention():
    # 100 params of which 30 input embedding; 2 layers, d 8, T 16: 6*70 + 12*2*8*16
    assert flops_per_token(100, 30, 2, 8, 16) == 6 * 70 + 12 * 2 * 8 * 16


@pytest.mark.parametrize("kind", ["hf_eager", "mini_eager"])
def test_reference_rows_report_a_finite_loss(kind):
    row = run_reference(
        kind, (32, 2, 4, 88), seq=16, batch=2, vocab=96, steps=2, warm=1, device=torch.device("cpu")
    )
    assert row["tokens_per_s"] > 0 and "error" not in row
    assert row["params"] == sum(p.numel() for p in MiniLlama(96, 32, 2, 4, 88, 16).parameters())


def test_unknown_reference_kind_is_named():
    with pytest.raises(ValueError, match="kind: unknown reference 'nope'"):
        run_reference("nope", (32, 2, 4, 88), 16, 2, 96, 1, 0, torch.device("cpu"))


@pytest.mark.parametrize(
    "card, peak",
    [
        ("NVIDIA H200", 989.0),
        ("NVIDIA H100 80GB HBM3", 989.0),  # the SXM card's name
        ("NVIDIA H100 PCIe", 756.0),
        ("NVIDIA A100-SXM4-80GB", 312.0),
        ("NVIDIA H100 NVL", None),  # not in the table: no MFU rather than another card's
        ("NVIDIA L4", None),
    ],
)
def test_nominal_peak_by_card_name(card, peak):
    assert nominal_peak(card) == peak


def test_mfu_left_blank_for_an_unknown_card():
    row = finish({"tokens_per_s": 1e6}, 1e8, Peaks(nominal=None, measured=500.0))
    assert row["tflops"] == pytest.approx(100.0) and row["mfu_vs_nominal"] is None
    assert row["mfu_vs_measured_peak"] == pytest.approx(0.2)
    assert finish({"tokens_per_s": 1e6}, 1e8, Peaks(989.0, None))["mfu_vs_nominal"] == (
        pytest.approx(100 / 989)
    )
