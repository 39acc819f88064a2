"""One way from a config to a RunSpec (issue 22.1) and the checks it brings to every way in
(issue 25.3, 25.8): `harness run`, `harness run --from <config.yaml>` and backfill build a
spec through `harness.config.spec_from_dict`, so bad values, names and paths are refused in one
line before any run folder or record exists."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from harness.cli_checks import group_options
from harness.config import build_dataclass, run_spec, spec_from_dict, to_dict
from harness.identity import run_id
from tests.conftest import compose, tiny_overrides
from train.specs import TrainSpec

# what conf/train/gpu.yaml sets differently from the CPU defaults, on purpose
GPU_DIFFERENCES = {
    "batch_size",
    "seq_len",
    "lr",
    "precision",
    "compile",
    "log_every",
    "checkpoint_every",
    "spike_factor",
    "loss_chunk",
}


def test_train_spec_defaults_agree_with_conf_train():
    """TrainSpec's defaults are conf/train/cpu.yaml (the default preset); every other preset
    names every key, and differs from the defaults only where it means to."""
    defaults = dataclasses.asdict(TrainSpec())
    for name in group_options("train"):
        composed = dict(compose([f"train={name}"]).train)
        assert set(composed) == set(defaults), name
        build_dataclass(TrainSpec, composed, "train")
        # the budget has no default in the spec: a caller sets tokens or tokens_per_param
        differs = {k for k in defaults if composed[k] != defaults[k]} - {"tokens_per_param"}
        if name == "cpu":
            assert not differs, {k: (composed[k], defaults[k]) for k in differs}
        else:
            assert differs <= GPU_DIFFERENCES, differs - GPU_DIFFERENCES


def test_spec_from_dict_round_trips_and_keeps_the_run_id(tmp_path):
    spec = run_spec(compose(tiny_overrides(tmp_path / "c", tmp_path / "o", tasks=True)))
    again = spec_from_dict(yaml.safe_load(yaml.safe_dump(to_dict(spec))))
    assert again == spec and run_id(again) == run_id(spec)


def _saved_config(tmp_path: Path, **edits) -> Path:
    """A run's config.yaml (as the runner writes it), with `edits` applied to `full:`
    (`train__lr=x` sets full.train.lr)."""
    spec = run_spec(compose(tiny_overrides(tmp_path / "cache", tmp_path / "o")))
    full = to_dict(spec)
    for key, value in edits.items():
        node = full
        *parents, leaf = key.split("__")
        for p in parents:
            node = node[p]
        node[leaf] = value
    folder = tmp_path / "received"
    folder.mkdir(exist_ok=True)
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump({"semantic": {}, "full": full}, sort_keys=False))
    return path


@pytest.mark.parametrize(
    "edits, message",
    [
        ({"train__grad_clip": -1}, "train.grad_clip: must be a finite number in (0, inf)"),
        ({"train__min_lr_ratio": -3}, "train.min_lr_ratio: must be a finite number in [0, 1]"),
        ({"train__lr": -0.004}, "train.lr: must be a positive number, got -0.004"),
        ({"mix__weights": {"toyworld": -0.5, "stdlib_code": 1.5}}, "mix.weights.toyworld:"),
        ({"mix__weights": {"toyworld": 0.5, "elsewhere": 0.5}}, "mix.weights.elsewhere:"),
        ({"sweep": "../../../../elsewhere"}, "sweep: '../../../../elsewhere' is not a valid"),
        ({"train__compile_mode": "fastest"}, "train.compile_mode: unknown mode 'fastest'"),
        ({"train__parallel": "zero"}, "train.parallel: unknown mode 'zero'"),
        ({"sources__toyworld__kind": "web"}, "sources.toyworld.kind: unknown source kind"),
        ({"eval__limit": 0}, "eval.limit: must be an integer in [1, inf]"),
    ],
)
def test_run_from_is_checked_like_run(run_cli, tmp_path, monkeypatch, edits, message):
    """A config.yaml edited by hand or received from someone else: one line, exit 2, and
    nothing written (no run folder, no record, nothing outside outputs/)."""
    path = _saved_config(tmp_path, **edits)
    work = tmp_path / "a" / "b" / "c" / "d"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    before = sorted(p for p in tmp_path.rglob("*") if "cache" not in p.parts)
    code, out, err = run_cli("run", "--from", str(path))
    assert code == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], err
    after = sorted(p for p in tmp_path.rglob("*") if "cache" not in p.parts)
    assert after == before


def test_run_bad_compile_mode_or_parallel_leaves_no_record(run_cli, tmp_path):
    for bad in ("train.compile_mode=fastest", "train.parallel=zero"):
        ov = tiny_overrides(tmp_path / "cache", tmp_path / "o")
        code, _, err = run_cli("run", *ov, bad)
        assert code == 2 and err.count("\n") == 1 and bad.split("=")[0] in err, err
        assert not (tmp_path / "o" / "runs").exists() or not any(
            (tmp_path / "o" / "runs").iterdir()
        )


def test_interpolated_sweep_name_checked_before_hydra_writes(tmp_path, run_cli, monkeypatch):
    """sweep_name='${oc.env:X}' with X=../../evilx: refused before Hydra writes its log folder
    (outputs/../../evilx/hydra/.../cli.log) outside outputs/."""
    work = tmp_path / "a" / "b"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    monkeypatch.setenv("X", "../../evilx")
    ov = [o for o in tiny_overrides(tmp_path / "cache", tmp_path) if not o.startswith("out_root")]
    code, _, err = run_cli("run", "sweep_name=${oc.env:X}", *ov)
    assert code == 2, err
    assert err.count("\n") == 1 and "sweep_name: '../../evilx'" in err, err
    assert not (tmp_path / "evilx").exists()
    assert not (work / "outputs").exists()


def test_resolved_path_check_composes_beside_a_cluster_preset(tmp_path):
    """`+cluster=<preset>` is `@package hydra.launcher`: the path check leaves it out with the
    launcher it configures, instead of failing the whole command on a ConfigKeyError."""
    from harness.cli_checks import check_resolved_paths

    check_resolved_paths(
        "config",
        ["hydra/launcher=slurm", "+cluster=local", f"out_root={tmp_path}", "sweep_name=s1"],
    )
    with pytest.raises(SystemExit) as exc:
        check_resolved_paths("config", ["+cluster=local", "sweep_name=../up"])
    assert exc.value.code == 2
