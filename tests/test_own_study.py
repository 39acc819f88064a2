"""A researcher's own study outside the checkout (issue 24): a study's conf folder through
`--config-dir` / `hydra.searchpath` for every group, `files` sources by glob and folder, run
ids that follow a corpus's bytes and relative layout (not where it lies), the warning for a
corpus the tokenizer and validation sets never see, a mix replaced in one override, and the
override errors as one line, exit 2. The end-to-end study is tests/test_own_study_e2e.py."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from harness import cli_checks
from harness.config import run_spec
from harness.identity import run_id
from tests.conftest import ROOT, tiny_overrides
from tests.fixtures.analysis_make import sweep_records, write_records
from train.file_corpus import corpus_files
from train.sources import iter_documents

# (config name, group): each packaged group a study may add an option to
GROUPS = [
    ("config", "data"),
    ("config", "sources"),
    ("config", "validation"),
    ("config", "tokenizer"),
    ("config", "eval"),
    ("config", "model"),
    ("config", "train"),
    ("config", "sweep"),
    ("config", "logger"),
    ("analyze", "analysis"),
]


@pytest.fixture(autouse=True)
def _no_study_dirs():
    """The study folders are per command: leave none behind for other tests."""
    yield
    cli_checks.take_config_dirs([])


def _study_conf(root: Path) -> Path:
    """A study's conf folder: one option `mine` per group, a copy of a packaged option."""
    conf = root / "conf"
    for _, group in GROUPS:
        (conf / group).mkdir(parents=True)
        packaged = sorted((ROOT / "conf" / group).glob("*.yaml"))[0]
        shutil.copy(packaged, conf / group / "mine.yaml")
    (conf / "data" / "mine.yaml").write_text("name: mine\nweights: {stdlib_code: 1.0}\n")
    return conf


def _forms(conf: Path) -> list[list[str]]:
    return [
        ["--config-dir", str(conf)],
        ["-cd", str(conf)],
        [f"--config-dir={conf}"],
        [f"hydra.searchpath=[file://{conf}]"],
        [f"hydra.searchpath=[{conf}]"],
    ]


@pytest.mark.parametrize("config_name, group", GROUPS)
def test_every_group_finds_a_study_option(tmp_path, config_name, group):
    conf = _study_conf(tmp_path)
    for form in _forms(conf):
        rest = cli_checks.take_config_dirs([*form, f"{group}=mine"])
        assert rest == [f"{group}=mine"]
        assert "mine" in cli_checks.group_options(group)
        cli_checks.check_group_overrides(rest)  # exits 2 on an unknown option
        cfg = cli_checks.compose_raw(config_name, rest)
        if group == "data":
            assert dict(cfg.data.weights) == {"stdlib_code": 1.0}
    cli_checks.take_config_dirs([])
    assert cli_checks.group_options("data") == sorted(
        p.stem for p in (ROOT / "conf" / "data").glob("*.yaml")
    )


@pytest.mark.parametrize("form", [0, 1, 3])
def test_plan_with_a_study_conf(tmp_path, run_cli, form, shared_cache):
    conf = _study_conf(tmp_path)
    out = tmp_path / "out"
    code, stdout, err = run_cli(
        "plan", *_forms(conf)[form], "data=mine", *tiny_overrides(shared_cache, out)
    )
    assert code == 0, err
    assert " mine " in stdout.splitlines()[1]
    assert not out.exists()


def _files_override(pattern: str, extra: str = "") -> list[str]:
    return [
        f"+sources.mine={{kind: files, paths: ['{pattern}'], val_fraction: 0.25{extra}}}",
        "data.weights={mine: 1.0}",
    ]


def _corpus(root: Path, docs: int = 3) -> Path:
    (root / "sub").mkdir(parents=True)
    for i in range(docs):
        (root / f"d{i}.md").write_text(f"document {i} about nodes and edges.\n" * 20)
    (root / "sub" / "deep.md").write_text("a document one folder down.\n" * 20)
    (root / ".hidden.md").write_text("never read\n")
    (root / "notes.txt").write_text("not markdown\n")
    return root


