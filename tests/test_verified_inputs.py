"""Issue 13, without training: inputs are part of a run's identity, caches and the tokenizer
are verified when opened, task folders never run planted code, settings are strict, names
cannot escape the output root, and `harness status` tells the truth about dead, planted and
torn files. Each test reproduces a case that ended wrong (or hung) before."""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch
import yaml

from common.errors import ConfigError, DataError
from common.record import DataInfo, ModelInfo, RunRecord
from harness.config import run_spec
from harness.identity import run_id
from harness.status import status_rows
from harness.store import write_record
from tests.conftest import ROOT, compose, tiny_overrides
from tests.fault_injection import child_env
from train.specs import MixSpec, SourceSpec


def spec_for(tmp_path: Path, extra: tuple[str, ...] = (), cache: Path | None = None):
    return run_spec(compose(tiny_overrides(cache or tmp_path / "c", tmp_path / "o") + list(extra)))


def _files_run(spec, corpus: Path):
    """`spec` training on one `files` source."""
    src = SourceSpec("mine", "files", {"paths": [str(corpus)], "val_fraction": 0.2})
    return dataclasses.replace(
        spec, sources={**spec.sources, "mine": src}, mix=MixSpec("m", {"mine": 1.0})
    )


# -- 2. inputs are part of identity ------------------------------------------------------


