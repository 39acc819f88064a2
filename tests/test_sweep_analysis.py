"""Analysis choices travel with the sweep (issue 24, item 5): a preset's `analysis:` block is
stored beside the runs and is `harness analyze root=`'s default, the command line still
wins, the report's first screen names the choices its headline rests on, and a report made
with other settings is never silently replaced."""

from __future__ import annotations

import json

import pytest

from analysis.errors import AnalysisError
from analysis.output.folder import check_settings
from common.errors import ConfigError
from harness.sweep_analysis import FILE, load, merged, store
from tests.fixtures.analysis_make import sweep_records, write_records

FAST = ["analysis.bootstrap.n_resamples=40", "analysis.bootstrap.loss_law_resamples=10"]


def test_stored_settings_are_the_default_and_the_command_line_wins():
    defaults = {"points": "final", "bootstrap": {"n_resamples": 1000, "seed": 0}}
    stored = {"points": "all", "bootstrap": {"seed": 7}}
    assert merged(defaults, stored, []) == {
        "points": "all",
        "bootstrap": {"n_resamples": 1000, "seed": 7},
    }
    cli = {"points": "final", "bootstrap": {"n_resamples": 40, "seed": 0}}
    out = merged(cli, stored, ["analysis.points=final", "analysis.bootstrap.n_resamples=40"])
    assert out == {"points": "final", "bootstrap": {"n_resamples": 40, "seed": 7}}


def test_store_checks_then_writes_once(tmp_path):
    with pytest.raises(ConfigError, match="pointz"):
        store(tmp_path, "demo", {"pointz": "all"})
    assert not (tmp_path / FILE).exists()
    store(tmp_path, "demo", {"points": "all"})
    assert json.loads((tmp_path / FILE).read_text()) == {
        "sweep": "demo",
        "analysis": {"points": "all"},
    }
    assert load(tmp_path) == {"points": "all"}
    assert load(tmp_path / "nowhere") == {}
    store(tmp_path / "none", "demo", {})  # a preset without analysis settings stores nothing
    assert not (tmp_path / "none").exists()


def test_a_report_of_other_settings_is_refused_unless_overwrite(tmp_path):
    (tmp_path / "analysis_config.json").write_text(json.dumps({"points": "all", "x": {"a": 1}}))
    check_settings(tmp_path, {"points": "all", "x": {"a": 1}, "new_key": 2})  # same: fine
    with pytest.raises(AnalysisError, match=r"points: all -> final.*overwrite=true"):
        check_settings(tmp_path, {"points": "final", "x": {"a": 1}})
    check_settings(tmp_path, {"points": "final"}, overwrite=True)
    check_settings(tmp_path / "empty", {"points": "final"})  # no report yet


def test_analyze_root_uses_the_sweeps_settings_and_never_overwrites_silently(
    tmp_path, run_cli, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    sweep = tmp_path / "sweep"
    write_records(sweep, sweep_records(n_ckpt=3))
    store(sweep, "demo", {"points": "all"})
    code, _, err = run_cli("analyze", f"root={sweep}", *FAST)
    assert code == 0, err[-2000:]
    assert json.loads((sweep / "analysis_config.json").read_text())["points"] == "all"
    head = (sweep / "report.md").read_text().split("## Findings")[0]
    assert "rests on every checkpoint (with final checkpoints only: " in head
    assert "validation loss as the x-axis (against compute: " in head
    before = (sweep / "report.md").read_bytes()
    code, _, err = run_cli("analyze", f"root={sweep}", "analysis.points=final", *FAST)
    assert code == 2
    assert err.strip().splitlines()[-1].startswith("error: out: ")
    assert "points: all -> final" in err and "overwrite=true" in err
    assert (sweep / "report.md").read_bytes() == before
    code, _, err = run_cli(
        "analyze", f"root={sweep}", "analysis.points=final", "overwrite=true", *FAST
    )
    assert code == 0, err[-2000:]
    assert json.loads((sweep / "analysis_config.json").read_text())["points"] == "final"


def test_run_refuses_a_bad_preset_analysis_key_before_any_run(tmp_path, run_cli, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(
        "run",
        "sweep=demo",
        f"out_root={tmp_path / 'o'}",
        f"cache_dir={tmp_path / 'c'}",
        "+analysis.pointz=all",
    )
    assert code == 2
    assert err.strip().splitlines()[-1].startswith("error: analysis.pointz: unknown key")
    assert not (tmp_path / "o" / "runs").exists() and not (tmp_path / "o" / FILE).exists()


@pytest.mark.slow
def test_a_run_stores_its_presets_analysis_settings(run_cli, tmp_path, shared_cache):
    from tests.conftest import tiny_overrides

    code, _, err = run_cli("run", *tiny_overrides(shared_cache, tmp_path), "+analysis.points=all")
    assert code == 0, err[-2000:]
    assert load(tmp_path) == {"points": "all"}
    assert json.loads((tmp_path / FILE).read_text())["sweep"] == "default"


def test_a_refused_report_is_refused_before_any_fitting(tmp_path, monkeypatch):
    """The settings check runs on the resolved settings before the first fit: a refusal
    costs seconds, not the whole analysis (gadre2024: ~50 s)."""
    from analysis import pipeline
    from analysis.config import AnalysisConfig
    from tests.fixtures.analysis_make import sweep_table

    out = tmp_path / "out"
    out.mkdir()
    (out / "analysis_config.json").write_text(json.dumps({"points": "all"}))

    def no_fitting(*args, **kwargs):
        raise AssertionError("fitting started before the settings check")

    monkeypatch.setattr(pipeline, "_core", no_fitting)
    table = sweep_table(n_ckpt=3)
    with pytest.raises(AnalysisError, match=r"points: all -> final"):
        pipeline.analyze(table, out, AnalysisConfig(points="final"), overwrite=False)