@pytest.mark.parametrize(
    "args, prepare, message",
    [
        (["--config-dir", "/no/such/conf"], None, "--config-dir: no folder '/no/such/conf'"),
        (["-cd"], None, "-cd: needs a folder"),
        (
            ["hydra.searchpath=[file:///no/such/conf]"],
            None,
            "hydra.searchpath: no folder '/no/such/conf'",
        ),
        (["hydra.searchpath=file:///tmp"], None, "hydra.searchpath: must be a list"),
        (["hydra.searchpath=[pkg://mystudy.conf]"], None, "only folders (file://)"),
        (["data=nosuch"], None, "data: unknown data 'nosuch' (known: c4,"),
        (["train.lr=[1,2"], None, "train.lr=[1,2: no viable alternative at input '[1,2'"),
        (
            ["sources.toyworld.docs=[~/x]"],
            None,
            "sources.toyworld.docs=[~/x]: token recognition error at: '~'; quote the value",
        ),
        (["+seed=3"], None, "An item is already at 'seed'"),
        (["~nosuch"], None, "Could not delete from config. 'nosuch' does not exist."),
        (["train.lr=${nosuch}"], None, "train.lr: Interpolation key 'nosuch' not found"),
        (
            ["+data.weights={stdlib_code:1.0}"],
            None,
            "+data.weights: would merge {stdlib_code:1.0} into the mix's weights; "
            "replace the mix with data.weights={stdlib_code:1.0}",
        ),
        (["data.weights={toyworld:1},{stdlib_code:1}"], None, "data.weights: one mix per"),
        (["data.weights=3"], None, "data.weights: must be a map of source names"),
        (["data.weights={nosuch: 1.0}"], None, "data.weights.nosuch: unknown source 'nosuch'"),
        ("glob", "*.nomatch", "sources.mine.paths: '{c}/*.nomatch' matches no file"),
        ("glob", "empty", "sources.mine.paths: folder '{c}/empty' has no files"),
        ("glob", "missing.md", "data file not found: '{c}/missing.md'"),
        (
            "option",
            ", path: x",
            "sources.mine.path: unknown option of a files source "
            "(known: paths, format, text_field, val_fraction)",
        ),
    ],
)
def test_bad_study_input_is_one_line_exit_2(tmp_path, run_cli, args, prepare, message):
    corpus = _corpus(tmp_path / "corpus")
    (corpus / "empty").mkdir()
    if args == "glob":
        args = _files_override(f"{corpus}/{prepare}")
    elif args == "option":
        args = _files_override(f"{corpus}/*.md", prepare)
    out = tmp_path / "out"
    code, _, err = run_cli("plan", *tiny_overrides(tmp_path / "c", out), *args)
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1, err
    assert message.replace("{c}", str(corpus)) in err
    assert not out.exists()


def test_glob_folder_and_home_list_files_sorted_by_relative_name(tmp_path, monkeypatch):
    corpus = _corpus(tmp_path / "corpus")
    monkeypatch.setenv("HOME", str(tmp_path))

    def names(*paths: str) -> list[str]:
        return [rel for _, rel in corpus_files("mine", {"paths": list(paths)})]

    assert names("~/corpus/*.md") == ["d0.md", "d1.md", "d2.md"]  # hidden left out
    assert names(f"{corpus}/**/*.md") == ["d0.md", "d1.md", "d2.md", "sub/deep.md"]
    assert names(str(corpus)) == ["d0.md", "d1.md", "d2.md", "notes.txt", "sub/deep.md"]
    assert names("~/corpus/d1.md", "~/corpus/*.md") == ["d1.md", "d0.md", "d2.md"]  # once each
    monkeypatch.chdir(tmp_path)
    assert names("corpus/sub/*") == ["deep.md"]


def _spec(corpus: Path, cache: Path, out: Path, pattern: str = "**/*.md"):
    from harness.cli_checks import replace_mix

    ov = replace_mix(tiny_overrides(cache, out) + _files_override(f"{corpus}/{pattern}"))
    return run_spec(cli_checks.compose_raw("config", ov))


