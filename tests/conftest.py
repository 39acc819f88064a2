"""Shared fixtures: the real conf/ composed and shrunk to seconds-long runs, offline."""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from tests import xdist_schedule

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("HARNESS_NO_PROGRESS", "1")

ROOT = Path(__file__).resolve().parent.parent


@pytest.hookimpl(tryfirst=True, optionalhook=True)  # a pytest-xdist hook
def pytest_xdist_make_scheduler(config, log):
    """Any distributing mode but `each` (`make test`: --dist loadfile): files as units, the
    SLURM files one unit together (tests/xdist_schedule.py), so that no `pytest -n N` runs two
    SLURM tests at once on the one small cluster."""
    if config.getvalue("dist") != "each":
        return xdist_schedule.make_scheduler(config, log)
    return None


def pytest_collection_modifyitems(config, items) -> None:
    """The SLURM files first, then the long ones, then the rest as collected (the order
    xdist hands the files out: tests/xdist_schedule.py). Stable: a file keeps its order. A
    test marked slurm outside SLURM_FILES would run beside the others: refused."""
    for item in items:
        if item.get_closest_marker("slurm") and item.path.name not in xdist_schedule.SLURM_FILES:
            raise pytest.UsageError(
                f"{item.nodeid}: marked slurm but its file is not in "
                "tests/xdist_schedule.SLURM_FILES (the SLURM tests run one after another)"
            )
    items.sort(key=xdist_schedule.start_rank)


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


@pytest.fixture(scope="session", autouse=True)
def lm_eval_default_index_once():
    """lm-eval indexes every YAML it ships (~15k entries, ~5 s of CPU) in each TaskManager that
    includes its defaults, and the tests build managers for many include paths (each a new
    key of eval.lm_eval_runner's cache). The default folder's part is built once per session
    and merged as `TaskIndex.build` merges (later paths override earlier), so every manager
    holds the index it would have built itself; lm-eval's task factory deep-copies entries."""
    import lm_eval.tasks
    from lm_eval.tasks._index import TaskIndex

    build = TaskIndex.build
    default = Path(lm_eval.tasks.__file__).parent
    built: dict[bool, dict] = {}

    def build_reusing_defaults(paths, *, resolve_includes=True):
        paths = [Path(p) for p in paths]
        if not paths or paths[0] != default:
            return build(paths, resolve_includes=resolve_includes)
        if resolve_includes not in built:
            built[resolve_includes] = build([default], resolve_includes=resolve_includes)
        index = dict(built[resolve_includes])
        if paths[1:]:
            index.update(build(paths[1:], resolve_includes=resolve_includes))
        return index

    TaskIndex.build = staticmethod(build_reusing_defaults)
    yield
    TaskIndex.build = staticmethod(build)


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory) -> Path:
    """One cache for the session: the tokenizer and token caches are built once."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="session")
def finished_ckpt4(shared_cache, tmp_path_factory):
    """(spec, outcome) of one finished tiny run with a checkpoint every 4 steps (32 steps, no
    tasks), trained once per session: tests read it or damage copies of it, never it."""
    from harness.config import run_spec
    from harness.runner import execute

    out = tmp_path_factory.mktemp("finished_ckpt4")
    spec = run_spec(compose(tiny_overrides(shared_cache, out) + ["train.checkpoint_every=4"]))
    outcome = execute(spec, out)
    assert outcome.status == "complete"
    return spec, outcome


def compose(overrides: list[str], config_name: str = "config", hydra_node: bool = False):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return hydra_compose(
            config_name=config_name, overrides=overrides, return_hydra_config=hydra_node
        )


def _warnings_as_a_process_shows_them() -> None:
    """Inside `warnings.catch_warnings()`: Python's default filters (what `python -m
    harness.cli` starts with) and warnings printed to stderr, not recorded by pytest, so an
    in-process call's stderr holds the warning lines a user would see."""
    warnings.resetwarnings()
    warnings.simplefilter("default")
    for category in (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning):
        warnings.filterwarnings("ignore", category=category)

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))

    warnings.showwarning = show


def local_mc_task(name: str, data: Path, **fields) -> dict:
    """An lm-eval multiple-choice task config over a local JSONL of {q, choices, gold} items;
    `fields` add to it or replace its defaults."""
    return {
        "task": name,
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": str(data)}},
        "test_split": "test",
        "output_type": "multiple_choice",
        "doc_to_text": "{{q}}",
        "doc_to_target": "{{gold}}",
        "doc_to_choice": "{{choices}}",
        "num_fewshot": 0,
        **fields,
    }


def harness_process(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 600, **kw
) -> subprocess.CompletedProcess:
    """`python -m harness.cli <args>` in its own process, as a shell runs it: offline, no
    progress bars (fault_injection.child_env), output captured as text. For tests where the
    process boundary is what is tested (exit codes, signals, a sweep's subprocesses); `env`
    adds to that environment."""
    from tests.fault_injection import child_env

    return subprocess.run(
        [sys.executable, "-m", "harness.cli", *args],
        cwd=cwd,
        env=child_env(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        **kw,
    )


def call_main(*args: str) -> int:
    """`harness <args>` in this process; its exit code. For tests of what the command prints
    and returns (a process costs seconds of imports): warnings reach stderr as in `python -m
    harness.cli`; Hydra's global state is cleared after each call."""
    from hydra.core.global_hydra import GlobalHydra

    from harness.cli import main

    code = 0
    with warnings.catch_warnings():
        _warnings_as_a_process_shows_them()
        try:
            main(list(args))
        except SystemExit as exc:  # as the interpreter ends: None is 0, a message is printed
            code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
            if exc.code is not None and not isinstance(exc.code, int):
                print(exc.code, file=sys.stderr)
        finally:
            GlobalHydra.instance().clear()
    return code


def cli_in_process(*args: str) -> tuple[int, str, str]:
    """`call_main` with stdout and stderr collected here (module fixtures have no capsys)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = call_main(*args)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def run_cli(capsys):
    """Call `harness` in-process (`call_main`); returns (exit_code, stdout, stderr)."""

    def call(*args: str) -> tuple[int, str, str]:
        code = call_main(*args)
        out, err = capsys.readouterr()
        return code, out, err

    return call
