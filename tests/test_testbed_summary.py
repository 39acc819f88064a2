"""Several testbeds in one `harness analyze`: per-testbed settings, summary, CLI parsing."""

from __future__ import annotations

import pandas as pd
import pytest

from analysis.config import AnalysisConfig
from analysis.pipeline import analyze
from analysis.report.summary import _share, _unclassified, write_summary
from analysis.testbeds import settings_for
from analysis.testbeds.olmo_ladder.loader import read_raw as read_olmo
from analysis.testbeds.pythia.loader import read_raw as read_pythia
from harness.cli import cmd_analyze
from tests.fixtures.testbeds_make import write_olmo, write_pythia

FAST = {"bootstrap": {"n_resamples": 20, "loss_law_resamples": 0}}


def test_testbed_settings_fill_defaults_but_keep_explicit_values():
    cfg = settings_for("pythia", AnalysisConfig())
    assert cfg.reference_val_set == "compute" and "compute" in cfg.x_axes
    mine = AnalysisConfig.from_dict({"reference_val_set": "params"})
    assert settings_for("pythia", mine).reference_val_set == "params"
    assert settings_for("gadre2024", AnalysisConfig()) == AnalysisConfig()


def test_summary_answers_how_often_and_what_breaks(tmp_path):
    tables = {
        "olmo_ladder": read_olmo(write_olmo(tmp_path / "o")),
        "pythia": read_pythia(write_pythia(tmp_path / "p")),
    }
    out = tmp_path / "out"
    summaries = {}
    for name, t in tables.items():
        cfg = settings_for(name, AnalysisConfig.from_dict(FAST))
        summaries[name] = analyze(t, out / name, cfg)
    path = write_summary(out, summaries)
    text = path.read_text()
    assert text.startswith("# How often does a downstream scaling law hold, and what breaks it?")
    first_screen = text.split("\n## ")[0]
    for name in tables:
        assert f"| {name} |" in first_screen
    head = pd.read_csv(out / "summary" / "predictable.csv")
    assert {"x-axis", "setup", "points"} <= set(head["breakdown"])
    # Pythia's x-axis is compute (no validation loss); zero- and five-shot are split out
    py = head[head["testbed"] == "pythia"]
    assert py.loc[py["breakdown"] == "x-axis", "value"].isin(["compute", "params"]).all()
    assert set(py.loc[py["breakdown"] == "setup", "value"]) == {"default", "5shot"}
    counts = pd.read_csv(out / "summary" / "flip_counts.csv")
    assert {"testbed", "setting", "n_tests", "n_flipped", "share", "null_split_rate"} <= set(
        counts.columns
    )
    assert (counts["n_flipped"] <= counts["n_tasks"]).all()


@pytest.mark.parametrize(
    ("categories", "share"),
    [
        ([], None),
        (["insufficient", "insufficient"], None),
        (["not_a_scale"], None),  # read 0% before: only `insufficient` counted as unclassified
        (["not_a_scale", "insufficient"], None),
        (["predictable", "insufficient"], 0.5),
        (["predictable", "noisy", "not_a_scale"], 1 / 3),
    ],
)
def test_share_is_na_when_no_task_was_classified(categories, share):
    got = _share(pd.Series(categories, dtype=object))
    assert (share is None and pd.isna(got)) or got == pytest.approx(share)
    trends = pd.DataFrame({"val_set": "v", "corpus": "c", "category": categories}, dtype=object)
    assert _unclassified(trends, "v", "c") == (bool(categories) and share is None)


def test_cli_splits_sources_and_names_an_unknown_one(capsys):
    with pytest.raises(SystemExit) as exc:
        cmd_analyze(["source=pythia,nosuch", "out=/tmp/never"])
    assert exc.value.code == 2
    assert "unknown source 'nosuch'" in capsys.readouterr().err


def test_cli_rejects_one_path_for_several_sources(capsys):
    with pytest.raises(SystemExit):
        cmd_analyze(["source=pythia,olmo_ladder", "path=/tmp", "out=/tmp/never"])
    assert "path: one folder cannot override 2 sources" in capsys.readouterr().err
