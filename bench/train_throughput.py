"""Training throughput of the harness trainer beside plain transformers and the minimal anchor.

    .venv/bin/python bench/train_throughput.py --out results.json          # CUDA: the issue's sizes
    .venv/bin/python bench/train_throughput.py --smoke --out smoke.json    # CPU, tiny sizes, < 60 s

CUDA: d512/L8, d768/L12, d1024/L24 (seq 1024, vocab 50304, untied, the anchor's shapes and
batches): tokens/s, TFLOP/s, MFU against 989 TFLOP/s and against the card's measured bf16
matmul peak, peak memory; the harness `train()` itself (bf16 autocast, compile, fused AdamW,
async logging, pinned prefetch), and in the same process the anchor's transformers
LlamaForCausalLM eager and compiled and its minimal compiled LLaMA (imported from --anchor).
Then the small models d128/L4 and d256/L6 with the harness's variants (chunked loss, CUDA
graphs) beside the minimal anchor. MFU: PaLM convention, as in the anchor:
6 * (non-embedding + lm_head params) + 12 * L * d * T FLOPs per token.
--smoke (or no CUDA): the same table at tiny sizes on CPU, and the CPU demo configuration
(cpu-200k, batch 16 x seq 128) before / after, side by side in one process.
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


def load_anchor(path: Path) -> ModuleType:
    if not path.exists():
        sys.exit(f"error: --anchor: '{path}' not found (pass the path of shared/anchors/gpu_anchor.py)")
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
    row["tflops"] = row["tokens_per_s"] * fpt / 1e12
    row["mfu_vs_989"] = row["tflops"] / PEAK_NOMINAL if peak else None
    row["mfu_vs_measured_peak"] = row["tflops"] / peak if peak else None
    return row


def bench_harness(name: str, ms: ModelSpec, vocab: int, batch: int, seq: int, steps: int, warm: int,
                  device: str, peak: float | None, **train_kw: Any) -> dict[str, Any]:
    """The harness's own `train()`: tokens/s is the median of per-step log rows after warm-up."""
    torch.manual_seed(0)
    model = build_model(ms, vocab, seed=0)
    fpt = flops_per_token(model, seq)
    rows: list[dict[str, Any]] = []
    cuda = device == "cuda"
    spec = TrainSpec(tokens=1, batch_size=batch, seq_len=seq, device=device, log_every=1, warmup_frac=0.0,
                     precision="bf16" if cuda else "fp32", compile=cuda, **train_kw)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        res = train(model, None, SyntheticSampler(vocab, batch, seq), spec, warm + steps, set(), Path(tmp),
                    evaluate=lambda m, s, t: None, log_fn=rows.append)
        wall = time.perf_counter() - t0
    tps = statistics.median(r["tokens_per_second"] for r in rows[warm:])
    out = dict(kind=name, d=ms.d_model, L=ms.n_layers, B=batch, T=seq, tokens_per_s=tps,
               warmup_s=wall - (steps * batch * seq) / tps, peak_mem_gib=res.peak_memory_bytes / 2**30,
               loss=rows[-1]["loss"], options=train_kw, threads=res.extra["torch_threads"])
    del model
    if cuda:
        torch.cuda.empty_cache()
    return _finish(out, fpt, peak)


def bench_plain(name: str, ms: ModelSpec, vocab: int, batch: int, seq: int, steps: int, warm: int,
                hf_loss: bool, foreach: bool) -> dict[str, Any]:
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
            loss = F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), w[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0, foreach=foreach)
        opt.step()
        loss.item()
        times.append(time.perf_counter() - t)
    tps = batch * seq / statistics.median(times[warm:])
    return _finish(dict(kind=name, d=ms.d_model, L=ms.n_layers, B=batch, T=seq, tokens_per_s=tps,
                        peak_mem_gib=peak_memory(torch.device("cpu")) / 2**30, loss=float(loss)), fpt, None)


