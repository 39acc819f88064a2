"""The command-line surface (issue 14): --help per subcommand, unknown keys with a close
match and exit 2, Ctrl-C in one line, "nothing found" non-zero, `train.tokens=N` alone, the
plan view (with the SLURM preview off-cluster), the task list, overrides kept per run,
`run --from`, the backfill hint, and no ghost run directory after rejected input."""

from __future__ import annotations

import re

import pytest
import yaml

from harness import cli
from harness.cli_help import HELP
from tests.conftest import compose, tiny_overrides


@pytest.mark.parametrize("cmd", sorted(cli.COMMANDS))
def test_every_subcommand_has_help(run_cli, cmd):
    code, out, err = run_cli(cmd, "--help")
    assert code == 0 and err == ""
    assert out.startswith(f"harness {cmd}") and "Example" in out


def test_help_covers_every_command():
    assert set(HELP) == set(cli.COMMANDS)


@pytest.mark.parametrize(
    "cmd, arg, message",
    [
        ("run", "train.tokenz=5", "train.tokenz: unknown key (did you mean train.tokens?)"),
        ("status", "roots=x", "roots: unknown key (did you mean root?)"),
        (
            "analyze",
            "analysis.plot.dpii=200",
            "analysis.plot.dpii: unknown key (did you mean analysis.plot.dpi?)",
        ),
        ("plan", "modle=cpu-50k", "modle: unknown key (did you mean model?)"),
    ],
)
def test_unknown_key_one_line_with_suggestion(run_cli, cmd, arg, message):
    code, out, err = run_cli(cmd, arg)
    assert code == 2
    assert err.strip().splitlines() == [
        f"error: {message}; add a new key with +{arg.partition('=')[0]}=..."
    ]


def test_unknown_command_suggests(run_cli):
    code, _, err = run_cli("stauts")
    assert code == 2 and "did you mean status?" in err


def test_ctrl_c_is_one_line(run_cli, monkeypatch):
    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setitem(cli.COMMANDS, "status", interrupted)
    code, _, err = run_cli("status", "root=x")
    assert code == 130
    assert [ln for ln in err.splitlines() if ln] == [
        "interrupted: harness status stopped by Ctrl-C (relaunch the same command to resume)"
    ]


def test_status_nothing_found_is_an_error(run_cli, tmp_path):
    code, _, err = run_cli("status", f"root={tmp_path / 'missing'}")
    assert code == 2 and "root: no such directory" in err
    code, _, err = run_cli("status", f"root={tmp_path}")
    assert code == 2 and "root: no runs under" in err


def test_train_tokens_alone_replaces_the_multiplier():
    from harness.config import run_spec

    spec = run_spec(compose(["model=cpu-50k", "train.tokens=100000"]))
    assert spec.train.tokens == 100000 and spec.train.tokens_per_param is None
    # the same run as writing both out: the run id does not depend on how it was said
    from harness.identity import run_id

    both = run_spec(
        compose(["model=cpu-50k", "train.tokens=100000", "train.tokens_per_param=null"])
    )
    assert run_id(spec) == run_id(both)


def test_plan_rows_without_training(run_cli, tmp_path):
    code, out, err = run_cli(
        "plan", "-m", "model=cpu-50k,cpu-100k", "train.tokens=100000", f"out_root={tmp_path}"
    )
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split()[:6] == ["run_id", "size", "mix", "seed", "params", "non_emb"]
    rows = [ln.split() for ln in lines[1:3]]
    assert [r[1] for r in rows] == ["cpu-50k", "cpu-100k"]
    assert rows[0][4] == "63,096" and rows[0][-1] == "train"
    assert "2 to train" in out
    assert not (tmp_path / "runs").exists()  # nothing was created


