"""Reliability (issue 6), security: no remote code unless configured, no pickle code execution
on load, and secrets from the environment never reach records, configs, logs or W&B files."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.conftest import ROOT, tiny_overrides
from tests.fault_injection import child_env
from train.specs import TokenizerSpec

SOURCE_DIRS = ("harness", "train", "eval", "analysis")


def _calls(pattern: str) -> list[tuple[Path, int, str]]:
    """Each call matching `pattern` in the project's code, with its (possibly multi-line) args."""
    out = []
    for d in SOURCE_DIRS:
        for f in (ROOT / d).rglob("*.py"):
            text = f.read_text()
            for m in re.finditer(pattern, text):
                depth, i = 1, m.end()
                while depth and i < len(text):
                    depth += {"(": 1, ")": -1}.get(text[i], 0)
                    i += 1
                out.append((f, text.count("\n", 0, m.start()) + 1, text[m.start() : i]))
    return out


def test_every_hub_load_states_trust_remote_code():
    """Loads by name or path say trust_remote_code explicitly (never the library default)."""
    calls = [c for c in _calls(r"\bAuto\w+\.from_pretrained\(") if "tokenizer_object" not in c[2]]
    assert calls
    for f, line, call in calls:
        assert "trust_remote_code=" in call, f"{f}:{line}: {call}"
        assert "trust_remote_code=True" not in call, f"{f}:{line}: {call}"


def test_every_torch_load_is_weights_only():
    calls = _calls(r"\btorch\.load\(")
    assert calls
    for f, line, call in calls:
        assert "weights_only=True" in call, f"{f}:{line}: {call}"


class _Recorder:
    calls: list[dict] = []

    @classmethod
    def from_pretrained(cls, *args, **kwargs):
        cls.calls.append(kwargs)
        raise OSError("recorded")


@pytest.mark.parametrize("configured", [None, True])
def test_pretrained_tokenizer_trust_remote_code_off_unless_configured(
    monkeypatch, tmp_path, configured
):
    import train.tokenizer as tokmod
    from common.errors import DataError

    monkeypatch.setattr(tokmod, "AutoTokenizer", _Recorder)
    _Recorder.calls = []
    spec = TokenizerSpec(kind="pretrained", name="some/model")
    if configured:
        import dataclasses

        spec = dataclasses.replace(spec, trust_remote_code=True)
    with pytest.raises(DataError, match="cannot load 'some/model'"):
        tokmod.load_tokenizer(spec, {}, tmp_path)
    assert _Recorder.calls == [{"trust_remote_code": bool(configured)}]


def test_backfill_loads_checkpoints_without_remote_code(monkeypatch, tmp_path):
    import transformers

    from common.atomic import write_json
    from common.errors import DataError
    from harness.backfill import _load_checkpoint

    write_json(tmp_path / "manifest.json", {"step": 1, "files": {}})
    _Recorder.calls = []
    monkeypatch.setattr(
        transformers.AutoModelForCausalLM, "from_pretrained", _Recorder.from_pretrained
    )
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", _Recorder.from_pretrained)
    # backfill reads the architecture first (weights go through train.checkpoint.load_weights)
    monkeypatch.setattr(transformers.AutoConfig, "from_pretrained", _Recorder.from_pretrained)
    with pytest.raises(DataError, match="does not load"):
        _load_checkpoint(tmp_path)
    assert _Recorder.calls and all(c.get("trust_remote_code") is False for c in _Recorder.calls)


class _Evil:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_trainer_state_with_code_in_the_pickle_is_refused(tmp_path):
    from train.checkpoint import STATE, load_trainer_state

    marker = tmp_path / "pwned"
    torch.save({"step": 1, "payload": _Evil(marker)}, tmp_path / STATE)
    with pytest.raises(
        Exception, match="(?i)weights.only|unsupported global|not an allowed global"
    ):
        load_trainer_state(tmp_path)
    assert not marker.exists()


SECRETS = {
    "WANDB_API_KEY": "sk-test-PLANTED-123",
    "HF_TOKEN": "hf_PLANTED456",
    "HUGGING_FACE_HUB_TOKEN": "hf_PLANTED456",
}


@pytest.mark.parametrize("logger", ["none", "wandb"])
@pytest.mark.slow
def test_planted_secrets_never_reach_outputs(shared_cache, tmp_path, logger):
    out = tmp_path / "out"
    extra = ["logger=wandb", "logger.mode=offline"] if logger == "wandb" else ["logger=none"]
    res = subprocess.run(
        [sys.executable, "-m", "harness.cli", "run", *tiny_overrides(shared_cache, out), *extra],
        cwd=ROOT,
        env=child_env(
            {
                **SECRETS,
                "WANDB_MODE": "offline",
                "WANDB_DIR": str(out),
                "WANDB_CACHE_DIR": str(out / "wc"),
                "WANDB_CONFIG_DIR": str(out / "wcfg"),
            }
        ),
        capture_output=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr.decode(errors="replace")[-3000:]
    files = [p for root in (out, shared_cache) for p in root.rglob("*") if p.is_file()]
    assert any(p.name == "record.json" for p in files)
    if logger == "wandb":
        assert any("wandb" in p.parts for p in files), "W&B offline wrote nothing under out_root"
    blobs = [(str(p), p.read_bytes()) for p in files] + [
        ("stdout", res.stdout),
        ("stderr", res.stderr),
    ]
    for secret in set(SECRETS.values()):
        leaks = [name for name, data in blobs if secret.encode() in data]
        assert not leaks, f"{secret} found in {leaks}"