def bench_anchor(anchor: ModuleType, kind: str, shape: tuple, seq: int, batch: int, steps: int, warm: int,
                 peak: float | None) -> dict[str, Any]:
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
    print(f"{'kind':<28} {'d':>5} {'L':>3} {'B':>4} {'tok/s':>12} {'TFLOP/s':>8} {'MFU989':>7} "
          f"{'MFUpeak':>7} {'peak GiB':>9}")
    for r in rows:
        if "error" in r:
            print(f"{r['kind']:<28} {r['d']:>5} {r['L']:>3} ERROR {r['error'][:100]}")
            continue
        mfu = "n/a" if r.get("mfu_vs_989") is None else f"{r['mfu_vs_989']:.3f}"
        mfup = "n/a" if r.get("mfu_vs_measured_peak") is None else f"{r['mfu_vs_measured_peak']:.3f}"
        print(f"{r['kind']:<28} {r['d']:>5} {r['L']:>3} {r['B']:>4} {r['tokens_per_s']:>12,.0f} "
              f"{r['tflops']:>8.3f} {mfu:>7} {mfup:>7} {r['peak_mem_gib']:>9.3f}")


def size_section(anchor: ModuleType, plan: list[tuple], seq: int, vocab: int, steps: int, warm: int,
                 device: str, peak: float | None, kinds: tuple[str, ...]) -> tuple[list, list]:
    """Per size: harness vs the anchor's rows of `kinds`; ratios harness / each reference."""
    rows, ratios = [], []
    for shape, batch in plan:
        ms = spec_of(shape, seq)
        h = bench_harness("harness", ms, vocab, batch, seq, steps, warm, device, peak)
        refs = {k: bench_anchor(anchor, k, shape, seq, batch, steps, warm, peak) for k in kinds}
        rows += [h, *refs.values()]
        ratios.append({"d": shape[0], "L": shape[1], **{f"harness/{k}": ratio(h, r) for k, r in refs.items()}})
    return rows, ratios


def small_section(anchor: ModuleType, shapes: list[tuple], seq: int, vocab: int, steps: int, warm: int,
                  device: str, peak: float | None, batch: int) -> tuple[list, list]:
    """Small models: which harness variant is fastest, beside the minimal compiled anchor."""
    variants = {"harness": {}, "harness+chunked_ce": {"loss_chunk": 8192},
                "harness+cudagraphs": {"compile_mode": "reduce-overhead"},
                "harness+chunked+cudagraphs": {"loss_chunk": 8192, "compile_mode": "reduce-overhead"}}
    if device != "cuda":
        variants = {"harness": {}, "harness+chunked_ce": {"loss_chunk": CPU_CONF["loss_chunk"]}}
    rows, ratios = [], []
    for shape in shapes:
        ms = spec_of(shape, seq)
        got = {}
        for name, kw in variants.items():
            try:
                got[name] = bench_harness(name, ms, vocab, batch, seq, steps, warm, device, peak, **kw)
            except Exception as e:  # noqa: BLE001 - report the variant as failed, keep the rest
                got[name] = dict(kind=name, d=shape[0], L=shape[1], error=repr(e)[:300])
        ref_kind = "min_compile" if device == "cuda" else "hf_eager"
        ref = bench_anchor(anchor, ref_kind, shape, seq, batch, steps, warm, peak)
        rows += [*got.values(), ref]
        best = max((r for r in got.values() if "tokens_per_s" in r), key=lambda r: r["tokens_per_s"])
        ratios.append({"d": shape[0], "L": shape[1], "best_variant": best["kind"],
                       f"best/{ref_kind}": ratio(best, ref)})
    return rows, ratios


