"""The CUDA path, checked on a GPU (marker `gpu`; skipped with the reason where CUDA is absent).
`make gpu-check` runs these first (bench/gpu_check.py).

Each test checks a result, not only that the code runs:
- the fast path (bf16 autocast + torch.compile + fused AdamW + chunked loss) follows the fp32
  eager loop's loss curve over 200 steps: |difference| <= CURVE_TOL nats at every logged step,
  and <= CURVE_TAIL_TOL averaged over the last 20 (bf16 rounds activations to 8 bits of
  mantissa: the curves wander apart a little and must not drift);
- resume after a kill: bitwise in fp32 eager (deterministic kernels, math attention), within
  RESUME_BF16_TOL on the compiled bf16 path (a fresh compile may pick other kernels);
- lm-eval scores of one checkpoint on CUDA equal its CPU scores (log-likelihoods within
  1e-3 nats; accuracy within one item, for near-ties);
- peak GPU memory is recorded (cuda_max_allocated, above the weights' size);
- FSDP (a mesh of one) follows the unsharded fast path;
- with 2 GPUs: torchrun DDP, and FSDP, follow one process.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

# cuBLAS needs this before the first CUDA call to pick deterministic kernels (fp32 resume test)
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

from tests.test_ddp import StubTokenizer, free_port, log_rows  # noqa: E402
from tests.test_fastpath import RandomSampler  # noqa: E402
from train.checkpoint import latest_complete, plan_resume  # noqa: E402
from train.loop import build_optimizer, pick_device, train  # noqa: E402
from train.model import build_model  # noqa: E402
from train.specs import ModelSpec, TrainSpec  # noqa: E402

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (no GPU on this machine)"),
]
TWO_GPUS = pytest.mark.skipif(
    torch.cuda.device_count() < 2, reason=f"needs 2 GPUs (found {torch.cuda.device_count()})"
)

STEPS = 200
CURVE_TOL = 0.08
CURVE_TAIL_TOL = 0.03
RESUME_BF16_TOL = 0.02
MODEL = ModelSpec("gpu-test", d_model=128, n_layers=4, n_heads=4, max_seq_len=256)
VOCAB = 2048
FP32_EAGER = TrainSpec(
    tokens=1,
    batch_size=16,
    seq_len=256,
    lr=3e-3,
    warmup_frac=0.05,
    log_every=1,
    device="cuda",
    precision="fp32",
    compile=False,
    loss_chunk=0,
)
FAST = dataclasses.replace(FP32_EAGER, precision="bf16", compile=True, loss_chunk=1024)


def train_run(
    run_dir: Path, spec: TrainSpec, steps: int = STEPS, eval_steps: frozenset = frozenset()
):
    run_dir.mkdir(parents=True, exist_ok=True)
    model = build_model(MODEL, VOCAB, seed=0)
    return train(
        model,
        StubTokenizer(),
        RandomSampler(VOCAB, spec.batch_size, spec.seq_len),
        spec,
        total_steps=steps,
        eval_steps=set(eval_steps),
        run_dir=run_dir,
        evaluate=lambda m, s, t: None,
        device=pick_device(spec),
        resume=plan_resume(run_dir / "checkpoints", model=model),
    )


def losses(run_dir: Path) -> list[float]:
    return [r["loss"] for r in log_rows(run_dir)]


@pytest.fixture(scope="module")
def curves(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("gpu")
    train_run(root / "eager", dataclasses.replace(FP32_EAGER, checkpoint_every=100))
    train_run(root / "fast", dataclasses.replace(FAST, checkpoint_every=100))
    return {"eager": root / "eager", "fast": root / "fast"}


def test_fast_path_follows_the_fp32_eager_curve(curves):
    eager, fast = losses(curves["eager"]), losses(curves["fast"])
    assert len(eager) == len(fast) == STEPS
    assert eager[-1] < eager[0] - 1.0  # it learns: the comparison is not between two flat lines
    diffs = [abs(a - b) for a, b in zip(eager, fast, strict=True)]
    assert max(diffs) <= CURVE_TOL, (
        f"max |diff| {max(diffs):.4f} at step {diffs.index(max(diffs)) + 1}"
    )
    tail = sum(diffs[-20:]) / 20
    assert tail <= CURVE_TAIL_TOL, f"mean |diff| over the last 20 steps {tail:.4f}"


def test_fast_path_uses_fused_adamw():
    model = build_model(MODEL, VOCAB, seed=0).cuda()
    assert build_optimizer(model, FAST, torch.device("cuda")).defaults["fused"] is True


def resume_after_kill(src: Path, dst: Path, spec: TrainSpec) -> None:
    """`dst`: `src` as if killed after its step-100 checkpoint, then relaunched."""
    shutil.copytree(src, dst)
    shutil.rmtree(dst / "checkpoints" / f"step_{STEPS}", ignore_errors=True)
    assert latest_complete(dst / "checkpoints").name == "step_100"
    train_run(dst, spec)


def test_resume_after_kill_is_exact_in_fp32(curves, tmp_path):
    from torch.nn.attention import SDPBackend, sdpa_kernel

    # the equality below is the check: deterministic kernels, and the math attention
    # backend, whose backward is plain matmuls (the flash / memory-efficient backwards
    # accumulate in a nondeterministic order, which warn_only lets through)
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        with sdpa_kernel(SDPBackend.MATH):
            ref = tmp_path / "ref"
            train_run(ref, dataclasses.replace(FP32_EAGER, checkpoint_every=100))
            resume_after_kill(
                ref, tmp_path / "resumed", dataclasses.replace(FP32_EAGER, checkpoint_every=100)
            )
    finally:
        torch.use_deterministic_algorithms(False)
    assert losses(tmp_path / "resumed") == losses(ref)


def test_resume_after_kill_in_bf16_within_tolerance(curves, tmp_path):
    resume_after_kill(
        curves["fast"], tmp_path / "resumed", dataclasses.replace(FAST, checkpoint_every=100)
    )
    a, b = losses(curves["fast"]), losses(tmp_path / "resumed")
    assert a[:100] == b[:100]  # the part before the kill is the original log, kept
    assert max(abs(x - y) for x, y in zip(a[100:], b[100:], strict=True)) <= RESUME_BF16_TOL


def test_peak_memory_is_recorded(tmp_path):
    res = train_run(tmp_path / "mem", FAST, steps=5)
    weights = sum(p.numel() * 4 for p in build_model(MODEL, VOCAB, seed=0).parameters())
    assert res.extra["peak_memory_kind"] == "cuda_max_allocated"
    # weights + grads + two AdamW moments at least, all fp32
    assert res.peak_memory_bytes >= 4 * weights


def test_fsdp_mesh_of_one_follows_the_unsharded_fast_path(curves, tmp_path):
    spec = dataclasses.replace(FAST, parallel="fsdp", checkpoint_every=100)
    code = (
        "import sys; from pathlib import Path; sys.path.insert(0, '.');"
        "from tests.test_gpu import train_run, FAST; import dataclasses;"
        f"train_run(Path({str(tmp_path / 'fsdp')!r}), dataclasses.replace(FAST, parallel='fsdp', "
        "checkpoint_every=100))"
    )
    # its own process: FSDP makes a process group that would outlive this test
    res = subprocess.run(
        [sys.executable, "-c", code],
        cwd=Path(__file__).resolve().parent.parent,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    a, b = losses(curves["fast"]), losses(tmp_path / "fsdp")
    assert spec.parallel == "fsdp" and len(b) == STEPS
    assert max(abs(x - y) for x, y in zip(a, b, strict=True)) <= CURVE_TOL


def test_lm_eval_scores_on_cuda_equal_cpu_scores(shared_cache, tmp_path):
    from harness.backfill import _load_checkpoint
    from harness.config import run_spec
    from harness.run_setup import _TASK_RUNNERS
    from harness.runner import execute
    from tests.conftest import compose, tiny_overrides

    ov = tiny_overrides(shared_cache, tmp_path, tasks=True) + ["train.device=cpu"]
    outcome = execute(run_spec(compose(ov)), tmp_path)
    runner = next(iter(_TASK_RUNNERS.values()))
    model, tok = _load_checkpoint(latest_complete(outcome.path / "checkpoints"))
    cpu = runner.evaluate(model.cpu(), tok, max_length=256)
    gpu = runner.evaluate(model.cuda(), tok, max_length=256)
    assert set(cpu) == set(gpu) and cpu
    info = runner.info()
    for task, m in cpu.items():
        n = info[task].n_samples or 1
        assert gpu[task]["acc"] == pytest.approx(m["acc"], abs=1.0 / n + 1e-9), task
        for key in ("logprob", "logprob_per_token", "prob_correct"):
            assert gpu[task][key] == pytest.approx(m[key], abs=1e-3), (task, key)


def _torchrun(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HARNESS_NO_PROGRESS": "1", "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node=2",
            "--master_port",
            str(free_port()),
            *args,
        ],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


@TWO_GPUS
@pytest.mark.parametrize("parallel", ["ddp", "fsdp"])
def test_two_gpus_follow_one_process(shared_cache, tmp_path, parallel):
    """`torchrun --nproc_per_node=2 -m harness.cli run ...` on 2 GPUs: the record's validation
    losses equal a one-GPU run's (same global batch) within bf16 tolerance."""
    from harness.config import run_spec
    from harness.runner import execute
    from tests.conftest import compose, tiny_overrides

    ov = tiny_overrides(shared_cache, tmp_path / "one") + [
        "train=gpu",
        "train.device=cuda",
        "train.tokens=65536",
        "train.batch_size=16",
        "train.seq_len=64",
        "train.tokens_per_param=null",
        "train.log_every=2",
        "train.checkpoint_every=0",
    ]
    ref = execute(run_spec(compose(ov)), tmp_path / "one")
    two = [a.replace(str(tmp_path / "one"), str(tmp_path / "two")) for a in ov] + [
        f"train.parallel={parallel}"
    ]
    res = _torchrun(["-m", "harness.cli", "run", *two], tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    a = json.loads((ref.path / "record.json").read_text())
    b = json.loads(next((tmp_path / "two").glob("runs/*/record.json")).read_text())
    assert b["status"] == "complete" and b["compute"]["world_size"] == 2
    for ca, cb in zip(a["checkpoints"], b["checkpoints"], strict=True):
        assert ca["step"] == cb["step"]
        for name, v in ca["val_loss"].items():
            assert cb["val_loss"][name] == pytest.approx(v, abs=RESUME_BF16_TOL), name
