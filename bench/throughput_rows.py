"""Rows of the training-throughput bench (bench/train_throughput.py): each function trains one
configuration for a few steps and returns tokens/s, TFLOP/s, MFU and peak memory.

  bench_harness  the harness's own `train()` (what a sweep runs)
  bench_ref      a reference of bench/reference_models.py (transformers, the minimal LLaMA)
  bench_plain    a plain CPU loop (the demo's before/after)
  bench_anchor   the optional ../shared anchor's row
MFU: PaLM convention, against the card's nominal dense bf16 peak (looked up by its name:
`nominal_peak`) and against its measured bf16 matmul rate. Every row resets dynamo first, so
no row compiles with the shapes (or the recompile budget) another row left behind.
"""

from __future__ import annotations

import importlib.util
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.reference_models import run_reference  # noqa: E402
from train import cuda_paths  # noqa: E402
from train.checkpoint import ResumePlan  # noqa: E402
from train.loop import peak_memory, pick_device, train  # noqa: E402
from train.model import build_model  # noqa: E402
from train.specs import ModelSpec, TrainSpec  # noqa: E402

# Dense (not sparse) bf16 tensor-core peaks from the vendor's data sheets, TFLOP/s; the first
# entry whose words all occur in the card's name wins (torch.cuda.get_device_name():
# "NVIDIA H200", "NVIDIA H100 80GB HBM3" for the SXM card, "NVIDIA H100 PCIe", ...).
NOMINAL_PEAKS = (
    (("H200",), 989.0),
    (("H100", "PCIe"), 756.0),
    (("H100", "HBM3"), 989.0),  # SXM5
    (("H100", "SXM"), 989.0),
    (("A100",), 312.0),
)
CORES = torch.get_num_threads()


def nominal_peak(card: str) -> float | None:
    """The card's nominal dense bf16 peak, or None for a card not in NOMINAL_PEAKS (its MFU
    is then left blank rather than computed against another card's peak)."""
    for words, tflops in NOMINAL_PEAKS:
        if all(w.lower() in card.lower() for w in words):
            return tflops
    return None


@dataclass(frozen=True)
class Peaks:
    """The two MFU ceilings: the card's nominal peak and its measured matmul rate (TFLOP/s)."""

    nominal: float | None
    measured: float | None


