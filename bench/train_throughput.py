"""Training throughput of the harness trainer beside plain transformers and a minimal LLaMA.

    .venv/bin/python bench/train_throughput.py --out results.json          # CUDA: the issue's sizes
    .venv/bin/python bench/train_throughput.py --smoke --out smoke.json    # CPU, tiny sizes

CUDA: d512/L8, d768/L12, d1024/L24 (seq 1024, vocab 50304, untied; batches 64/32/16):
tokens/s (steady state: the median step after the warm-up steps; warmup_s apart), TFLOP/s, MFU
against the card's nominal bf16 peak (by its name; blank for a card not in the table) and its
measured bf16 matmul peak,
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
--dry-run: CPU, tiny sizes, with the CUDA-only switches on (bf16 autocast, torch.compile via
aot_eager, fused AdamW: train/cuda_paths.py) and the compiled references: the GPU code path,
figures meaningless. --sizes 512x8,... picks sizes; --harness-first measures the harness at
every size before the references. Every row is saved as it is measured (--out), and one that
raises (an OOM, a compile error) is an error row: the rows after it still run.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.reference_models import KINDS  # noqa: E402
from bench.throughput_ratios import size_ratios, small_ratios  # noqa: E402
from bench.throughput_rows import (  # noqa: E402
    CORES,
    DEFAULT_ANCHOR,
    Peaks,
    anchor_kind,
    bench_anchor,
    bench_harness,
    bench_plain,
    bench_ref,
    load_anchor,
    matmul_tflops,
    nominal_peak,
    print_table,
    spec_of,
)
from common.atomic import write_text  # noqa: E402
from train import cuda_paths  # noqa: E402
from train.specs import ModelSpec  # noqa: E402

VOCAB = 50304
# (d_model, layers, heads, ffn) by name; the GPU sizes follow the anchor (../shared/anchors)
SHAPES = {
    "32x2": (32, 2, 4, 88),
    "64x2": (64, 2, 4, 172),
    "128x4": (128, 4, 4, 352),
    "256x6": (256, 6, 4, 704),
    "512x8": (512, 8, 8, 1408),
    "768x12": (768, 12, 12, 2048),
    "1024x24": (1024, 24, 16, 2816),
}
CUDA_BATCH = {512: 64, 768: 32, 1024: 16}  # the rest (small models): 32; CPU: 8
CPU_CONF = yaml.safe_load((ROOT / "conf" / "train" / "cpu.yaml").read_text())


def shape_plan(names: list[str], device: str) -> list[tuple[tuple, int]]:
    """(shape, batch) for each size name ('512x8'): the shapes of SHAPES, the batch per device."""
    out = []
    for name in names:
        if name not in SHAPES:
            print(f"error: --sizes: unknown '{name}' (known: {', '.join(SHAPES)})", file=sys.stderr)
            sys.exit(2)
        shape = SHAPES[name]
        out.append((shape, CUDA_BATCH.get(shape[0], 32) if device == "cuda" else 8))
    return out


def measure(kind: str, shape: tuple, fn: Callable[..., dict[str, Any]], *args: Any, **kw: Any):
    """One row, fn(*args, **kw); an exception (an OOM, a compile error) becomes an error row,
    so the sizes and kinds after it are still measured."""
    try:
        return fn(*args, **kw)
    except Exception as e:  # noqa: BLE001 - report the row as failed, keep the rest
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        return dict(kind=kind, d=shape[0], L=shape[1], error=repr(e)[:300])


def size_section(
    anchor: ModuleType | None,
    plan: list[tuple],
    seq: int,
    vocab: int,
    steps: int,
    warm: int,
    device: str,
    peak: Peaks | None,
    refs: tuple[str, ...],
    out: dict[str, list],
    save: Callable[[], None],
    harness_first: bool = False,
) -> None:
    """Per size: the harness beside each reference in `refs` (and the anchor's minimal model
    when present); ratios harness / each. Rows are appended to out["rows"] and saved one by
    one, so a run stopped by a time limit keeps every row it measured. harness_first: the
    harness at every size before any reference (the references where time allows)."""
    kinds = ["harness", *refs] + ([f"anchor:{anchor_kind(device)}"] if anchor else [])
    if harness_first:  # the harness at every size, then each size's references
        jobs = [("harness", p) for p in plan] + [(k, p) for p in plan for k in kinds[1:]]
    else:
        jobs = [(k, p) for p in plan for k in kinds]
    common = (steps, warm, device, peak)
    for kind, (shape, batch) in jobs:
        if kind == "harness":
            ms = spec_of(shape, seq)
            row = measure(kind, shape, bench_harness, kind, ms, vocab, batch, seq, *common)
        elif kind.startswith("anchor:"):
            row = bench_anchor(anchor, anchor_kind(device), shape, seq, batch, steps, warm, peak)
        else:
            row = measure(kind, shape, bench_ref, kind, shape, seq, batch, vocab, *common)
        out["rows"].append(row)
        out["ratios"] = size_ratios(out["rows"])
        save()


def small_section(
    anchor: ModuleType | None,
    plan: list[tuple],
    seq: int,
    vocab: int,
    steps: int,
    warm: int,
    device: str,
    peak: Peaks | None,
    variants: tuple[str, ...],
    refs: tuple[str, ...],
    out: dict[str, list],
    save: Callable[[], None],
) -> None:
    """Small models: each harness variant beside the references; the best variant's ratios.
    Rows are appended and saved one by one, like size_section."""
    common = (steps, warm, device, peak)
    for shape, batch in plan:
        ms = spec_of(shape, seq)
        rows = [
            (bench_harness, (name, ms, vocab, batch, seq, *common), small_variants(device)[name])
            for name in variants
        ] + [(bench_ref, (k, shape, seq, batch, vocab, *common), {}) for k in refs]
        for fn, args, kw in rows:
            out["rows"].append(measure(args[0], shape, fn, *args, **kw))
            out["ratios"] = small_ratios(out["rows"])
            save()
        if anchor is not None:
            out["rows"].append(
                bench_anchor(anchor, anchor_kind(device), shape, seq, batch, steps, warm, peak)
            )
            out["ratios"] = small_ratios(out["rows"])
            save()


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
    ap.add_argument(
        "--dry-run",
        action="store_true",
        help="CPU, tiny sizes, with the CUDA-only switches on (bf16, compile, fused AdamW)",
    )
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
        "--sizes", default=None, help=f"the sizes of every section run ({', '.join(SHAPES)})"
    )
    ap.add_argument(
        "--harness-first",
        action="store_true",
        help="sizes: the harness at every size before the references",
    )
    ap.add_argument(
        "--no-demo", action="store_true", help="CPU: skip the demo before/after section"
    )
    ap.add_argument("--sections", default="sizes,small", help="which tables, in this order")
    args = ap.parse_args(argv)
    if args.dry_run:
        os.environ[cuda_paths.ENV] = "1"  # read at each row: compile, bf16, fused AdamW on CPU
        args.no_demo = True
    device = "cuda" if torch.cuda.is_available() and not (args.smoke or args.dry_run) else "cpu"
    anchor = load_anchor(args.anchor)
    if anchor is not None:
        anchor.dev = device  # the anchor picks its device from its own argv; follow ours
    card = torch.cuda.get_device_name() if device == "cuda" else "cpu"
    info: dict[str, Any] = {
        "torch": torch.__version__,
        "device": device,
        "card": card,
        "dry_run": args.dry_run,
        "threads": torch.get_num_threads(),
        "anchor": None if anchor is None else anchor.__file__,
    }
    if device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        peak = Peaks(nominal_peak(card), matmul_tflops(torch.device("cuda")))
        if peak.nominal is None:
            print(f"note: no nominal bf16 peak known for '{card}': MFU vs nominal left blank")
        seq, vocab, steps, warm = 1024, VOCAB, args.steps or 20, 4
        sizes, small = ["512x8", "768x12", "1024x24"], ["128x4", "256x6"]
        refs, small_refs = (
            ("hf_eager", "hf_compile", "mini_compile"),
            ("hf_compile", "mini_compile"),
        )
    else:
        peak = None  # no meaningful CPU peak: MFU is n/a
        seq, vocab = 128, 2048
        steps, warm = (args.steps or 2, 1) if args.dry_run else (args.steps or 3, 1)
        if anchor is not None:
            anchor.VOCAB = vocab  # the anchor's reference models follow the smoke vocabulary
        sizes, small = ["64x2", "128x4"], ["64x2"]  # small: the first smoke size again
        refs, small_refs = (
            (("hf_compile", "mini_compile"), ("mini_compile",))
            if args.dry_run
            else (("hf_eager", "mini_eager"), ("mini_eager",))  # no compile: says nothing of a GPU
        )
    if args.sizes is not None:
        sizes = small = [s for s in args.sizes.split(",") if s]
    refs = _kinds(args.refs, refs, KINDS, "--refs")
    small_refs = _kinds(args.small_refs, small_refs, KINDS, "--small-refs")
    variants = _kinds(
        args.small_variants,
        tuple(small_variants(device)),
        tuple(small_variants(device)),
        "--small-variants",
    )
    plan, small_plan = shape_plan(sizes, device), shape_plan(small, device)
    info["bf16_matmul_tflops"] = peak.measured if peak else None
    info["nominal_tflops"] = peak.nominal if peak else None
    print(json.dumps(info), flush=True)
    results: dict[str, Any] = {"info": info}

    def save() -> None:
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            write_text(args.out, json.dumps(results, indent=1, default=str))

    for section in args.sections.split(","):
        if section == "sizes":
            out = results["sizes"] = {"rows": [], "ratios": []}
            size_section(
                anchor,
                plan,
                seq,
                vocab,
                steps,
                warm,
                device,
                peak,
                refs,
                out,
                save,
                harness_first=args.harness_first,
            )
            print_section(f"sizes (seq {seq}, vocab {vocab})", "ratios", out)
        elif section == "small":
            out = results["small"] = {"rows": [], "ratios": []}
            small_section(
                anchor,
                small_plan,
                seq,
                vocab,
                steps,
                warm,
                device,
                peak,
                variants,
                small_refs,
                out,
                save,
            )
            print_section("small models", "small", out)
        else:
            print(f"error: --sections: unknown '{section}' (known: sizes, small)", file=sys.stderr)
            sys.exit(2)
    if device == "cpu" and not args.no_demo:
        results["cpu_demo"] = demo_before_after(rounds=1 if args.smoke else 4, steps=steps + 3)
    save()
    return results


def print_section(title: str, tag: str, out: dict[str, list]) -> None:
    print_table(title, out["rows"])
    for r in out["ratios"]:
        print(
            tag, json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in r.items()})
        )


if __name__ == "__main__":
    main()
