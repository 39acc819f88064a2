"""Shared fixtures: the real conf/ composed and shrunk to seconds-long runs, offline."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("HARNESS_NO_PROGRESS", "1")

ROOT = Path(__file__).resolve().parent.parent


def tiny_overrides(cache: Path, out: Path, tasks: bool = False) -> list[str]:
    """A run that takes seconds: small world, few tokens, two checkpoints."""
    ov = [
        f"cache_dir={cache}",
        f"out_root={out}",
        "model=cpu-50k",
        "sources.toyworld.n_entities=120",
        "sources.toyworld.docs.train=400",
        "sources.toyworld.docs.val=40",
        "sources.toyworld.docs.shifted=40",
        "tokenizer.vocab_size=512",
        "tokenizer.train_docs=300",
        "train.tokens=16384",
        "train.tokens_per_param=null",
        "train.batch_size=8",
        "train.seq_len=64",
        "train.log_every=2",
        "validation.max_tokens=2048",
        "eval.num_checkpoints=2",
    ]
    if tasks:
        ov += [
            "eval=toy",
            "eval.n_per_task=24",
            "eval.tasks=[toy_recall,toy_recall@letters,toy_arith]",
        ]
    else:
        ov += ["eval=none"]
    return ov


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory) -> Path:
    """One cache for the session: the tokenizer and token caches are built once."""
    return tmp_path_factory.mktemp("cache")


def compose(overrides: list[str], config_name: str = "config", hydra_node: bool = False):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return hydra_compose(
            config_name=config_name, overrides=overrides, return_hydra_config=hydra_node
        )


@pytest.fixture
def run_cli(capsys):
    """Call `harness` in-process; returns (exit_code, stdout, stderr)."""
    from harness.cli import main

    def call(*args: str) -> tuple[int, str, str]:
        code = 0
        try:
            main(list(args))
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        out, err = capsys.readouterr()
        return code, out, err

    return call
