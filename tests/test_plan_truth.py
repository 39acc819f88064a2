"""`harness plan` tells the truth (issue 24): it rejects what `run` rejects with the same line,
shows each run's mix weights, tokens available and epochs per source, warns above 4 epochs,
estimates FLOPs and GPU-hours at a stated throughput, prints sbatch lines without loading
remote datasets, and the README's SLURM examples plan as printed."""

from __future__ import annotations

import re

import pytest

from harness.config import run_spec
from harness.data_budget import REPEAT_WARN_EPOCHS
from harness.data_prep import prepare_data
from harness.plan import ASSUMED_MFU, ASSUMED_PEAK_FLOPS
from tests.conftest import ROOT, compose, tiny_overrides

BAD_INPUTS = [
    pytest.param(["eval.tasks=[toy_fact]"], "eval.tasks: unknown task 'toy_fact'", id="task"),
    pytest.param(
        ["eval.tasks=[toy_facts@letter]"], "eval.tasks: unknown task 'toy_facts@letter'", id="var"
    ),
    pytest.param(
        ["eval.tasks=[toy_facts]", "eval.include_paths=[/nonexistent/tasks]"],
        "eval.include_paths: '/nonexistent/tasks' is not a directory",
        id="include_path",
    ),
    pytest.param(["train.seq_len=1024"], "train.seq_len: 1024 exceeds the context", id="shape"),
    pytest.param(["logger.kind=wandbb"], "logger.kind: unknown logger 'wandbb'", id="logger"),
    pytest.param(
        ["eval=core", "eval.tasks=[hellaswagg]"],
        "eval.tasks: unknown task 'hellaswagg'",
        id="lm_eval_task",
        marks=pytest.mark.slow,  # indexes every task lm-eval ships
    ),
]


@pytest.mark.parametrize("extra, message", BAD_INPUTS)
def test_plan_rejects_what_run_rejects_with_the_same_line(
    run_cli, shared_cache, tmp_path, extra, message
):
    lines = {}
    for cmd in ("plan", "run"):
        out = tmp_path / cmd
        code, _, err = run_cli(cmd, *tiny_overrides(shared_cache, out, tasks=True), *extra)
        assert code == 2, (cmd, err)
        lines[cmd] = err.strip().splitlines()[-1]
        assert not list(out.glob("runs/*/record.json"))  # rejected before any record
    assert lines["plan"] == lines["run"]
    assert lines["plan"].startswith(f"error: {message}")


def _plan(run_cli, *args: str) -> str:
    code, out, err = run_cli("plan", *args)
    assert code == 0, err
    return out


def test_plan_shows_weights_tokens_available_epochs_and_gpu_hours(run_cli, shared_cache, tmp_path):
    ov = [*tiny_overrides(shared_cache, tmp_path), "data=toy_code", "train.tokens=20000"]
    out = _plan(run_cli, *ov)
    spec = run_spec(compose(ov))
    available = {n: c.n_tokens for n, c in prepare_data(spec).train_caches.items()}
    row = out.splitlines()[1].split()
    rid, params, tokens = row[0], int(row[4].replace(",", "")), int(row[6].replace(",", ""))
    flops = 6 * params * tokens  # the project's convention (train.model.training_flops)
    assert row[7] == f"{flops:.2e}"
    assert row[8] == f"{flops / (ASSUMED_MFU * ASSUMED_PEAK_FLOPS) / 3600:.3g}"
    line = next(ln for ln in out.splitlines() if ln.startswith(f"  {rid}  toy_code:"))
    for name, w in spec.mix.weights.items():
        m = re.search(rf"{name} ([\d.]+) x ([\d,]+) / ([\d,]+) = ([\d.,]+) epochs", line)
        assert m, line
        assert float(m[1]) == pytest.approx(w, abs=0.005)
        assert int(m[2].replace(",", "")) == tokens
        assert int(m[3].replace(",", "")) == available[name]
        assert float(m[4]) == pytest.approx(w * tokens / available[name], abs=0.01)
    assert "warning" not in out
    assert "GPU-hours at an assumed 35% MFU of 989 TFLOP/s" in out


def test_repetition_warning_above_the_threshold(run_cli, shared_cache, tmp_path):
    ov = tiny_overrides(shared_cache, tmp_path)
    available = prepare_data(run_spec(compose(ov))).train_caches["toyworld"].n_tokens
    below = int(available * REPEAT_WARN_EPOCHS * 0.9)
    above = int(available * REPEAT_WARN_EPOCHS * 1.2)
    assert "warning" not in _plan(run_cli, *ov, f"train.tokens={below}")
    warned = [
        ln for ln in _plan(run_cli, *ov, f"train.tokens={above}").splitlines() if "warning" in ln
    ]
    assert len(warned) == 1 and "repeats source 'toyworld' 4." in warned[0]