class SyntheticSampler:
    """Random token windows; batch(step) depends only on step, like MixtureSampler."""

    def __init__(self, vocab: int, batch_size: int, seq_len: int):
        self.vocab, self.batch_size, self.seq_len = vocab, batch_size, seq_len

    def batch(self, step: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(step)
        return torch.randint(0, self.vocab, (self.batch_size, self.seq_len + 1), generator=g)


DEFAULT_ANCHOR = ROOT.parent / "shared" / "anchors" / "gpu_anchor.py"


def load_anchor(path: Path | None) -> ModuleType | None:
    """The optional anchor: None when the default path is absent; an explicit --anchor that
    does not exist is an error."""
    if path is None:
        if not DEFAULT_ANCHOR.exists():
            return None
        path = DEFAULT_ANCHOR
    if not path.exists():
        print(f"error: --anchor: '{path}' not found", file=sys.stderr)
        sys.exit(2)
    spec = importlib.util.spec_from_file_location("gpu_anchor", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def flops_per_token(model: torch.nn.Module, seq_len: int) -> float:
    """PaLM convention: every matmul weight (lm_head included, input embedding excluded)."""
    cfg = model.config
    total = sum(p.numel() for p in model.parameters())
    emb = model.get_input_embeddings().weight.numel()
    flop_params = total - emb + (emb if cfg.tie_word_embeddings else 0)
    return 6.0 * flop_params + 12.0 * cfg.num_hidden_layers * cfg.hidden_size * seq_len


def finish(row: dict[str, Any], fpt: float, peak: Peaks | None) -> dict[str, Any]:
    """TFLOP/s and MFU; MFU only on a GPU (peak is None on the CPU, where it means nothing)."""
    row["tflops"] = row["tokens_per_s"] * fpt / 1e12
    nominal, measured = (peak.nominal, peak.measured) if peak else (None, None)
    row["mfu_vs_nominal"] = row["tflops"] / nominal if nominal else None
    row["mfu_vs_measured_peak"] = row["tflops"] / measured if measured else None
    return row


def bench_ref(
    kind: str,
    shape: tuple,
    seq: int,
    batch: int,
    vocab: int,
    steps: int,
    warm: int,
    device: str,
    peak: Peaks | None,
) -> dict[str, Any]:
    """One of this project's references (bench/reference_models.py); a failure is a row."""
    if device == "cpu":
        torch.set_num_threads(CORES)
    torch._dynamo.reset()
    try:
        r = run_reference(kind, shape, seq, batch, vocab, steps, warm, torch.device(device))
    except Exception as e:  # noqa: BLE001 - one failing row must not lose the table
        return dict(kind=kind, d=shape[0], L=shape[1], error=repr(e)[:300])
    if r["peak_mem_gib"] is None:
        r["peak_mem_gib"] = peak_memory(torch.device("cpu")) / 2**30  # CPU: the process's RSS
    return finish(r, r["flops_per_token"], peak)


def bench_harness(
    name: str,
    ms: ModelSpec,
    vocab: int,
    batch: int,
    seq: int,
    steps: int,
    warm: int,
    device: str,
    peak: Peaks | None,
    **train_kw: Any,
) -> dict[str, Any]:
    """The harness's own `train()`: tokens/s is the median of per-step log rows after `warm`
    steps; warmup_s is the loop's own figure for its first steps (compile included)."""
    torch._dynamo.reset()
    torch.manual_seed(0)
    model = build_model(ms, vocab, seed=0)
    fpt = flops_per_token(model, seq)
    rows: list[dict[str, Any]] = []
    cuda = device == "cuda"
    fast = cuda_paths.enabled(torch.device(device))  # CUDA, or a CPU dry run
    spec = TrainSpec(
        tokens=1,
        batch_size=batch,
        seq_len=seq,
        device=device,
        log_every=1,
        warmup_frac=0.0,
        precision="bf16" if fast else "fp32",
        compile=fast,
        **{"loss_chunk": 0, **train_kw},  # the full-logits loss unless a variant names a chunk
    )
    with tempfile.TemporaryDirectory() as tmp:
        res = train(
            model,
            None,
            SyntheticSampler(vocab, batch, seq),
            spec,
            warm + steps,
            set(),
            Path(tmp),
            evaluate=lambda m, s, t: None,
            device=pick_device(spec),
            resume=ResumePlan(None),
            log_fn=rows.append,
        )
    tps = statistics.median(r["tokens_per_second"] for r in rows[warm:])
    out = dict(
        kind=name,
        d=ms.d_model,
        L=ms.n_layers,
        B=batch,
        T=seq,
        tokens_per_s=tps,
        loop_tokens_per_s=res.tokens_per_second,
        warmup_s=res.extra["warmup_seconds"],
        warmup_steps=res.extra["warmup_steps"],
        peak_mem_gib=res.peak_memory_bytes / 2**30,
        loss=rows[-1]["loss"],
        options=train_kw,
        threads=res.extra["torch_threads"],
    )
    del model
    if cuda:
        torch.cuda.empty_cache()
    return finish(out, fpt, peak)


def bench_plain(
    name: str,
    ms: ModelSpec,
    vocab: int,
    batch: int,
    seq: int,
    steps: int,
    warm: int,
    hf_loss: bool,
    foreach: bool,
) -> dict[str, Any]:
    """A plain CPU loop for before/after. hf_loss: the model's own loss (labels=) with default
    AdamW and per-parameter clipping; else the loop as it was before issue 7 (full logits, fp32
    cross-entropy, foreach AdamW and clipping)."""
    torch.set_num_threads(CORES)  # the loop before issue 7 always used every core
    model = build_model(ms, vocab, seed=0)
    fpt = flops_per_token(model, seq)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, foreach=foreach)
    sampler = SyntheticSampler(vocab, batch, seq)
    model.train()
    times = []
    for step in range(warm + steps):
        t = time.perf_counter()
        w = sampler.batch(step)
        if hf_loss:
            loss = model(input_ids=w[:, :-1], labels=w[:, :-1]).loss
        else:
            logits = model(input_ids=w[:, :-1]).logits
            loss = F.cross_entropy(
                logits.float().reshape(-1, logits.size(-1)), w[:, 1:].reshape(-1)
            )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0, foreach=foreach)
        opt.step()
        loss.item()
        times.append(time.perf_counter() - t)
    tps = batch * seq / statistics.median(times[warm:])
    return finish(
        dict(
            kind=name,
            d=ms.d_model,
            L=ms.n_layers,
            B=batch,
            T=seq,
            tokens_per_s=tps,
            peak_mem_gib=peak_memory(torch.device("cpu")) / 2**30,
            loss=float(loss),
        ),
        fpt,
        None,
    )


