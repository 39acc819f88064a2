"""W&B mirror: offline by default without an API key, one W&B run per harness run, and
every promised metric in the offline run file (read back, not mocked)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest
import torch

from common.errors import ConfigError
from harness.config import run_spec
from harness.runner import execute
from harness.tracking import WandbTracker, make_tracker
from tests.conftest import compose, tiny_overrides
from tests.wandb_offline import read_offline_run


@pytest.fixture
def no_key(monkeypatch, tmp_path):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb-home"))


@pytest.mark.slow
def test_offline_run_holds_every_metric(no_key, shared_cache, tmp_path):
    out = tmp_path / "out"
    ov = tiny_overrides(shared_cache, out, tasks=True) + ["logger=wandb", "sweep_name=wbtest"]
    cfg = compose(ov)
    tracker = make_tracker(dict(cfg.logger), out)
    assert isinstance(tracker, WandbTracker) and tracker.mode == "offline"
    outcome = execute(run_spec(cfg), out, tracker)
    run_dirs = list((out / "wandb").glob("offline-run-*"))
    assert len(run_dirs) == 1
    logged = read_offline_run(run_dirs[0])
    assert logged["run"]["id"] == outcome.run_id and logged["run"]["group"] == "wbtest"
    cfg_keys = logged["config"]
    assert cfg_keys["size"] == "cpu-50k" and cfg_keys["mix"] == "toy" and cfg_keys["seed"] == 0
    assert cfg_keys["val_sets"] == ["toy", "toy_shifted", "code"]
    keys = set().union(*(h.keys() for h in logged["history"]))
    for key in (
        "train/loss",
        "train/lr",
        "train/tokens_per_second",
        "val/toy",
        "val/code",
        "task/toy_recall/acc",
        "task/toy_recall/acc_stderr",
        "task/toy_recall/bpb",
    ):
        assert key in keys, key
    summary = logged["summary"]
    for key in (
        "final/val/toy",
        "final/task/toy_arith/acc",
        "n_params",
        "compute/flops",
        "compute/tokens_per_second",
    ):
        assert key in summary, key
    assert summary["status"] == "complete"


@pytest.mark.slow
def test_unreachable_server_with_a_key_falls_back_offline(monkeypatch, shared_cache, tmp_path):
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    monkeypatch.setenv(
        "WANDB_BASE_URL", "http://127.0.0.1:9"
    )  # nothing listens on the discard port
    out = tmp_path / "out"
    cfg = compose(tiny_overrides(shared_cache, out) + ["logger=wandb"])
    tracker = make_tracker(dict(cfg.logger), out)
    assert tracker.mode == "online"
    outcome = execute(run_spec(cfg), out, tracker)
    assert outcome.status == "complete"
    assert list((out / "wandb").glob("offline-run-*"))


@pytest.mark.slow
def test_logger_none_writes_nothing(shared_cache, tmp_path):
    out = tmp_path / "out"
    execute(
        run_spec(compose(tiny_overrides(shared_cache, out))),
        out,
        make_tracker({"kind": "none"}, out),
    )
    assert not (out / "wandb").exists()


def test_unknown_logger():
    with pytest.raises(ConfigError, match="logger.kind: unknown logger 'tensorboard'"):
        make_tracker({"kind": "tensorboard"}, None)


@pytest.mark.slow
def test_empty_wandb_mode_env_still_logs_offline(no_key, monkeypatch, shared_cache, tmp_path):
    monkeypatch.setenv("WANDB_MODE", "")  # `export WANDB_MODE=` in a job script
    out = tmp_path / "out"
    cfg = compose(tiny_overrides(shared_cache, out) + ["logger=wandb"])
    execute(run_spec(cfg), out, make_tracker(dict(cfg.logger), out))
    assert list((out / "wandb").glob("offline-run-*/run-*.wandb"))


def test_offline_run_says_where_and_how_to_sync_once(no_key, tmp_path, capsys):
    from common.record import DataInfo, ModelInfo, RunRecord

    spec = run_spec(compose(["model=cpu-50k"]))
    rec = RunRecord(
        run_id="hint",
        sweep="t",
        status="running",
        config={},
        model=ModelInfo(size="cpu-50k", n_params=1),
        data=DataInfo(mix="toy"),
    )
    for rid in ("hint1", "hint2"):
        tracker = WandbTracker("p", mode="offline", directory=str(tmp_path))
        tracker.start(rid, spec, rec)
        tracker.finish(rec)
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("W&B offline")]
    assert len(lines) == 1  # once, not per run
    assert f"wandb sync {tmp_path / 'wandb'}/offline-run-*" in lines[0]
    assert list((tmp_path / "wandb").glob("offline-run-*hint1"))


@pytest.mark.slow
def test_a_run_that_raises_finishes_its_wandb_run(no_key, monkeypatch, shared_cache, tmp_path):
    """Out of memory (or any exception the runner does not turn into a reason itself) goes
    through _record_stop; the W&B run ends there too, its summary saying `failed`."""
    import harness.runner as runner

    def out_of_memory(*args, **kwargs):
        raise getattr(torch, "OutOfMemoryError", RuntimeError)("CUDA out of memory (simulated)")

    monkeypatch.setattr(runner, "_train", out_of_memory)
    out = tmp_path / "out"
    cfg = compose(tiny_overrides(shared_cache, out) + ["logger=wandb"])
    with pytest.raises(RuntimeError, match="out of memory"):
        execute(run_spec(cfg), out, make_tracker(dict(cfg.logger), out))
    (run_dir,) = (out / "wandb").glob("offline-run-*")
    assert read_offline_run(run_dir)["summary"].get("status") == "failed"


@pytest.mark.slow
def test_ctrl_c_finishes_the_wandb_run(shared_cache, tmp_path):
    """A real SIGINT to `harness run logger=wandb`: the record says interrupted, and so does the
    W&B run's summary (it used to be left unfinished)."""
    from tests.fault_injection import child_env, harness_cmd, with_default_sigint

    out = tmp_path / "out"
    over = tiny_overrides(shared_cache, out) + ["logger=wandb", "train.tokens=400000"]
    env = child_env({"NETRC": str(tmp_path / "no-netrc"), "WANDB_DIR": str(tmp_path / "wh")})
    env.pop("WANDB_API_KEY", None)
    proc = subprocess.Popen(
        with_default_sigint(harness_cmd(over)),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    try:
        for _ in range(1200):  # until training has logged a step
            logs = list(out.glob("runs/*/train_log.jsonl"))
            if (logs and logs[0].read_text().count("\n") >= 2) or proc.poll() is not None:
                break
            time.sleep(0.25)
        assert proc.poll() is None, proc.communicate()[0]
        os.kill(proc.pid, signal.SIGINT)
        output, _ = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    record = json.loads(next(out.glob("runs/*/record.json")).read_text())
    assert record["status"] == "interrupted", output
    (run_dir,) = (out / "wandb").glob("offline-run-*")
    assert read_offline_run(run_dir)["summary"].get("status") == "interrupted", output


@pytest.mark.slow
def test_analyze_with_wandb_logs_the_analysis_as_an_artifact(
    no_key, monkeypatch, tmp_path, run_cli
):
    """`harness analyze root=... logger=wandb`, offline: the offline run holds one `analysis`
    artifact whose manifest lists the report, every figure and every table written."""
    from tests.fixtures.analysis_make import sweep_records, write_records

    monkeypatch.setenv("WANDB_DATA_DIR", str(tmp_path / "wandb-data"))  # artifact staging
    write_records(tmp_path / "sweep", sweep_records())
    out = tmp_path / "out"
    code, _, err = run_cli(
        "analyze",
        f"root={tmp_path / 'sweep'}",
        f"out={out}",
        "analysis.bootstrap.n_resamples=40",
        "analysis.bootstrap.loss_law_resamples=10",
        "analysis.plot.max_flip_figures=2",
        "logger=wandb",
    )
    assert code == 0, err[-2000:]
    (run_dir,) = (out / "wandb").glob("offline-run-*")
    logged = read_offline_run(run_dir)
    (artifact,) = logged["artifacts"]
    assert artifact["type"] == "analysis" and artifact["name"] == "analysis-demo"
    written = {
        str(p.relative_to(out)): p.stat().st_size
        for part in ("report.md", "analysis_config.json", "figures", "tables")
        for p in ([out / part] if (out / part).is_file() else sorted((out / part).rglob("*")))
        if p.is_file()
    }
    assert "report.md" in written and any(k.startswith("figures/") for k in written)
    assert "tables/runs.parquet" in written and "tables/trends.csv" in written
    assert artifact["files"] == written
