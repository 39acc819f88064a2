"""Training throughput of the harness trainer beside plain transformers and a minimal LLaMA.

    .venv/bin/python bench/train_throughput.py --out results.json          # CUDA: the issue's sizes
    .venv/bin/python bench/train_throughput.py --smoke --out smoke.json    # CPU, tiny sizes

CUDA: d512/L8, d768/L12, d1024/L24 (seq 1024, vocab 50304, untied; batches 64/32/16):
tokens/s, TFLOP/s, MFU against 989 TFLOP/s and against the card's measured bf16 matmul peak,
peak memory; the harness `train()` itself (bf16 autocast, compile, fused AdamW, async
logging, pinned prefetch), and in the same process the references of bench/reference_models.py
(transformers LlamaForCausalLM eager and compiled, and this project's minimal compiled LLaMA).
Then the small models d128/L4 and d256/L6 with the harness's variants (chunked loss, CUDA
graphs) beside the minimal compiled reference. MFU: PaLM convention,
6 * (non-embedding + lm_head params) + 12 * L * d * T FLOPs per token.
The anchor `../shared/anchors/gpu_anchor.py`, when it exists (or --anchor names it), adds its
minimal compiled model as one more column; nothing depends on it.
--smoke (or no CUDA): the same tables at tiny sizes on CPU (eager references), and the CPU demo
configuration (cpu-200k, batch 16 x seq 128) before / after, side by side in one process.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
import torch.nn.functional as F
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.reference_models import KINDS, run_reference  # noqa: E402
from common.atomic import write_text  # noqa: E402
from train.loop import peak_memory, train  # noqa: E402
from train.model import build_model  # noqa: E402
from train.specs import ModelSpec, TrainSpec  # noqa: E402

PEAK_NOMINAL = 989.0  # TFLOP/s, H100/H200 dense bf16, the anchor's reference
VOCAB = 50304
CORES = torch.get_num_threads()
CPU_CONF = yaml.safe_load((ROOT / "conf" / "train" / "cpu.yaml").read_text())


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


def _finish(row: dict[str, Any], fpt: float, peak: float | None) -> dict[str, Any]:
    """TFLOP/s and MFU; MFU only on a GPU (peak is None on the CPU, where it means nothing)."""
    row["tflops"] = row["tokens_per_s"] * fpt / 1e12
    row["mfu_vs_989"] = row["tflops"] / PEAK_NOMINAL if peak else None
    row["mfu_vs_measured_peak"] = row["tflops"] / peak if peak else None
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
    peak: float | None,
) -> dict[str, Any]:
    """One of this project's references (bench/reference_models.py); a failure is a row."""
    if device == "cpu":
        torch.set_num_threads(CORES)
    try:
        r = run_reference(kind, shape, seq, batch, vocab, steps, warm, torch.device(device))
    except Exception as e:  # noqa: BLE001 - one failing row must not lose the table
        return dict(kind=kind, d=shape[0], L=shape[1], error=repr(e)[:300])
    if r["peak_mem_gib"] is None:
        r["peak_mem_gib"] = peak_memory(torch.device("cpu")) / 2**30  # CPU: the process's RSS
    return _finish(r, r["flops_per_token"], peak)