def test_replaced_corpus_gets_a_new_run_id(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("the cat sat on the mat\n" * 50)
    spec = _files_run(spec_for(tmp_path), corpus)
    before = run_id(spec)
    st = corpus.stat()
    corpus.write_text("the dog ran in the fog\n" * 50)  # same size...
    os.utime(corpus, ns=(st.st_atime_ns, st.st_mtime_ns))  # ...and the same mtime
    assert corpus.stat().st_size == st.st_size
    assert run_id(spec) != before


def _hf_run(spec, data_files: dict):
    """`spec` training on one `hf` source read through datasets' local json builder."""
    src = SourceSpec("hfds", "hf", {"path": "json", "data_files": data_files, "text_field": "t"})
    return dataclasses.replace(
        spec, sources={**spec.sources, "hfds": src}, mix=MixSpec("m", {"hfds": 1.0})
    )


def test_changed_hf_dataset_gets_a_new_run_id(tmp_path):
    """An `hf` source is pinned by its dataset's fingerprint, not only by a revision the user
    may not have set: new data under the same options is a new run."""
    train = tmp_path / "train.jsonl"
    train.write_text('{"t": "the cat sat"}\n' * 20)
    spec = _hf_run(spec_for(tmp_path), {"train": str(train)})
    before = run_id(spec)
    assert run_id(spec) == before  # stable while nothing changes
    st = train.stat()
    train.write_text('{"t": "the dog ran"}\n' * 20)  # same size and, below, the same mtime
    os.utime(train, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert run_id(spec) != before
    missing = _hf_run(spec_for(tmp_path), {"train": str(tmp_path / "gone.jsonl")})
    with pytest.raises(DataError, match="sources.hfds: could not load dataset 'json'"):
        run_id(missing)


def test_moved_hf_local_dataset_keeps_its_run_id(tmp_path):
    """An `hf` source on local files is keyed by their layout and bytes, not where they sit:
    the same files in another folder keep the run id; another layout or byte does not."""
    ids = {}
    for folder in ("a", "b/deeper"):
        root = tmp_path / folder
        (root / "parts").mkdir(parents=True)
        (root / "parts" / "train.jsonl").write_text('{"t": "the cat sat"}\n' * 20)
        (root / "val.jsonl").write_text('{"t": "the dog ran"}\n' * 5)
        files = {"train": [str(root / "parts" / "train.jsonl")], "val": str(root / "val.jsonl")}
        ids[folder] = run_id(_hf_run(spec_for(tmp_path), files))
    assert ids["a"] == ids["b/deeper"]
    root = tmp_path / "a"
    swapped = {"train": str(root / "val.jsonl"), "val": [str(root / "parts" / "train.jsonl")]}
    assert run_id(_hf_run(spec_for(tmp_path), swapped)) != ids["a"]
    (root / "val.jsonl").write_text('{"t": "the dog ran"}\n' * 4 + '{"t": "the dog sat"}\n')
    files = {"train": [str(root / "parts" / "train.jsonl")], "val": str(root / "val.jsonl")}
    assert run_id(_hf_run(spec_for(tmp_path), files)) != ids["a"]


def test_folder_build_leaves_nothing_half_written(tmp_path):
    """A build that dies (full disk) removes its temporary folder; one left by a builder that
    was killed outright is removed by the next build of the same target, not others'."""
    from train.cache_lock import build_dir_once

    target = tmp_path / "cache" / "abc"

    def full_disk(tmp: Path) -> None:
        (tmp / "tokenizer.json").write_bytes(b"{" * 10)  # partial, as a real ENOSPC leaves it
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        build_dir_once(target, full_disk)
    assert sorted(p.name for p in target.parent.iterdir()) == ["abc.lock"]
    (target.parent / ".abc.build.dead1").mkdir()  # a SIGKILLed builder's leftover
    (target.parent / ".other.build.live").mkdir()  # another target's build in progress
    build_dir_once(target, lambda tmp: (tmp / "f").write_text("ok"))
    assert (target / "f").read_text() == "ok"
    assert sorted(p.name for p in target.parent.iterdir()) == [
        ".other.build.live",
        "abc",
        "abc.lock",
    ]


@pytest.fixture
def mount_small_disk(tmp_path):
    """Mounts real filesystems (tmpfs) of a given size: `mount(name, size)` -> the folder.
    Needs mount rights (root, as CI runs); skipped with the reason elsewhere."""
    mounted: list[Path] = []

    def mount(name: str, size: str) -> Path:
        where = tmp_path / name
        where.mkdir()
        res = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
            capture_output=True,
            text=True,
        )
        if res.returncode != 0:
            pytest.skip(f"cannot mount a small tmpfs here: {res.stderr.strip() or res.returncode}")
        mounted.append(where)
        return where

    try:
        yield mount
    finally:
        for where in mounted:
            subprocess.run(["umount", "-l", str(where)], capture_output=True)


@pytest.fixture
def small_disk(mount_small_disk):
    """A real 16 KiB filesystem: too small for a tokenizer."""
    return mount_small_disk("small", "16k")


def test_full_disk_while_saving_the_tokenizer_is_one_line(small_disk, tmp_path, run_cli):
    """The disk fills while the tokenizer is saved: one line naming the cache, and nothing
    half-written left in the cache for the next run to trip over."""
    code, _, err = run_cli("run", *tiny_overrides(small_disk / "c", tmp_path / "o"))
    assert code != 0 and "Traceback" not in err
    assert "cache_dir: disk full while preparing the run's inputs" in err
    left = [p.name for p in (small_disk / "c" / "tokenizers").iterdir() if p.is_dir()]
    assert left == []


def test_full_disk_while_saving_checkpoint_weights_fails_the_run_in_one_line(
    mount_small_disk, tmp_path, shared_cache, run_cli
):
    """Room for the record, not for model.safetensors (safetensors raises its own error):
    the run is failed with "disk full" and the command says so without a traceback."""
    out = mount_small_disk("out", "64k")
    code, _, err = run_cli("run", *tiny_overrides(shared_cache, out))
    assert code == 1 and "Traceback" not in err, err
    (record,) = out.glob("runs/*/record.json")
    rec = json.loads(record.read_text())
    assert rec["status"] == "failed" and rec["failure"].startswith("disk full"), rec["failure"]
    assert "disk full" in err.strip().splitlines()[-1]
    assert not [p for p in record.parent.glob("checkpoints/*") if p.is_dir()]


def test_full_disk_while_saving_the_trainer_state_is_an_enospc(mount_small_disk, tmp_path):
    """torch.save reports a full disk as a RuntimeError naming no cause: save_checkpoint
    raises it as the OSError(ENOSPC) the runner records as "disk full", leaving nothing."""
    from train.checkpoint import save_checkpoint
    from train.model import build_model

    class NoTokenizer:
        def save_pretrained(self, folder):
            return ()

    root = mount_small_disk("ckpt", "256k")
    model = build_model(spec_for(tmp_path).model, 512, seed=0)  # ~100 KB of weights: they fit
    state = {"step": 1, "optimizer": {"m": torch.zeros(100_000)}}  # 400 KB: it does not
    with pytest.raises(OSError) as err:
        save_checkpoint(root / "checkpoints", 1, model, NoTokenizer(), state)
    assert err.value.errno == errno.ENOSPC and "saving checkpoint step_1" in str(err.value)
    assert list((root / "checkpoints").iterdir()) == []


def test_token_cache_damaged_at_the_same_size_is_refused(tmp_path, shared_cache):
    from train.token_cache import build_token_cache, cache_key
    from train.tokenizer import load_tokenizer, tokenizer_key

    spec = spec_for(tmp_path, cache=shared_cache)
    tok = load_tokenizer(spec.tokenizer, spec.sources, shared_cache)
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("".join(f"line {i} of a small private corpus\n" for i in range(400)))
    src = _files_run(spec, corpus).sources["mine"]
    cache_dir = tmp_path / "private"  # never damage the session's shared cache
    tok_id = tokenizer_key(spec.tokenizer, spec.sources)
    leftover = cache_dir / "tokens" / f".{cache_key(src, 'train', tok_id, None)}.bin.x1y2.tmp.bin"
    leftover.parent.mkdir(parents=True)
    leftover.write_bytes(b"from a builder killed mid-write")
    cache = build_token_cache(src, "train", tok, tok_id, cache_dir)
    assert not leftover.exists()  # removed by the next build of that cache
    data = bytearray(cache.path.read_bytes())
    data[10:20] = bytes(reversed(data[10:20])) if data[10:20] != data[10:20][::-1] else b"\xff" * 10
    cache.path.write_bytes(bytes(data))
    with pytest.raises(DataError, match="does not match its sha256"):
        build_token_cache(src, "train", tok, tok_id, cache_dir)


def test_edited_tokenizer_cache_is_refused(tmp_path, shared_cache):
    from train.tokenizer import load_tokenizer, tokenizer_key

    spec = spec_for(tmp_path, cache=shared_cache)
    load_tokenizer(spec.tokenizer, spec.sources, shared_cache)  # built once for the session
    key = tokenizer_key(spec.tokenizer, spec.sources)
    private = tmp_path / "private"
    shutil.copytree(shared_cache / "tokenizers" / key, private / "tokenizers" / key)
    tj = private / "tokenizers" / key / "tokenizer.json"
    cfg = json.loads(tj.read_text())
    vocab = cfg["model"]["vocab"]
    a, b = sorted(vocab)[300:302]
    vocab[a], vocab[b] = vocab[b], vocab[a]  # two ids swapped: every score would shift
    tj.write_text(json.dumps(cfg))
    with pytest.raises(DataError, match="tokenizer.json does not match its sha256"):
        load_tokenizer(spec.tokenizer, spec.sources, private)


# -- 3. task folders never run planted code -----------------------------------------------


def _old_suite_name(root: Path) -> str:
    """The predictable shared-temp name suites were materialised under before."""
    from eval.suites.paths import _files, lm_eval_tasks_dir

    digest = hashlib.sha256(str(lm_eval_tasks_dir()).encode())
    for p in _files(root):
        digest.update(str(p.relative_to(root)).encode() + b"\0" + p.read_bytes() + b"\0")
    return f"harness-suite-{root.name}-{digest.hexdigest()[:16]}"


def test_planted_suite_folder_in_shared_temp_is_never_used(tmp_path, monkeypatch):
    from eval.suites.paths import PLACEHOLDER, lm_eval_tasks_dir, materialise

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    root = (ROOT / "eval" / "suites" / "core").resolve()
    planted = tmp_path / _old_suite_name(root)
    planted.mkdir()
    (planted / "evil.py").write_text("def pwn(ds):\n    open('PWNED', 'w')\n    return ds\n")
    (planted / "arc_easy_evil.yaml").write_text(
        "task: arc_easy\nprocess_docs: !function evil.pwn\n"
    )
    got = materialise(root)
    assert got.resolve() != planted.resolve() and planted not in got.parents
    private = got.parent
    assert stat.S_IMODE(private.stat().st_mode) == 0o700 and private.stat().st_uid == os.getuid()
    for src in root.rglob("*.yaml"):
        want = src.read_text().replace(PLACEHOLDER, str(lm_eval_tasks_dir()))
        assert (got / src.relative_to(root)).read_text() == want
    assert not list(got.rglob("evil.py"))


@pytest.fixture
def toy_tasks(tmp_path):
    from toyworld.tasks import write_toy_tasks
    from toyworld.world import make_world

    out = tmp_path / "toytasks"
    out.mkdir()
    return out, write_toy_tasks(make_world(seed=1, n_entities=40), out, n_per_task=8, seed=0)


def test_toy_task_include_of_code_running_yaml_is_refused(toy_tasks):
    from toyworld.tasks import load_task_specs

    out, specs = toy_tasks
    (out / "evil.py").write_text("def pwn(ds):\n    return ds\n")
    (out / "base.yaml").write_text("process_docs: !function evil.pwn\n")
    victim = Path(next(iter(specs.values())).yaml_path)
    cfg = yaml.safe_load(victim.read_text())
    victim.write_text(yaml.safe_dump({"include": "base.yaml", **cfg}))
    with pytest.raises(
        ValueError, match="not written by the toy-task generator|may not use 'include'"
    ):
        load_task_specs(out)
    (out / "base.yaml").unlink()
    (out / "evil.py").unlink()
    with pytest.raises(ValueError, match="may not use 'include'"):
        load_task_specs(out)


# -- issue 25, 1: every generated input verified -------------------------------------------


def _resign_index(out: Path) -> None:
    """Rewrite index.json's checksums (its files' and its own) for the files as they are now:
    what someone who edits the cache on purpose would do; only the generator's bytes are left
    to tell."""
    index_path = out / "index.json"
    index = json.loads(index_path.read_text())
    if "files" in index:
        for name in index["files"]:
            index["files"][name] = hashlib.sha256((out / name).read_bytes()).hexdigest()
    text = json.dumps(index, indent=1, sort_keys=True) + "\n"
    index_path.write_text(text)
    if (out / "index.json.sha256").exists():
        (out / "index.json.sha256").write_text(hashlib.sha256(text.encode()).hexdigest() + "\n")


def test_toy_task_data_damaged_at_the_same_size_is_refused(toy_tasks):
    """Gold shifted in the test items (same size): the scores would change silently."""
    from toyworld.tasks import load_task_specs

    out, _ = toy_tasks
    data = out / "toy_facts.jsonl"
    rows = [json.loads(line) for line in data.read_text().splitlines()]
    shifted = [dict(r, gold=(r["gold"] + 1) % len(r["choices"])) for r in rows]
    text = "".join(json.dumps(r, sort_keys=True, ensure_ascii=False) + "\n" for r in shifted)
    assert len(text) == data.stat().st_size and text != data.read_text()
    data.write_text(text)
    with pytest.raises(
        ValueError, match="toy_facts.jsonl: toy task file does not match its sha256"
    ):
        load_task_specs(out)


def test_planted_jinja_template_in_a_cached_task_yaml_never_reaches_lm_eval(toy_tasks, tmp_path):
    """lm-eval renders doc_to_text with an unsandboxed Jinja environment: a template in a
    cached YAML would run as the user. Even with every checksum rewritten to match, a YAML
    that is not byte for byte the generator's is refused."""
    from toyworld.tasks import load_task_specs

    out, specs = toy_tasks
    victim = Path(specs["toy_facts"].yaml_path)
    marker = tmp_path / "pwned"
    cfg = yaml.safe_load(victim.read_text())
    cfg["doc_to_text"] = (
        "{{ cycler.__init__.__globals__.os.popen('touch " + str(marker) + "').read() }}{{query}}"
    )
    victim.write_text(yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True))
    _resign_index(out)
    with pytest.raises(
        ValueError, match="toy_facts.yaml: task YAML differs from what the toy-task"
    ):
        load_task_specs(out)
    assert not marker.exists()


