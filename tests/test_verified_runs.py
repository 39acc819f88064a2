"""Issue 13, on one trained tiny run (module fixture) and copies of it: damaged checkpoints are
never scored or resumed from, backfills lose nothing, and a run that stops or fails after its
record exists never stays `running`. Each test reproduces a case that ended wrong before."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.conftest import tiny_overrides
from tests.fault_injection import child_env, harness_cmd, with_default_sigint

TASKS = "eval.tasks=[toy_recall,toy_recall@letters,toy_arith]"


@pytest.fixture(scope="module")
def trained(tmp_path_factory, shared_cache):
    """A finished tiny run with toy tasks at three evaluated checkpoints."""
    from harness.config import run_spec
    from harness.runner import execute
    from tests.conftest import compose

    out = tmp_path_factory.mktemp("verified")
    spec = run_spec(
        compose(tiny_overrides(shared_cache, out, tasks=True) + ["eval.num_checkpoints=3"])
    )
    outcome = execute(spec, out)
    assert outcome.status == "complete"
    return out, outcome.run_id


def _copy(trained, tmp_path: Path) -> tuple[Path, Path]:
    out, rid = trained
    shutil.copytree(out, tmp_path / "sweep")
    return tmp_path / "sweep", tmp_path / "sweep" / "runs" / rid


def _record(run: Path) -> dict:
    return json.loads((run / "record.json").read_text())


def _steps(run: Path) -> list[Path]:
    return sorted((run / "checkpoints").glob("step_*"), key=lambda p: int(p.name[5:]))


def _eval_args(root: Path, cache: Path, tasks: str) -> list[str]:
    keep = ("sources.", "tokenizer.", "eval.n_per")
    return [f"root={root}", f"cache_dir={cache}", "eval=toy", f"eval.tasks={tasks}"] + [
        a for a in tiny_overrides(cache, root, tasks=True) if a.startswith(keep)
    ]


@pytest.mark.slow
def test_backfill_skips_damaged_and_unfinished_checkpoints_and_keeps_the_rest(
    trained, shared_cache, tmp_path, run_cli
):
    root, run = _copy(trained, tmp_path)
    first, second, last = _steps(run)
    weights = first / "model.safetensors"
    data = bytearray(weights.read_bytes())
    mid = len(data) // 2
    data[mid : mid + 2048] = bytes(2048)  # 2 KB zeroed in the middle: same size, other weights
    weights.write_bytes(bytes(data))
    (second / "manifest.json").unlink()  # interrupted while saving
    code, _, err = run_cli("eval", *_eval_args(root, shared_cache, "[toy_grammar@prefix]"))
    assert code == 2 and "2 checkpoint(s) could not be scored" in err
    by_step = {c["step"]: c for c in _record(run)["checkpoints"]}
    damaged, unfinished, good = (by_step[int(p.name[5:])] for p in (first, second, last))
    assert "toy_grammar@prefix" not in damaged["tasks"] and "sha256" in damaged["failure"]
    assert (
        "toy_grammar@prefix" not in unfinished["tasks"] and "no manifest" in unfinished["failure"]
    )
    assert "acc" in good["tasks"]["toy_grammar@prefix"] and "failure" not in good


@pytest.mark.slow
def test_concurrent_backfills_of_one_root_keep_both_tasks(trained, shared_cache, tmp_path):
    root, run = _copy(trained, tmp_path)
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "harness.cli",
                "eval",
                *_eval_args(root, shared_cache, f"[{task}]"),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=child_env(),
        )
        for task in ("toy_grammar@prefix", "toy_twohop")
    ]
    for p in procs:
        out, _ = p.communicate(timeout=600)
        assert p.returncode == 0, out
    for entry in _record(run)["checkpoints"]:
        assert {"toy_grammar@prefix", "toy_twohop"} <= set(entry["tasks"]), entry["step"]


def _resign(ckpt: Path, name: str) -> None:
    """Put `name`'s new size and sha256 into the manifest: only the loader can tell."""
    from train.checkpoint import MANIFEST, _sha256

    manifest = json.loads((ckpt / MANIFEST).read_text())
    manifest["files"][name] = {
        "bytes": (ckpt / name).stat().st_size,
        "sha256": _sha256(ckpt / name),
    }
    (ckpt / MANIFEST).write_text(json.dumps(manifest))


def _rename_tensors(ckpt: Path) -> None:
    """The decoder's tensors under other names, as another transformers version may save
    them, in a re-signed checkpoint: loaded leniently, those layers stay at their random init."""
    from safetensors.torch import load_file, save_file

    weights = ckpt / "model.safetensors"
    tensors = load_file(weights)
    renamed = {k.replace("model.layers.", "model.decoder.layers."): v for k, v in tensors.items()}
    assert renamed.keys() != tensors.keys()
    save_file(renamed, weights, metadata={"format": "pt"})
    _resign(ckpt, "model.safetensors")


@pytest.mark.slow
def test_backfill_fails_a_checkpoint_whose_tensors_have_other_names(
    trained, shared_cache, tmp_path, run_cli
):
    root, run = _copy(trained, tmp_path)
    renamed, *others = _steps(run)
    _rename_tensors(renamed)
    code, _, err = run_cli("eval", *_eval_args(root, shared_cache, "[toy_grammar@prefix]"))
    assert code == 2 and "1 checkpoint(s) could not be scored" in err
    by_step = {c["step"]: c for c in _record(run)["checkpoints"]}
    bad = by_step[int(renamed.name[5:])]
    assert "toy_grammar@prefix" not in bad["tasks"]
    assert "weights do not match the model" in bad["failure"]
    assert "model.decoder.layers.0" in bad["failure"]
    for ckpt in others:
        assert "toy_grammar@prefix" in by_step[int(ckpt.name[5:])]["tasks"]