def bench_anchor(
    anchor: ModuleType,
    kind: str,
    shape: tuple,
    seq: int,
    batch: int,
    steps: int,
    warm: int,
    peak: Peaks | None,
) -> dict[str, Any]:
    """The optional anchor's row (../shared/anchors/gpu_anchor.py), named `anchor:<kind>`."""
    d, L, h, ff = shape
    if anchor.dev == "cpu":
        torch.set_num_threads(CORES)
    else:
        torch.cuda.reset_peak_memory_stats()  # the anchor reads the process-wide peak
    torch._dynamo.reset()
    try:
        r = anchor.run(kind, d, L, h, ff, seq, batch, steps, warm)
    except Exception as e:  # noqa: BLE001 - one failing row must not lose the table
        return dict(kind=kind, d=d, L=L, error=repr(e)[:300])
    r["peak_mem_gib"] = r.pop("max_mem_gib") or peak_memory(torch.device("cpu")) / 2**30  # CPU: RSS
    r["tokens_per_s"] = float(r["tokens_per_s"])
    r.pop("mfu_vs_989", None)  # the anchor's own, against a fixed 989; finish() sets ours
    fpt = r["tflops"] * 1e12 / r["tokens_per_s"]
    r["kind"] = f"anchor:{kind}"
    return finish(r, fpt, peak)


def spec_of(shape: tuple, seq: int) -> ModelSpec:
    d, L, h, ff = shape
    return ModelSpec(f"d{d}-l{L}", d, L, h, ffn_hidden=ff, max_seq_len=seq, tie_embeddings=False)


def ratio(a: dict | None, b: dict | None) -> float | None:
    if not a or not b or "tokens_per_s" not in a or "tokens_per_s" not in b:
        return None
    return a["tokens_per_s"] / b["tokens_per_s"]


def print_table(title: str, rows: list[dict[str, Any]]) -> None:
    print(f"\n## {title}")
    print(
        f"{'kind':<28} {'d':>5} {'L':>3} {'B':>4} {'tok/s':>12} {'TFLOP/s':>8} {'MFUnom':>7} "
        f"{'MFUpeak':>7} {'peak GiB':>9}"
    )
    for r in rows:
        if "error" in r:
            print(f"{r['kind']:<28} {r['d']:>5} {r['L']:>3} ERROR {r['error'][:100]}")
            continue
        mfu = "n/a" if r.get("mfu_vs_nominal") is None else f"{r['mfu_vs_nominal']:.3f}"
        mfup = (
            "n/a" if r.get("mfu_vs_measured_peak") is None else f"{r['mfu_vs_measured_peak']:.3f}"
        )
        print(
            f"{r['kind']:<28} {r['d']:>5} {r['L']:>3} {r['B']:>4} {r['tokens_per_s']:>12,.0f} "
            f"{r['tflops']:>8.3f} {mfu:>7} {mfup:>7} {r['peak_mem_gib']:>9.3f}"
        )


def anchor_kind(device: str) -> str:
    return "min_compile" if device == "cuda" else "hf_eager"


def matmul_tflops(device: torch.device, n: int = 8192, reps: int = 10) -> float:
    """The card's measured dense bf16 matmul rate (TFLOP/s), a second ceiling for MFU."""
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize(device)
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    torch.cuda.synchronize(device)
    return 2 * n**3 * reps / (time.perf_counter() - t) / 1e12