def bench_harness(
    name: str,
    ms: ModelSpec,
    vocab: int,
    batch: int,
    seq: int,
    steps: int,
    warm: int,
    device: str,
    peak: float | None,
    **train_kw: Any,
) -> dict[str, Any]:
    """The harness's own `train()`: tokens/s is the median of per-step log rows after warm-up."""
    torch.manual_seed(0)
    model = build_model(ms, vocab, seed=0)
    fpt = flops_per_token(model, seq)
    rows: list[dict[str, Any]] = []
    cuda = device == "cuda"
    spec = TrainSpec(
        tokens=1,
        batch_size=batch,
        seq_len=seq,
        device=device,
        log_every=1,
        warmup_frac=0.0,
        precision="bf16" if cuda else "fp32",
        compile=cuda,
        **train_kw,
    )
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        res = train(
            model,
            None,
            SyntheticSampler(vocab, batch, seq),
            spec,
            warm + steps,
            set(),
            Path(tmp),
            evaluate=lambda m, s, t: None,
            log_fn=rows.append,
        )
        wall = time.perf_counter() - t0
    tps = statistics.median(r["tokens_per_second"] for r in rows[warm:])
    out = dict(
        kind=name,
        d=ms.d_model,
        L=ms.n_layers,
        B=batch,
        T=seq,
        tokens_per_s=tps,
        warmup_s=wall - (steps * batch * seq) / tps,
        peak_mem_gib=res.peak_memory_bytes / 2**30,
        loss=rows[-1]["loss"],
        options=train_kw,
        threads=res.extra["torch_threads"],
    )
    del model
    if cuda:
        torch.cuda.empty_cache()
    return _finish(out, fpt, peak)


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
    return _finish(
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
    peak: float | None,
) -> dict[str, Any]:
    """The optional anchor's row (../shared/anchors/gpu_anchor.py), named `anchor:<kind>`."""
    d, L, h, ff = shape
    if anchor.dev == "cpu":
        torch.set_num_threads(CORES)
    else:
        torch.cuda.reset_peak_memory_stats()  # the anchor reads the process-wide peak
    try:
        r = anchor.run(kind, d, L, h, ff, seq, batch, steps, warm)
    except Exception as e:  # noqa: BLE001 - one failing row must not lose the table
        return dict(kind=kind, d=d, L=L, error=repr(e)[:300])
    r["peak_mem_gib"] = r.pop("max_mem_gib") or peak_memory(torch.device("cpu")) / 2**30  # CPU: RSS
    r["tokens_per_s"] = float(r["tokens_per_s"])
    r.pop("mfu_vs_989", None)
    fpt = r["tflops"] * 1e12 / r["tokens_per_s"]
    r["kind"] = f"anchor:{kind}"
    return _finish(r, fpt, peak)


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
        f"{'kind':<28} {'d':>5} {'L':>3} {'B':>4} {'tok/s':>12} {'TFLOP/s':>8} {'MFU989':>7} "
        f"{'MFUpeak':>7} {'peak GiB':>9}"
    )
    for r in rows:
        if "error" in r:
            print(f"{r['kind']:<28} {r['d']:>5} {r['L']:>3} ERROR {r['error'][:100]}")
            continue
        mfu = "n/a" if r.get("mfu_vs_989") is None else f"{r['mfu_vs_989']:.3f}"
        mfup = (
            "n/a" if r.get("mfu_vs_measured_peak") is None else f"{r['mfu_vs_measured_peak']:.3f}"
        )
        print(
            f"{r['kind']:<28} {r['d']:>5} {r['L']:>3} {r['B']:>4} {r['tokens_per_s']:>12,.0f} "
            f"{r['tflops']:>8.3f} {mfu:>7} {mfup:>7} {r['peak_mem_gib']:>9.3f}"
        )


def size_section(
    anchor: ModuleType | None,
    plan: list[tuple],
    seq: int,
    vocab: int,
    steps: int,
    warm: int,
    device: str,
    peak: float | None,
    refs: tuple[str, ...],
) -> tuple[list, list]:
    """Per size: the harness beside each reference in `refs` (and the anchor's minimal model
    when present); ratios harness / each."""
    rows, ratios = [], []
    for shape, batch in plan:
        ms = spec_of(shape, seq)
        h = bench_harness("harness", ms, vocab, batch, seq, steps, warm, device, peak)
        got = {k: bench_ref(k, shape, seq, batch, vocab, steps, warm, device, peak) for k in refs}
        if anchor is not None:
            got[f"anchor:{anchor_kind(device)}"] = bench_anchor(
                anchor, anchor_kind(device), shape, seq, batch, steps, warm, peak
            )
        rows += [h, *got.values()]
        ratios.append(
            {"d": shape[0], "L": shape[1], **{f"harness/{k}": ratio(h, r) for k, r in got.items()}}
        )
    return rows, ratios


