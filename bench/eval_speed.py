"""Checkpoint evaluation speed: the harness's TaskRunner vs the `lm_eval` command line.

    .venv/bin/python bench/eval_speed.py [--smoke] [--checkpoints N] [--batch-size B] [--out DIR]

Saves N checkpoints (HF format, with the harness's tokenizer) of a small model (cpu-200k, weights
perturbed between saves so each checkpoint is different), then scores every checkpoint on the six
toy-world tasks (n_per_task 200):
  (a) harness: one TaskRunner per process (TaskManager, tasks and requests built once), each
      checkpoint loaded with from_pretrained and scored in memory;
  (b) lm_eval CLI: `lm_eval --model hf --model_args pretrained=<ckpt>,dtype=float32 --tasks ...
      --include_path <toy tasks> --batch_size B --device cpu`, one process per checkpoint.
Both paths use the same tasks, batch size and device; (a) includes building the runner. Prints
seconds per checkpoint and the ratio (target: the harness >= 2x faster). --smoke: 2 checkpoints,
one task, 50 items (well under a minute).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

TASKS = ["toy_recall", "toy_twohop", "toy_arith", "toy_grammar", "toy_override", "toy_code"]


def make_checkpoints(
    out: Path, n: int, n_per_task: int, small: bool = False
) -> tuple[list[Path], Path]:
    """N saved checkpoints and the toy task folder, built through the harness's own data path."""
    import torch
    from hydra import compose, initialize_config_dir

    from harness.config import run_spec
    from harness.data_prep import prepare_data, toy_task_dir
    from train.model import build_model

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(
            config_name="config",
            overrides=[
                f"cache_dir={out / 'cache'}",
                "model=cpu-200k",
                "eval=toy",
                f"eval.n_per_task={n_per_task}",
                "sources.toyworld.docs.train=2000",
                "tokenizer.vocab_size=1024",
                "tokenizer.train_docs=1000",
            ]
            # --smoke: a smaller world and tokenizer, so setup takes seconds
            + (
                [
                    "sources.toyworld.n_entities=120",
                    "sources.toyworld.docs.train=300",
                    "tokenizer.vocab_size=512",
                    "tokenizer.train_docs=200",
                ]
                if small
                else []
            ),
        )
    spec = run_spec(cfg)
    data = prepare_data(spec)
    task_dir, _ = toy_task_dir(spec)
    model = build_model(spec.model, len(data.tokenizer), seed=0)
    paths = []
    for i in range(n):
        with torch.no_grad():  # stand-in for training between checkpoints: new weights each time
            for p in model.parameters():
                p.add_(torch.randn_like(p) * 0.01)
        path = out / "ckpts" / f"step_{i}"
        model.save_pretrained(path)
        data.tokenizer.save_pretrained(path)
        paths.append(path)
    return paths, task_dir


def time_harness(
    ckpts: list[Path], tasks: list[str], task_dir: Path, batch_size: int, limit: int | None
) -> float:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from eval.lm_eval_runner import TaskRunner

    t0 = time.perf_counter()
    runner = TaskRunner(tasks, (str(task_dir),), batch_size=batch_size, limit=limit)
    for ckpt in ckpts:
        model = AutoModelForCausalLM.from_pretrained(ckpt, dtype=torch.float32).eval()
        tok = AutoTokenizer.from_pretrained(ckpt)
        runner.evaluate(model, tok, max_length=256)
    return time.perf_counter() - t0


def time_cli(
    ckpts: list[Path], tasks: list[str], task_dir: Path, batch_size: int, limit: int | None
) -> float:
    exe = Path(sys.executable).with_name("lm_eval")
    t0 = time.perf_counter()
    for ckpt in ckpts:
        cmd = [
            str(exe),
            "--model",
            "hf",
            "--model_args",
            f"pretrained={ckpt},dtype=float32,max_length=256",
            "--tasks",
            ",".join(tasks),
            "--include_path",
            str(task_dir),
            "--batch_size",
            str(batch_size),
            "--device",
            "cpu",
        ] + (["--limit", str(limit)] if limit else [])
        proc = subprocess.run(
            cmd, capture_output=True, text=True, env=dict(os.environ, TQDM_DISABLE="1")
        )
        if proc.returncode != 0:
            raise SystemExit(f"lm_eval failed on {ckpt}:\n{proc.stderr[-3000:]}")
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> float:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="2 checkpoints, one task, 50 items")
    ap.add_argument("--checkpoints", type=int, default=10)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    n, tasks, n_per_task, limit = args.checkpoints, TASKS, 200, None
    if args.smoke:
        n, tasks, n_per_task, limit = 2, TASKS[:1], 50, 50
    out = args.out or Path(tempfile.mkdtemp(prefix="eval_speed_"))
    t0 = time.perf_counter()
    ckpts, task_dir = make_checkpoints(out, n, n_per_task, small=args.smoke)
    print(
        f"setup: {n} checkpoints + toy tasks in {time.perf_counter() - t0:.1f} s ({out})",
        flush=True,
    )
    harness = time_harness(ckpts, tasks, task_dir, args.batch_size, limit)
    cli = time_cli(ckpts, tasks, task_dir, args.batch_size, limit)
    print(
        f"{n} checkpoints, tasks {','.join(tasks)}, batch size {args.batch_size}, torch threads "
        f"{__import__('torch').get_num_threads()}"
    )
    print(f"{'path':<10} {'total s':>9} {'s/checkpoint':>13}")
    print(f"{'harness':<10} {harness:>9.1f} {harness / n:>13.2f}")
    print(f"{'lm_eval':<10} {cli:>9.1f} {cli / n:>13.2f}")
    ratio = cli / harness
    print(f"ratio lm_eval/harness: {ratio:.2f}x (target >= 2x)")
    return ratio


if __name__ == "__main__":
    main()