def test_edited_toy_task_index_is_refused(toy_tasks):
    from toyworld.tasks import load_task_specs

    out, _ = toy_tasks
    index = out / "index.json"
    index.write_text(index.read_text().replace('"n_samples": 8', '"n_samples": 9', 1))
    with pytest.raises(ValueError, match="index.json: toy task index does not match its sha256"):
        load_task_specs(out)


def test_toy_tasks_of_another_python_are_refused(toy_tasks):
    from toyworld.tasks import load_task_specs

    out, _ = toy_tasks
    index = json.loads((out / "index.json").read_text())
    index["python"] = "3.0.1"
    (out / "index.json").write_text(json.dumps(index, indent=1, sort_keys=True) + "\n")
    _resign_index(out)
    with pytest.raises(ValueError, match="generated under Python 3.0.1, this is Python"):
        load_task_specs(out)


def test_damaged_toy_task_cache_stops_the_run_in_one_line(tmp_path):
    from harness.data_prep import toy_task_dir

    spec = run_spec(compose(tiny_overrides(tmp_path / "c", tmp_path / "o", tasks=True)))
    folder, _ = toy_task_dir(spec)
    data = folder / "toy_recall.jsonl"
    text = data.read_text()
    data.write_text(text.replace('"gold": 0', '"gold": 1', 1))
    with pytest.raises(DataError) as err:
        toy_task_dir(spec)
    assert "does not match its sha256" in str(err.value) and "\n" not in str(err.value)
    assert f"delete {folder} to regenerate" in str(err.value)