@pytest.mark.slow
def test_resume_skips_a_checkpoint_whose_tensors_have_other_names(
    trained, shared_cache, tmp_path, run_cli
):
    root, run = _copy(trained, tmp_path)
    *_, previous, newest = _steps(run)
    _rename_tensors(newest)
    rec = _record(run)
    rec["status"], rec["compute"] = "running", None  # as a run killed before it finished
    (run / "record.json").write_text(json.dumps(rec))
    code, _, err = run_cli(
        "run", *tiny_overrides(shared_cache, root, tasks=True), "eval.num_checkpoints=3"
    )
    assert code == 0, err
    assert f"skipping checkpoint {newest}: weights do not match the model" in err
    after = _record(run)
    assert after["status"] == "complete"
    assert after["compute"]["resumed_from_step"] == int(previous.name[5:])


def test_only_the_tied_head_may_be_missing(tmp_path):
    """The tied output matrix is the one tensor a checkpoint may lack; an untied model needs
    it, and an extra tensor is refused too."""
    from safetensors.torch import save_file

    from common.errors import DataError
    from harness.config import run_spec
    from tests.conftest import compose
    from train.checkpoint import load_weights
    from train.model import build_model

    spec = run_spec(compose(tiny_overrides(tmp_path / "c", tmp_path / "o")))
    model = build_model(spec.model, 512, seed=0)
    state = {k: v.contiguous() for k, v in model.state_dict().items() if k != "lm_head.weight"}
    save_file(state, tmp_path / "model.safetensors", metadata={"format": "pt"})
    assert model.config.tie_word_embeddings
    load_weights(model, tmp_path)  # the tied head alone may be absent
    model.config.tie_word_embeddings = False
    with pytest.raises(DataError, match="lacks 1 tensor.*lm_head.weight"):
        load_weights(model, tmp_path)
    model.config.tie_word_embeddings = True
    save_file({**state, "extra.bias": torch.zeros(2)}, tmp_path / "model.safetensors")
    with pytest.raises(DataError, match="has unexpected 1 tensor.*extra.bias"):
        load_weights(model, tmp_path)


class _Evil:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.mark.slow
def test_code_running_trainer_state_falls_back_to_the_previous_checkpoint(trained, tmp_path):
    from train.checkpoint import STATE, plan_resume

    _, run = _copy(trained, tmp_path)
    newest = _steps(run)[-1]
    marker = tmp_path / "pwned"
    torch.save({"step": 1, "payload": _Evil(marker)}, newest / STATE)
    _resign(newest, STATE)
    said: list[str] = []
    plan = plan_resume(run / "checkpoints", log=said.append)
    assert plan.checkpoint == _steps(run)[-2] and plan.trainer_state is not None
    assert any("trainer state does not load safely" in m for m in said)
    assert not marker.exists()


@pytest.mark.slow
def test_damaged_token_cache_on_relaunch_fails_the_record_with_its_reason(
    trained, shared_cache, tmp_path, run_cli
):
    root, run = _copy(trained, tmp_path)
    cache = tmp_path / "cache"
    shutil.copytree(shared_cache, cache, ignore=shutil.ignore_patterns("*.lock"))
    rec = _record(run)
    rec["status"], rec["compute"] = "running", None  # as a run killed before it finished
    (run / "record.json").write_text(json.dumps(rec))
    metas = [
        m
        for m in (cache / "tokens").glob("*.json")
        if json.loads(m.read_text()).get("split") == "val"
    ]
    assert metas
    for meta in metas:
        binary = meta.with_suffix(".bin")
        data = bytearray(binary.read_bytes())
        data[:64] = bytes(reversed(data[:64]))
        binary.write_bytes(bytes(data))
    leftover = run / "checkpoints" / ".step_40.abc123"  # a save interrupted long ago
    leftover.mkdir()
    (leftover / "model.safetensors").write_bytes(b"partial")
    code, _, err = run_cli(
        "run", *tiny_overrides(cache, root, tasks=True), "eval.num_checkpoints=3"
    )
    assert code == 2 and "does not match its sha256" in err
    after = _record(run)
    assert after["status"] == "failed" and "does not match its sha256" in after["failure"]
    assert not leftover.exists()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
@pytest.mark.slow
def test_local_run_stopped_by_a_signal_is_recorded_interrupted(shared_cache, tmp_path, sig):
    from harness.status import status_rows

    out = tmp_path / "out"
    over = tiny_overrides(shared_cache, out) + ["train.tokens=400000", "train.checkpoint_every=2"]
    proc = subprocess.Popen(
        with_default_sigint(harness_cmd(over)),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=child_env(),
    )
    try:
        log = None
        for _ in range(1200):  # until training has logged a step
            logs = list(out.glob("runs/*/train_log.jsonl"))
            if logs and logs[0].read_text().count("\n") >= 2:
                log = logs[0]
                break
            if proc.poll() is not None:
                break
            time.sleep(0.25)
        assert log is not None, proc.communicate()[0]
        os.kill(proc.pid, sig)
        output, _ = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    rec = _record(log.parent)
    assert rec["status"] == "interrupted", output
    want = (
        "interrupted by Ctrl-C" if sig == signal.SIGINT else f"stopped: signal {int(sig)} at step"
    )
    assert rec["failure"].startswith(want), rec["failure"]
    assert [r["state"] for r in status_rows(out)] == ["interrupted"]