def test_record_stores_tokens_available_and_epochs(run_cli, shared_cache, tmp_path):
    from harness.runner import execute
    from harness.store import read_record

    ov = tiny_overrides(shared_cache, tmp_path)
    spec = run_spec(compose(ov))
    rec = read_record(execute(spec, tmp_path).path)  # read back through the schema checks
    available = prepare_data(spec).train_caches["toyworld"].n_tokens
    assert rec.data.available_tokens == {"toyworld": available}
    assert rec.data.epochs["toyworld"] == pytest.approx(rec.data.train_tokens / available)
    out = _plan(run_cli, *ov)  # the complete run's plan quotes the same figures
    assert f"/ {available:,} = {rec.data.epochs['toyworld']:.2f} epochs" in out


def test_slurm_plan_counts_only_the_pending_runs(run_cli, shared_cache, tmp_path, monkeypatch):
    from harness.runner import execute

    ov = [*tiny_overrides(shared_cache, tmp_path), "train.tokens=8192"]
    execute(run_spec(compose([*ov, "seed=0"])), tmp_path)
    monkeypatch.setenv("PATH", "/nonexistent")  # no sbatch: plan needs no cluster
    slurm = ["hydra/launcher=slurm", "+cluster=local"]
    out = _plan(run_cli, "-m", *slurm, *ov, "seed=0,1,2")
    assert "2 to train, 1 to skip" in out
    assert "one array job of 2 task(s)" in out and "#SBATCH --array=0-1%64" in out
    out = _plan(run_cli, "-m", *slurm, *ov, "seed=0")
    assert "SLURM: nothing to submit (every run is complete)" in out


def test_cluster_preset_without_the_slurm_launcher_is_one_line(run_cli, tmp_path):
    for cmd in ("plan", "run"):
        code, _, err = run_cli(cmd, "+cluster=example_gpu", f"out_root={tmp_path}")
        assert code == 2
        assert err.strip().splitlines() == [
            "error: cluster: the preset 'example_gpu' configures the SLURM launcher; add "
            "hydra/launcher=slurm (harness run -m hydra/launcher=slurm +cluster=example_gpu ...)"
        ]


def test_no_wait_only_with_a_slurm_sweep(run_cli, tmp_path):
    code, _, err = run_cli("run", "--no-wait", f"out_root={tmp_path}")
    assert code == 2 and err.strip().startswith("error: --no-wait: only with a SLURM sweep")


def readme_slurm_commands() -> list[str]:
    """The `harness run` lines of the README's "Running on a SLURM cluster" examples, with
    their continuation lines joined."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## Running on a SLURM cluster", 1)[1].split("\n## ", 1)[0]
    block = section.split("```bash", 1)[1].split("```", 1)[0]
    commands = []
    for line in block.replace("\\\n", " ").splitlines():
        line = line.split("#", 1)[0].strip()
        if line.startswith("harness run"):
            commands.append(line)
    return commands


def test_readme_lists_slurm_examples():
    commands = readme_slurm_commands()
    assert len(commands) >= 3 and all("hydra/launcher=slurm" in c for c in commands)


@pytest.mark.slow
@pytest.mark.parametrize("command", readme_slurm_commands())
def test_readme_slurm_example_plans_as_printed(run_cli, tmp_path, monkeypatch, command):
    monkeypatch.chdir(tmp_path)  # its outputs/ and .cache/ land here, not in the checkout
    monkeypatch.setenv("PATH", "/nonexistent")  # no sbatch: plan needs no cluster
    args = command.split()[2:]
    out = _plan(run_cli, *args)
    assert "#SBATCH --array=0-" in out
    if "sweep=gpu_ladder" in args:  # remote corpora: never loaded, said so
        assert "unknown (remote, not loaded)" in out


def test_plan_takes_the_multirun_flag_anywhere(run_cli, shared_cache, tmp_path):
    """`harness plan a=1 -m` plans the same sweep as `harness plan -m a=1` (Hydra's parser
    wants its flags before the overrides; plan used to end in argparse's usage)."""
    ov = [*tiny_overrides(shared_cache, tmp_path), "model=cpu-40k,cpu-50k"]
    first = _plan(run_cli, "-m", *ov)
    last = _plan(run_cli, *ov, "-m")
    assert first == last
    assert "2 to train" in first
