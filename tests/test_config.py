"""Config -> dataclasses, run identity, and the one-line errors for bad input."""

from __future__ import annotations

import dataclasses

import pytest

from common.errors import ConfigError
from harness.config import run_spec
from harness.identity import run_id
from tests.conftest import compose, tiny_overrides


def spec_for(extra: list[str], tmp_path):
    return run_spec(compose(tiny_overrides(tmp_path / "c", tmp_path / "o") + extra))


def test_default_config_composes(tmp_path):
    spec = run_spec(compose([]))
    assert spec.model.name == "cpu-200k"
    assert {v.name for v in spec.validation} == {"toy", "toy_shifted", "code"}
    assert abs(sum(spec.mix.weights.values()) - 1) < 1e-9


@pytest.mark.parametrize("sweep", ["demo", "demo_large", "gpu_ladder"])
def test_sweep_presets_compose(sweep):
    cfg = compose([f"sweep={sweep}"], hydra_node=True)
    assert cfg.sweep_name == sweep
    params = cfg.hydra.sweeper.params
    for model in params.model.split(","):
        for data in params.data.split(","):
            spec = run_spec(compose([f"sweep={sweep}", f"model={model}", f"data={data}"]))
            assert spec.sweep == sweep and spec.model.name == model


def test_every_model_in_ladder_builds_a_spec():
    from harness.cli_checks import group_options

    for name in group_options("model"):
        spec = run_spec(compose([f"model={name}", "train.seq_len=128"]))
        assert spec.model.name == name


def test_run_id_changes_only_with_semantic_fields(tmp_path):
    base = spec_for([], tmp_path)
    same = [
        ["train.device=cpu"],
        ["train.num_threads=1"],
        ["train.log_every=5"],
        ["out_root=/elsewhere"],
        ["cache_dir=/elsewhere"],
        ["logger=wandb"],
        ["eval.tasks=[toy_arith]"],
        ["train.parallel=fsdp"],
        ["eval.log_samples=true"],  # keeps what is scored, changes nothing scored
    ]
    for extra in same:
        assert run_id(spec_for(extra, tmp_path)) == run_id(base), extra
    different = [
        ["seed=1"],
        ["model=cpu-100k"],
        ["data=toy_code"],
        ["train.lr=0.001"],
        ["train.tokens=20000"],
        ["eval.num_checkpoints=3"],
        ["validation.max_tokens=4096"],
        ["tokenizer.vocab_size=600"],
    ]
    ids = {run_id(spec_for(extra, tmp_path)) for extra in different}
    assert run_id(base) not in ids and len(ids) == len(different)


@pytest.mark.parametrize(
    "override, message",
    [
        (
            ["data.weights.toyworld=-1"],
            "data.weights.toyworld: weight must be a finite number >= 0, got -1.0",
        ),
        (["data.weights.toyworld=0"], "data.weights: all weights are zero"),
        (["+data.weights.nosuch=1"], "data.weights.nosuch: unknown source 'nosuch'"),
        (
            ["train.seq_len=999"],
            "train.seq_len: 999 exceeds the context of model 'cpu-50k' (max_seq_len 256)",
        ),
        (["train.tokens=null"], "train.tokens / train.tokens_per_param: set exactly one"),
        (["train.schedule=linear"], "train.schedule: unknown schedule 'linear'"),
        (["train.device=tpu"], "train.device: unknown device 'tpu'"),
        (["train.parallel=zero"], "train.parallel: unknown mode 'zero' (known: ddp, fsdp, auto)"),
        # checked with the other train.* values, before a record (it used to be the loop's)
        (["train.compile_mode=fastest"], "train.compile_mode: unknown mode 'fastest'"),
        (["+train.lrr=1"], "train.lrr: unknown key"),
        (["train.batch_size=0"], "train.batch_size: must be a positive number, got 0"),
        (
            ["validation.sets.toy.source=nosuch"],
            "validation.sets.toy.source: unknown source 'nosuch'",
        ),
        (["validation.sets.toy.split=test"], "validation.sets.toy.split: unknown split 'test'"),
        (["sources.toyworld.kind=web"], "sources.toyworld.kind: unknown source kind 'web'"),
        (["model.n_heads=5"], "model.n_heads: 5 does not divide d_model 24"),
        (["seed=abc"], "seed: must be an integer, got 'abc'"),
        (["eval.log_samples=maybe"], "eval.log_samples: must be true or false, got 'maybe'"),
        (["eval.log_samples=1"], "eval.log_samples: must be true or false, got 1"),
    ],
)
def test_bad_config_one_line_error(override, message, tmp_path):
    with pytest.raises(ConfigError) as err:
        spec = spec_for(override, tmp_path)
        from train.model import llama_config

        llama_config(spec.model, 512)
    text = str(err.value)
    assert message in text and "\n" not in text


@pytest.mark.parametrize(
    "args, message",
    [
        (["model=cpu-huge"], "model: unknown model 'cpu-huge' (known: cpu-1.5m"),
        (["-m", "model=cpu-50k,cpu-nope"], "model: unknown model 'cpu-nope'"),
        (["data=web"], "data: unknown data 'web'"),
        (["validation=paloma"], "validation: unknown validation 'paloma'"),
        (["eval=nosuite"], "eval: unknown eval 'nosuite'"),
        (["train.seq_len=999", "model=cpu-50k"], "train.seq_len: 999 exceeds the context"),
    ],
)
def test_cli_bad_input_exits_nonzero(run_cli, args, message, tmp_path):
    code, out, err = run_cli("run", *args, f"out_root={tmp_path}", f"cache_dir={tmp_path / 'c'}")
    assert code == 2
    assert message in err
    assert not list(tmp_path.glob("runs/*/record.json"))


def test_unknown_command(run_cli):
    code, _, err = run_cli("trian")
    assert code == 2 and "unknown command 'trian'" in err


def test_specs_are_frozen(tmp_path):
    spec = spec_for([], tmp_path)
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.model.d_model = 3  # type: ignore[misc]