def test_moved_corpus_keeps_its_run_id_and_split(tmp_path):
    a = _corpus(tmp_path / "a" / "corpus")
    b = tmp_path / "elsewhere" / "copy"
    shutil.copytree(a, b)
    spec_a, spec_b = (_spec(c, tmp_path / "c", tmp_path / "o") for c in (a, b))
    assert run_id(spec_a) == run_id(spec_b)
    for split in ("train", "val"):
        docs = list(iter_documents(spec_a.sources["mine"], split))
        assert docs and docs == list(iter_documents(spec_b.sources["mine"], split))
    # a byte changed, or the same bytes under another relative name: another corpus
    (b / "d1.md").write_text((b / "d1.md").read_text().replace("nodes", "nodez"))
    assert run_id(_spec(b, tmp_path / "c", tmp_path / "o")) != run_id(spec_a)
    shutil.rmtree(b)
    shutil.copytree(a, b)
    assert run_id(_spec(b, tmp_path / "c", tmp_path / "o")) == run_id(spec_a)
    (b / "d1.md").rename(b / "d9.md")
    assert run_id(_spec(b, tmp_path / "c", tmp_path / "o")) != run_id(spec_a)


def test_replaced_mix_is_the_given_map_named_after_its_sources():
    from harness.cli_checks import replace_mix

    def spec(*args: str):
        return run_spec(cli_checks.compose_raw("config", replace_mix(list(args))))

    one = spec("data=toy_code", "data.weights={stdlib_code: 1.0}")
    assert one.mix.weights == {"stdlib_code": 1.0} and one.mix.name == "stdlib_code"
    two = spec("data.weights={toyworld: 1, stdlib_code: 3}")
    assert two.mix.weights == {"toyworld": 0.25, "stdlib_code": 0.75}
    assert two.mix.name == "toyworld+stdlib_code"
    named = spec("data.weights={stdlib_code: 1.0}", "data.name=code_only")
    assert named.mix.name == "code_only"
    # Hydra's own two-override form still works, and gives the same weights
    assert spec("~data.weights", "+data.weights={stdlib_code: 1.0}").mix.weights == {
        "stdlib_code": 1.0
    }


def test_uncovered_sources_warn_once_in_one_line(tmp_path, run_cli, shared_cache):
    from harness.coverage import uncovered

    corpus = _corpus(tmp_path / "corpus")
    spec = _spec(corpus, tmp_path / "c", tmp_path / "o")
    line = uncovered(spec)
    assert line == (
        "warning: mix 'mine': tokenizer.train_sources (toyworld, stdlib_code) lack mine; "
        "no validation set (toy, toy_shifted, code) reads mine "
        "(name your corpus in a tokenizer and a validation config of the study)"
    )
    assert uncovered(run_spec(cli_checks.compose_raw("config", ["data=toy_code"]))) is None
    covered = cli_checks.compose_raw(
        "config",
        cli_checks.replace_mix(
            [
                *_files_override(f"{corpus}/*.md"),
                "tokenizer.train_sources=[mine]",
                "+validation.sets.mine={source: mine, split: val}",
            ]
        ),
    )
    assert uncovered(run_spec(covered)) is None
    code, _, err = run_cli(
        "plan",
        "-m",
        *tiny_overrides(shared_cache, tmp_path / "o"),
        *_files_override(f"{corpus}/*.md"),
        "model=cpu-40k,cpu-50k",
    )
    assert code == 0, err
    assert err.count("warning: mix 'mine'") == 1, err


def test_named_reference_val_set_missing_is_one_line_exit_2(tmp_path, run_cli):
    root = write_records(tmp_path / "sweep", sweep_records(n_sizes=3, mixes=("toy",)))
    out = tmp_path / "analysis"
    code, _, err = run_cli(
        "analyze", f"root={root}", f"out={out}", "analysis.reference_val_set=toyy"
    )
    assert code == 2
    assert err.strip() == (
        "error: analysis.reference_val_set: no validation set 'toyy' in the runs (known: toy)"
    )
    assert not out.exists()