def small_section(
    anchor: ModuleType | None,
    shapes: list[tuple],
    seq: int,
    vocab: int,
    steps: int,
    warm: int,
    device: str,
    peak: float | None,
    batch: int,
    variants: tuple[str, ...],
    refs: tuple[str, ...],
) -> tuple[list, list]:
    """Small models: each harness variant beside the references; the best variant's ratios."""
    rows, ratios = [], []
    for shape in shapes:
        ms = spec_of(shape, seq)
        got = {}
        for name in variants:
            try:
                got[name] = bench_harness(
                    name,
                    ms,
                    vocab,
                    batch,
                    seq,
                    steps,
                    warm,
                    device,
                    peak,
                    **small_variants(device)[name],
                )
            except Exception as e:  # noqa: BLE001 - report the variant as failed, keep the rest
                got[name] = dict(kind=name, d=shape[0], L=shape[1], error=repr(e)[:300])
        ref_rows = {
            k: bench_ref(k, shape, seq, batch, vocab, steps, warm, device, peak) for k in refs
        }
        if anchor is not None:
            ref_rows[f"anchor:{anchor_kind(device)}"] = bench_anchor(
                anchor, anchor_kind(device), shape, seq, batch, steps, warm, peak
            )
        rows += [*got.values(), *ref_rows.values()]
        ok = [r for r in got.values() if "tokens_per_s" in r]
        best = max(ok, key=lambda r: r["tokens_per_s"]) if ok else None
        ratios.append(
            {
                "d": shape[0],
                "L": shape[1],
                "best_variant": best["kind"] if best else None,
                **{f"best/{k}": ratio(best, r) for k, r in ref_rows.items()},
                **{
                    f"{v}/{k}": ratio(got[v], r)
                    for v in got
                    for k, r in ref_rows.items()
                    if v != (best or {}).get("kind")
                },
            }
        )
    return rows, ratios


def small_variants(device: str) -> dict[str, dict[str, Any]]:
    """The harness configurations tried on small models (train.* settings)."""
    if device != "cuda":
        return {"harness": {}, "harness+chunked_ce": {"loss_chunk": CPU_CONF["loss_chunk"]}}
    return {
        "harness": {},
        "harness+chunked_ce": {"loss_chunk": 8192},
        "harness+cudagraphs": {"compile_mode": "reduce-overhead"},
        "harness+chunked+cudagraphs": {"loss_chunk": 8192, "compile_mode": "reduce-overhead"},
    }


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


def demo_before_after(rounds: int, steps: int) -> dict[str, Any]:
    """The CPU demo model (cpu-200k: d48/L4, vocab 2048, batch 16 x 128): interleaved rounds so
    other load on the machine hits every variant alike; the best round of each is kept."""
    ms = ModelSpec("cpu-200k", 48, 4, 4, max_seq_len=256)
    best: dict[str, dict] = {}
    for _ in range(rounds):
        for r in (
            bench_plain("plain (HF loss, default AdamW)", ms, 2048, 16, 128, steps, 2, True, False),
            bench_plain("before (loop at HEAD)", ms, 2048, 16, 128, steps, 2, False, True),
            bench_harness(
                "after (harness train())",
                ms,
                2048,
                16,
                128,
                steps,
                2,
                "cpu",
                None,
                loss_chunk=CPU_CONF["loss_chunk"],
            ),
        ):
            if r["kind"] not in best or r["tokens_per_s"] > best[r["kind"]]["tokens_per_s"]:
                best[r["kind"]] = r
    rows = list(best.values())
    print_table("CPU demo, cpu-200k, batch 16 x seq 128 (best of interleaved rounds)", rows)
    after = rows[-1]["tokens_per_s"]
    out = {
        "rows": rows,
        "loss_chunk": CPU_CONF["loss_chunk"],
        "after/before": after / rows[1]["tokens_per_s"],
        "after/plain": after / rows[0]["tokens_per_s"],
        "threads": rows[-1]["threads"],
    }
    print(
        f"after/before {out['after/before']:.3f}   after/plain {out['after/plain']:.3f}   "
        f"threads picked by the trainer {out['threads']} of {CORES}"
    )
    return out