def demo_before_after(rounds: int, steps: int) -> dict[str, Any]:
    """The CPU demo model (cpu-200k: d48/L4, vocab 2048, batch 16 x 128): interleaved rounds so
    other load on the machine hits every variant alike; the best round of each is kept."""
    ms = ModelSpec("cpu-200k", 48, 4, 4, max_seq_len=256)
    best: dict[str, dict] = {}
    for _ in range(rounds):
        for r in (bench_plain("plain (HF loss, default AdamW)", ms, 2048, 16, 128, steps, 2, True, False),
                  bench_plain("before (loop at HEAD)", ms, 2048, 16, 128, steps, 2, False, True),
                  bench_harness("after (harness train())", ms, 2048, 16, 128, steps, 2, "cpu", None,
                                loss_chunk=CPU_CONF["loss_chunk"])):
            if r["kind"] not in best or r["tokens_per_s"] > best[r["kind"]]["tokens_per_s"]:
                best[r["kind"]] = r
    rows = list(best.values())
    print_table("CPU demo, cpu-200k, batch 16 x seq 128 (best of interleaved rounds)", rows)
    after = rows[-1]["tokens_per_s"]
    out = {"rows": rows, "loss_chunk": CPU_CONF["loss_chunk"], "after/before": after / rows[1]["tokens_per_s"],
           "after/plain": after / rows[0]["tokens_per_s"], "threads": rows[-1]["threads"]}
    print(f"after/before {out['after/before']:.3f}   after/plain {out['after/plain']:.3f}   "
          f"threads picked by the trainer {out['threads']} of {CORES}")
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--smoke", action="store_true", help="CPU, tiny sizes, a few steps")
    ap.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    ap.add_argument("--anchor", type=Path, default=ROOT.parent / "shared" / "anchors" / "gpu_anchor.py")
    ap.add_argument("--steps", type=int, default=None)
    args = ap.parse_args(argv)
    device = "cuda" if torch.cuda.is_available() and not args.smoke else "cpu"
    anchor = load_anchor(args.anchor)
    anchor.dev = device  # the anchor picks its device from its own argv; follow ours
    info: dict[str, Any] = {"torch": torch.__version__, "device": device,
                            "card": torch.cuda.get_device_name() if device == "cuda" else "cpu",
                            "threads": torch.get_num_threads()}
    if device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        peak = anchor.matmul_ceiling()
        seq, vocab, steps, warm = 1024, VOCAB, args.steps or 20, 4
        plan = [((512, 8, 8, 1408), 64), ((768, 12, 12, 2048), 32), ((1024, 24, 16, 2816), 16)]
        kinds = ("hf_eager", "hf_compile", "min_compile")
        small_batch, small = 32, [(128, 4, 4, 352), (256, 6, 4, 704)]
    else:
        peak = None  # no meaningful CPU peak: MFU is n/a
        seq, vocab, steps, warm = 128, 2048, args.steps or 3, 1
        anchor.VOCAB = vocab  # the anchor's reference models follow the smoke vocabulary
        plan = [((64, 2, 4, 172), 8), ((128, 4, 4, 352), 8)]
        kinds = ("hf_eager",)  # anchor's HF model, bf16 autocast on CPU: exercises the import path
        small_batch, small = 8, [shape for shape, _ in plan]  # the smoke sizes again, chunk applies
    info["bf16_matmul_tflops"] = peak
    print(json.dumps(info), flush=True)
    results: dict[str, Any] = {"info": info}
    rows, ratios = size_section(anchor, plan, seq, vocab, steps, warm, device, peak, kinds)
    print_table(f"sizes (seq {seq}, vocab {vocab})", rows)
    for r in ratios:
        print("ratios", json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in r.items()}))
    results["sizes"] = {"rows": rows, "ratios": ratios}
    rows, ratios = small_section(anchor, small, seq, vocab, steps, warm, device, peak, small_batch)
    print_table("small models", rows)
    for r in ratios:
        print("small", json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in r.items()}))
    results["small"] = {"rows": rows, "ratios": ratios}
    if device == "cpu":
        results["cpu_demo"] = demo_before_after(rounds=2 if args.smoke else 4, steps=steps + 3)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=1, default=str))
    return results


if __name__ == "__main__":
    main()