@pytest.fixture
def fake_stdlib(tmp_path, monkeypatch):
    """This interpreter's stdlib replaced by a small copy the test may edit."""
    import sysconfig

    root = tmp_path / "stdlib"
    (root / "pkg").mkdir(parents=True)
    (root / "alpha.py").write_text("def f():\n    return 1\n")
    (root / "pkg" / "beta.py").write_text("class B:\n    pass\n")
    real = sysconfig.get_paths
    monkeypatch.setattr(
        sysconfig, "get_paths", lambda *a, **k: {**real(*a, **k), "stdlib": str(root)}
    )
    return root


def test_stdlib_corpus_identity_follows_its_bytes_and_the_python_version(
    tmp_path, fake_stdlib, monkeypatch
):
    """Another Python build's stdlib is another corpus: a new run id, token cache key and
    toy-task key, not the old ones over other text."""
    import platform

    from harness.data_prep import toy_task_key
    from train.token_cache import cache_key

    spec = spec_for(tmp_path, ("eval=toy", "eval.tasks=[toy_code]"))
    code = spec.sources["stdlib_code"]

    def keys() -> tuple[str, str, str]:
        return run_id(spec), cache_key(code, "val", "tok", None), toy_task_key(spec)

    before = keys()
    assert keys() == before  # stable while nothing changes
    alpha = fake_stdlib / "alpha.py"
    st = alpha.stat()
    alpha.write_text("def f():\n    return 2\n")  # same size, and below the same mtime
    os.utime(alpha, ns=(st.st_atime_ns, st.st_mtime_ns))
    edited = keys()
    assert all(a != b for a, b in zip(before, edited, strict=True))
    monkeypatch.setattr(platform, "python_version", lambda: "3.99.0")
    assert all(a != b for a, b in zip(edited, keys(), strict=True))