def test_plan_previews_slurm_without_sbatch(run_cli, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch, no scontrol
    code, out, err = run_cli(
        "plan",
        "-m",
        "hydra/launcher=slurm",
        "+cluster=example_gpu",
        "model=cpu-50k,cpu-100k",
        f"out_root={tmp_path}",
    )
    assert code == 0, err
    assert "#SBATCH --partition=gpu" in out and "#SBATCH --array=0-1%32" in out
    assert "#SBATCH --time=480" in out and "#SBATCH --requeue" in out


def test_tasks_lists_variants_chance_and_size(run_cli):
    code, out, err = run_cli("tasks", "filter=toy_grammar")
    assert code == 0, err
    row = next(ln.split() for ln in out.splitlines() if ln.startswith("toy_grammar"))
    assert row[1:5] == ["@3shot", "@prefix", "0.5", "200"]
    code, _, err = run_cli("tasks", "filter=no_such_task")
    assert code == 1 and "no task matches" in err


def test_backfill_hint_names_the_command(tmp_path, capsys):
    from common.record import CheckpointEntry, DataInfo, ModelInfo, RunRecord
    from harness import backfill_hint
    from harness.config import run_spec
    from harness.identity import run_id
    from harness.store import run_dir, write_record

    spec = run_spec(compose(["model=cpu-50k", "eval=toy", "eval.tasks=[toy_recall,toy_arith]"]))
    path = run_dir(tmp_path, run_id(spec))
    path.mkdir(parents=True)
    rec = RunRecord(
        run_id=run_id(spec),
        sweep="t",
        status="running",
        config={},
        model=ModelInfo(size="cpu-50k", n_params=1),
        data=DataInfo(mix="toy"),
    )
    rec.put_checkpoint(CheckpointEntry(1, 1, 1.0, {"toy": 2.0}, {"toy_recall": {"acc": 0.5}}))
    rec.status = "complete"
    write_record(path, rec)
    assert backfill_hint.missing_tasks(spec, tmp_path) == ["toy_arith"]
    backfill_hint.hint_missing_tasks(spec, tmp_path)
    err = capsys.readouterr().err
    assert f"harness eval root={tmp_path} 'eval.tasks=[toy_arith]'" in err


@pytest.mark.slow
def test_bad_task_leaves_no_ghost_run(run_cli, tmp_path, shared_cache):
    code, _, err = run_cli(
        "run", *tiny_overrides(shared_cache, tmp_path, tasks=True), "eval.tasks=[toy_nope]"
    )
    assert code == 2 and "toy_nope" in err
    # the task list is checked when the run is built, after its directory was made
    assert list((tmp_path / "runs").glob("*")) == []


@pytest.mark.slow
def test_overrides_kept_and_run_from_reruns_exactly(run_cli, tmp_path, shared_cache):
    ov = tiny_overrides(shared_cache, tmp_path / "a")
    code, _, err = run_cli("run", *ov)
    assert code == 0, err
    (run,) = (tmp_path / "a" / "runs").iterdir()
    kept = yaml.safe_load((run / "overrides.yaml").read_text())
    assert "model=cpu-50k" in kept and f"out_root={tmp_path / 'a'}" in kept
    code, _, _ = run_cli("run", *ov, "seed=0")  # a relaunch keeps the first overrides
    assert yaml.safe_load((run / "overrides.yaml").read_text()) == kept
    code, out, _ = run_cli("run", "--from", str(run / "config.yaml"))
    assert code == 0 and "is complete" in out
    code, _, err = run_cli("run", "--from", str(run / "config.yaml"), f"out_root={tmp_path / 'b'}")
    assert code == 0, err
    again = tmp_path / "b" / "runs" / run.name
    a = json_final(run)
    assert a == json_final(again)  # same run id, same final validation losses
    code, _, err = run_cli("run", "--from", str(run / "config.yaml"), "seed=3")
    assert code == 2 and "seed: --from reruns a run exactly" in err


def json_final(run) -> dict:
    import json

    return json.loads((run / "record.json").read_text())["checkpoints"][-1]["val_loss"]


@pytest.mark.parametrize(
    "runs, code, message",
    [
        # a folder without runs is bad input, as for `status` (a mistyped root)
        ([], 2, "error: root: no runs under"),
        # a sweep with nothing live: not bad input, and not a success either
        (["abc123"], 1, "nothing to cancel: no live SLURM jobs recorded under"),
    ],
)
def test_cancel_with_nothing_to_cancel_is_non_zero(run_cli, tmp_path, runs, code, message):
    (tmp_path / "runs").mkdir()
    for rid in runs:
        (tmp_path / "runs" / rid).mkdir()
    got, _, err = run_cli("cancel", f"root={tmp_path}")
    assert got == code and message in err and len(err.strip().splitlines()) == 1


def test_cfg_hydra_previews_slurm_without_sbatch(run_cli, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch: the preflight is for launches only
    code, out, err = run_cli(
        "run", "hydra/launcher=slurm", "+cluster=example_gpu", "--cfg", "hydra"
    )
    assert code == 0, err
    assert "timeout_min: 480" in out and "partition: gpu" in out


def test_conflicting_hydra_flags_are_one_line(run_cli):
    code, _, err = run_cli("run", "-m", "--cfg", "job")
    assert code == 2 and err.strip().splitlines() == [
        "error: flags: Only one of --run, --multirun, --cfg, --info and --shell_completion "
        "can be specified"
    ]


def test_status_shows_each_runs_seed(run_cli, tmp_path):
    from common.record import DataInfo, ModelInfo, RunRecord
    from harness.store import write_record

    for rid, seed in (("aaaa", 0), ("bbbb", 7)):
        (tmp_path / "runs" / rid).mkdir(parents=True)
        rec = RunRecord(
            run_id=rid,
            status="complete",
            seed=seed,
            model=ModelInfo(size="cpu-50k"),
            data=DataInfo(mix="toy"),
        )
        write_record(tmp_path / "runs" / rid, rec)
    code, out, err = run_cli("status", f"root={tmp_path}")
    assert code == 0, err
    header, *rows = out.splitlines()[:3]
    assert header.split()[:4] == ["run_id", "size", "mix", "seed"]
    assert [r.split()[:4] for r in rows] == [
        ["aaaa", "cpu-50k", "toy", "0"],
        ["bbbb", "cpu-50k", "toy", "7"],
    ]


def _saved_config(tmp_path):
    """A run directory's config.yaml as `harness run` writes it, without training."""
    from harness.config import run_spec, to_dict
    from harness.identity import run_id

    spec = run_spec(compose(tiny_overrides(tmp_path / "c", tmp_path / "a")))
    path = tmp_path / "a" / "runs" / run_id(spec) / "config.yaml"
    path.parent.mkdir(parents=True)
    path.write_text(yaml.safe_dump({"full": to_dict(spec)}))
    return run_id(spec), path


def test_plan_from_shows_what_run_from_would_do(run_cli, tmp_path):
    rid, path = _saved_config(tmp_path)
    code, out, err = run_cli("plan", "--from", str(path))
    assert code == 0, err
    assert f"rerun of {path} under {tmp_path / 'a'}:" in out
    (row,) = [ln for ln in out.splitlines() if ln.startswith(rid)]
    assert row.split()[1:4] == ["cpu-50k", "toy", "0"] and row.split()[-1] == "train"
    code, out, err = run_cli("plan", "--from", str(path), f"out_root={tmp_path / 'b'}")
    assert code == 0 and f"under {tmp_path / 'b'}:" in out


@pytest.mark.parametrize(
    "args, message",
    [
        (["--from"], "error: --from: needs a path (runs/<run_id>/config.yaml)"),
        (["--from", "nowhere.yaml"], "error: --from: no such file 'nowhere.yaml'"),
        (["--from", "CONFIG", "seed=3"], "error: seed: --from reruns a run exactly"),
    ],
)
def test_plan_from_bad_input_is_one_line(run_cli, tmp_path, args, message):
    _, path = _saved_config(tmp_path)
    code, out, err = run_cli("plan", *[str(path) if a == "CONFIG" else a for a in args])
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert "usage:" not in out + err


_GROUP_OPTION = re.compile(r"(?<![\w.])\+?([a-z_]+(?:/[a-z_]+)?)=([a-z0-9_.,-]+)")


def _help_texts() -> list[tuple[str, str]]:
    """The help texts that name a config group's option (`model=...`): the others have
    nothing for the test below to check."""
    from harness.cli_checks import group_options

    texts = [
        ("harness --help", cli.__doc__),
        *((f"harness {c} --help", t) for c, t in HELP.items()),
    ]
    return [
        (where, text)
        for where, text in texts
        if any(group_options(g) is not None for g, _ in _GROUP_OPTION.findall(text or ""))
    ]


@pytest.mark.parametrize("where, text", _help_texts(), ids=lambda x: x if " " in x else "")
def test_every_group_option_in_the_help_exists(where, text):
    """`model=cpu-s` in the help, with no such size, sent a new user to an error."""
    from harness.cli_checks import group_options

    named = [(g, v) for g, vals in _GROUP_OPTION.findall(text) for v in vals.split(",") if v]
    checked = 0
    for group, value in named:
        options = group_options(group)
        if options is None:
            continue  # a key (train.tokens=...), not a config group
        if group == "hydra/launcher":
            options = [*options, "basic", "submitit_local", "submitit_slurm"]
        assert value in options, f"{where}: {group}={value} (known: {', '.join(options)})"
        checked += 1
    assert checked >= 1
    if where == "harness --help":
        assert checked >= 3  # model=..., with -m model=...,...


def _items(out: str, task: str) -> int:
    return int(next(ln.split() for ln in out.splitlines() if ln.startswith(task + " "))[4])


@pytest.mark.parametrize(
    "overrides, line",
    [
        ([], "toy tasks of sweep 'default' (world_seed 0, 400 entities, n_per_task 200)"),
        (["sweep=demo"], "toy tasks of sweep 'demo' (world_seed 0, 66 entities, n_per_task 200)"),
        (
            ["sweep=demo", "sources.toyworld.world_seed=1"],
            "toy tasks of sweep 'demo' (world_seed 1, 66 entities, n_per_task 200)",
        ),
    ],
)
def test_tasks_counts_the_items_of_the_configured_world(run_cli, tmp_path, overrides, line):
    """The demo's world (66 people, 30 of them unseen) has fewer distinct questions than the
    default's; the table counts the world the overrides name, and says which."""
    from harness.config import run_spec
    from harness.data_prep import toy_task_dir
    from toyworld.tasks import load_task_specs

    args = [*overrides, f"cache_dir={tmp_path}"]
    code, out, err = run_cli("tasks", *args)
    assert code == 0, err
    assert out.splitlines()[0] == line + "; another sweep's: harness tasks sweep=NAME"
    folder, _ = toy_task_dir(run_spec(compose(args)))
    expected = {s.task: s.n_samples for s in load_task_specs(folder).values()}
    assert {t: _items(out, t) for t in expected} == expected
