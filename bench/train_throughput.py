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
import json
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
from bench.throughput_rows import (  # noqa: E402
    CORES,
    DEFAULT_ANCHOR,
    anchor_kind,
    bench_anchor,
    bench_harness,
    bench_plain,
    bench_ref,
    load_anchor,
    matmul_tflops,
    print_table,
    ratio,
    spec_of,
)
from common.atomic import write_text  # noqa: E402
from train.specs import ModelSpec  # noqa: E402

VOCAB = 50304
CPU_CONF = yaml.safe_load((ROOT / "conf" / "train" / "cpu.yaml").read_text())


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
    out: dict[str, list],
    save: Callable[[], None],
) -> None:
    """Per size: the harness beside each reference in `refs` (and the anchor's minimal model
    when present); ratios harness / each. Appends to out["rows"] / out["ratios"] and saves
    after each size, so a run stopped by a time limit keeps what it measured."""
    rows, ratios = out["rows"], out["ratios"]
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
        save()


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
    out: dict[str, list],
    save: Callable[[], None],
) -> None:
    """Small models: each harness variant beside the references; the best variant's ratios.
    Appends to `out` and saves after each size, like size_section."""
    rows, ratios = out["rows"], out["ratios"]
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
    ap.add_argument("--sections", default="sizes,small", help="which tables, in this order")
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
        small_batch, small = 8, [plan[0][0]]  # the first smoke size again: the variants run
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

    def save() -> None:
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            write_text(args.out, json.dumps(results, indent=1, default=str))

    for section in args.sections.split(","):
        if section == "sizes":
            out = results["sizes"] = {"rows": [], "ratios": []}
            size_section(anchor, plan, seq, vocab, steps, warm, device, peak, refs, out, save)
            print_section(f"sizes (seq {seq}, vocab {vocab})", "ratios", out)
        elif section == "small":
            out = results["small"] = {"rows": [], "ratios": []}
            small_section(
                anchor,
                small,
                seq,
                vocab,
                steps,
                warm,
                device,
                peak,
                small_batch,
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