# -- 5. strict settings, 7. names ---------------------------------------------------------


@pytest.mark.parametrize(
    "override, message",
    [
        ("train.grad_clip=-1", "train.grad_clip: must be a finite number in (0, inf), got -1"),
        ("train.min_lr_ratio=-3", "train.min_lr_ratio: must be a finite number in [0, 1], got -3"),
        ("train.lr=nan", "train.lr: must be a finite number in (0, inf), got nan"),
        ("train.beta2=1.5", "train.beta2: must be a finite number in [0, 1), got 1.5"),
        ("train.beta1=-0.1", "train.beta1: must be a finite number in [0, 1), got -0.1"),
        ("seed=-1", "seed: must be in [0, 2**32), got -1"),
        ("train.warmup_frac=2", "train.warmup_frac: must be a finite number in [0, 1], got 2"),
        ("model.d_model=0", "model.d_model: must be an integer in [1, inf], got 0"),
        ("sweep_name=../../x", "sweep_name: '../../x' is not a valid name"),
        ("sweep_name=..", "sweep_name: '..' is not a valid name"),
    ],
)
def test_bad_settings_are_one_line_errors_before_any_record(override, message, tmp_path):
    with pytest.raises(ConfigError) as err:
        spec_for(tmp_path, (override,))
    assert message in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    "override, message",
    [
        ("eval.limit=-5", "eval.limit: must be an integer in [1, inf], got -5"),
        ("eval.limit=0", "eval.limit: must be an integer in [1, inf], got 0"),
        ("eval.batch_size=abc", "eval.batch_size: must be an integer >= 1, 'auto' or 'auto:N'"),
        ("eval.batch_size=0", "eval.batch_size: must be an integer >= 1, 'auto' or 'auto:N'"),
        ("eval.tasks=[toy_facts@999999999999shot]", "asks for 999999999999 shots (at most 100)"),
        ("eval.n_per_task=0", "eval.n_per_task: must be an integer in [1, inf], got 0"),
        ("eval.num_checkpoints=1.5", "eval.num_checkpoints: must be an integer in [1, inf]"),
        ("validation.max_tokens=0", "validation.max_tokens: must be an integer in [1, inf], got 0"),
        ("eval.every_tokens=-100", "eval.every_tokens: must be an integer in [1, inf], got -100"),
    ],
)
def test_bad_eval_and_validation_values_are_one_line_before_any_run_folder(
    override, message, tmp_path, shared_cache, run_cli
):
    out = tmp_path / "o"
    code, _, err = run_cli("run", *tiny_overrides(shared_cache, out, tasks=True), override)
    assert code == 2 and "Traceback" not in err, err
    assert message in err.strip().splitlines()[-1]
    assert not (out / "runs").exists()  # no record, and no record-less run folder either