def _kinds(
    text: str | None, default: tuple[str, ...], known: tuple[str, ...], flag: str
) -> tuple[str, ...]:
    if text is None:
        return default
    kinds = tuple(k for k in text.split(",") if k)
    for k in kinds:
        if k not in known:
            print(f"error: {flag}: unknown '{k}' (known: {', '.join(known)})", file=sys.stderr)
            sys.exit(2)
    return kinds


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--smoke", action="store_true", help="CPU, tiny sizes, a few steps")
    ap.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    ap.add_argument(
        "--anchor",
        type=Path,
        default=None,
        help=f"optional extra column (default: {DEFAULT_ANCHOR} when it exists)",
    )
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument(
        "--refs",
        default=None,
        help=f"references beside the harness at each size ({', '.join(KINDS)})",
    )
    ap.add_argument("--small-refs", default=None, help="references beside the small models")
    ap.add_argument(
        "--small-variants", default=None, help="harness variants tried on the small models"
    )
    ap.add_argument(
        "--no-demo", action="store_true", help="CPU: skip the demo before/after section"
    )
    args = ap.parse_args(argv)
    device = "cuda" if torch.cuda.is_available() and not args.smoke else "cpu"
    anchor = load_anchor(args.anchor)
    if anchor is not None:
        anchor.dev = device  # the anchor picks its device from its own argv; follow ours
    info: dict[str, Any] = {
        "torch": torch.__version__,
        "device": device,
        "card": torch.cuda.get_device_name() if device == "cuda" else "cpu",
        "threads": torch.get_num_threads(),
        "anchor": None if anchor is None else anchor.__file__,
    }
    if device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        peak = matmul_tflops(torch.device("cuda"))
        seq, vocab, steps, warm = 1024, VOCAB, args.steps or 20, 4
        plan = [((512, 8, 8, 1408), 64), ((768, 12, 12, 2048), 32), ((1024, 24, 16, 2816), 16)]
        refs, small_refs = (
            ("hf_eager", "hf_compile", "mini_compile"),
            ("hf_compile", "mini_compile"),
        )
        small_batch, small = 32, [(128, 4, 4, 352), (256, 6, 4, 704)]
    else:
        peak = None  # no meaningful CPU peak: MFU is n/a
        seq, vocab, steps, warm = 128, 2048, args.steps or 3, 1
        if anchor is not None:
            anchor.VOCAB = vocab  # the anchor's reference models follow the smoke vocabulary
        plan = [((64, 2, 4, 172), 8), ((128, 4, 4, 352), 8)]
        refs, small_refs = (
            ("hf_eager", "mini_eager"),
            ("mini_eager",),
        )  # no compile: says nothing of a GPU
        small_batch, small = 8, [shape for shape, _ in plan]  # the smoke sizes again, chunk applies
    refs = _kinds(args.refs, refs, KINDS, "--refs")
    small_refs = _kinds(args.small_refs, small_refs, KINDS, "--small-refs")
    variants = _kinds(
        args.small_variants,
        tuple(small_variants(device)),
        tuple(small_variants(device)),
        "--small-variants",
    )
    info["bf16_matmul_tflops"] = peak
    print(json.dumps(info), flush=True)
    results: dict[str, Any] = {"info": info}
    rows, ratios = size_section(anchor, plan, seq, vocab, steps, warm, device, peak, refs)
    print_table(f"sizes (seq {seq}, vocab {vocab})", rows)
    for r in ratios:
        print(
            "ratios",
            json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in r.items()}),
        )
    results["sizes"] = {"rows": rows, "ratios": ratios}
    rows, ratios = small_section(
        anchor, small, seq, vocab, steps, warm, device, peak, small_batch, variants, small_refs
    )
    print_table("small models", rows)
    for r in ratios:
        print(
            "small",
            json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in r.items()}),
        )
    results["small"] = {"rows": rows, "ratios": ratios}
    if device == "cpu" and not args.no_demo:
        results["cpu_demo"] = demo_before_after(rounds=2 if args.smoke else 4, steps=steps + 3)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        write_text(args.out, json.dumps(results, indent=1, default=str))
    return results


if __name__ == "__main__":
    main()