def test_grad_clip_null_still_means_no_clipping(tmp_path):
    assert spec_for(tmp_path, ("train.grad_clip=null",)).train.grad_clip is None


# -- 6. honest status -------------------------------------------------------------------


def _running_record(root: Path, rid: str) -> Path:
    path = root / "runs" / rid
    path.mkdir(parents=True)
    write_record(
        path,
        RunRecord(
            run_id=rid, status="running", model=ModelInfo(size="cpu-50k"), data=DataInfo(mix="toy")
        ),
    )
    return path


def _state(root: Path, rid: str) -> str:
    return {r["run_id"]: r["state"] for r in status_rows(root)}[rid]


def test_locally_killed_run_shows_interrupted(tmp_path):
    path = _running_record(tmp_path, "aaaa")
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path; "
            "from train.cache_lock import file_lock\n"
            "with file_lock(Path(sys.argv[1])):\n    print('locked', flush=True); time.sleep(600)",
            str(path / ".lock"),
        ],
        stdout=subprocess.PIPE,
        text=True,
        env=child_env(),
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert _state(tmp_path, "aaaa") == "running"  # a live process holds the run
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(timeout=60)
        assert _state(tmp_path, "aaaa") == "interrupted"
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()


def test_torn_last_log_line_is_tolerated(tmp_path):
    path = _running_record(tmp_path, "bbbb")
    (path / "train_log.jsonl").write_text('{"step": 2, "tokens": 1024}\n{"step": 4, "tok')
    row = next(r for r in status_rows(tmp_path) if r["run_id"] == "bbbb")
    assert (row["step"], row["tokens"]) == (2, 1024)


def test_fifo_and_dev_zero_records_are_skipped_not_read(tmp_path):
    _running_record(tmp_path, "good")
    (tmp_path / "runs" / "fifo").mkdir()
    os.mkfifo(tmp_path / "runs" / "fifo" / "record.json")
    (tmp_path / "runs" / "zero").mkdir()
    (tmp_path / "runs" / "zero" / "record.json").symlink_to("/dev/zero")
    # in child processes: before the fix, each hung (a FIFO open blocks; /dev/zero never ends)
    status = subprocess.run(
        [sys.executable, "-m", "harness.cli", "status", f"root={tmp_path}"],
        capture_output=True,
        text=True,
        env=child_env(),
        timeout=120,
    )
    assert status.returncode == 0, status.stderr
    assert "not a regular file" in status.stderr and "good" in status.stdout
    analysis = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from analysis.ingest.records import load_records; "
            "load_records(sys.argv[1])",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        env=child_env(),
        timeout=120,
    )
    assert "not a regular file" in analysis.stderr  # then: no complete runs, said in one line
    assert "no usable run records" in analysis.stderr


def test_sweep_name_with_dots_writes_nothing_outside_the_output_root(
    tmp_path, monkeypatch, run_cli
):
    cwd = tmp_path / "a" / "b"
    cwd.mkdir(parents=True)
    monkeypatch.chdir(cwd)
    code, _, err = run_cli("run", "sweep_name=../../escaped", "model=cpu-50k", "eval=none")
    assert (
        code == 2
        and "sweep_name: '../../escaped' is not a valid name" in err.strip().splitlines()[-1]
    )
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")) == ["a", "a/b"]


@pytest.mark.parametrize(
    "weights",
    ["{toyworld:0.5,toyworld:0.3}", "{toyworld: 0.5, code: 0.2, 'toyworld': 0.3}"],
)
def test_mix_naming_one_source_twice_is_refused(tmp_path, run_cli, weights):
    # Hydra's override parser keeps the last value of a repeated key: the mix would be
    # silently merged into another experiment than the one typed
    code, _, err = run_cli("run", f"data.weights={weights}", f"out_root={tmp_path}")
    assert code == 2 and err.strip().splitlines() == [
        f"error: data.weights: 'toyworld' is named twice in {weights}"
    ]
    assert not any(tmp_path.iterdir())
