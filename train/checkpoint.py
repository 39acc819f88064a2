"""Checkpoints: a Hugging Face model directory plus the trainer state to resume from.

`checkpoints/step_<N>/` holds `model.safetensors` + config + tokenizer files (loadable by
`AutoModelForCausalLM.from_pretrained`), `trainer_state.pt` (optimizer, scheduler, RNG,
step) and, written last, `manifest.json` listing every file's size and sha256. A directory
without a manifest, or whose files disagree with it, is incomplete: it is skipped and the
previous checkpoint is used.

The resume decision (`plan_resume`) and the loading of saved weights (`load_weights`) live
here and only here: the runner, the training loop and backfill all go through them.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import random
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file
from transformers import PreTrainedModel

from common.atomic import shareable, write_json
from common.errors import DataError

MANIFEST = "manifest.json"
STATE = "trainer_state.pt"
WEIGHTS = "model.safetensors"
# The one parameter a checkpoint may lack: save_pretrained drops the output matrix when it is
# tied to the embedding (tie_weights restores it). Any other gap is a different model.
TIED_HEAD = "lm_head.weight"


_HASHED: dict[tuple, str] = {}


def _sha256(path: Path) -> str:
    """The file's sha256, hashed once per process: cached by (path, size, mtime, ctime, inode),
    so a file changed since (even at the same size, its mtime set back) is hashed again."""
    st = os.stat(path)
    key = (str(Path(path).resolve()), st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)
    if key not in _HASHED:
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
        _HASHED[key] = h.hexdigest()
    return _HASHED[key]


def rng_state() -> dict[str, Any]:
    """RNG states as plain lists and tensors, so the state file loads with weights_only=True."""
    # the legacy (default) form is this tuple; numpy's stub also allows the dict form
    legacy = cast(tuple[str, np.ndarray, int, int, float], np.random.get_state())
    kind, keys, pos, has_gauss, gauss = legacy
    state = {
        "python": random.getstate(),
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(
    ckpt_root: Path,
    step: int,
    model,
    tokenizer,
    trainer_state: dict[str, Any],
    extra_dirs: dict[str, Path] | None = None,
) -> Path:
    """Write `step_<step>/` into a temporary directory, then rename it into place.

    extra_dirs: directories written elsewhere (the ranks' sharded optimizer state, FSDP) moved
    in under the given names before the manifest, which lists their files too."""
    ckpt_root.mkdir(parents=True, exist_ok=True)
    final = ckpt_root / f"step_{step}"
    tmp = Path(tempfile.mkdtemp(prefix=f".step_{step}.", dir=ckpt_root))
    shareable(tmp, is_dir=True)
    try:
        try:
            model.save_pretrained(tmp, safe_serialization=True)
            tokenizer.save_pretrained(tmp)
            torch.save(trainer_state, tmp / STATE)
        except Exception as err:
            if not _disk_full(err, tmp):
                raise
            # safetensors and torch.save report a full disk in their own types: say it as
            # the OSError the runner records as "disk full" (and the sweep goes on)
            raise OSError(
                errno.ENOSPC, f"No space left on device while saving checkpoint step_{step}"
            ) from None
        for name, src in (extra_dirs or {}).items():
            Path(src).rename(tmp / name)
        written = sorted(p for p in tmp.rglob("*") if p.is_file())
        files = {
            p.relative_to(tmp).as_posix(): {"bytes": p.stat().st_size, "sha256": _sha256(p)}
            for p in written
        }
        write_json(tmp / MANIFEST, {"step": step, "files": files})
        for p in [*written, tmp / MANIFEST]:
            with open(p, "rb") as fh:
                os.fsync(fh.fileno())
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return final


# What a full disk looks like from the writers save_checkpoint calls: safetensors' Rust
# error (`Os { code: 28, kind: StorageFull }`); torch.save's is asked of the filesystem.
_FULL_DISK_TEXT = ("no space left", "storagefull", "code: 28", "os error 28", "disk quota")
_LOW_SPACE_BYTES = 1 << 20


def _disk_full(err: BaseException, where: Path) -> bool:
    """Whether `err`, raised while writing into `where`, means the disk is full."""
    if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    text = str(err).lower()
    if any(t in text for t in _FULL_DISK_TEXT):
        return True
    # torch.save's messages name no cause ("file write failed", "iostream error", "unexpected
    # pos"): ask the filesystem, which the partial files still fill (the temporary folder is
    # removed only after this)
    try:
        st = os.statvfs(where)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < _LOW_SPACE_BYTES


def verify_checkpoint(path: Path, deep: bool = True) -> str | None:
    """None when `path` is a complete checkpoint, else the reason it is not."""
    manifest = path / MANIFEST
    if not manifest.exists():
        return "no manifest (interrupted while saving)"
    try:
        files = json.loads(manifest.read_text())["files"]
    except (json.JSONDecodeError, KeyError):
        return "unreadable manifest"
    for name, meta in files.items():
        f = path / name
        if not f.exists():
            return f"missing file {name}"
        if f.stat().st_size != meta["bytes"]:
            return f"file {name} has {f.stat().st_size} bytes, manifest says {meta['bytes']}"
        if deep and _sha256(f) != meta["sha256"]:
            return f"file {name} does not match its sha256"
    return None


def checkpoint_steps(ckpt_root: Path) -> list[int]:
    """Steps of all checkpoint directories (complete or not), ascending."""
    if not ckpt_root.exists():
        return []
    steps = []
    for p in ckpt_root.iterdir():
        if p.is_dir() and p.name.startswith("step_") and p.name[5:].isdigit():
            steps.append(int(p.name[5:]))
    return sorted(steps)


def latest_complete(ckpt_root: Path, log=print, deep: bool = True) -> Path | None:
    """The newest checkpoint that verifies; broken newer ones are reported and skipped.

    deep=False checks the manifest and file sizes only, without hashing the files (cheap
    enough to ask before the loop, which hashes when it actually restores).
    """
    for step in reversed(checkpoint_steps(ckpt_root)):
        path = ckpt_root / f"step_{step}"
        reason = verify_checkpoint(path, deep=deep)
        if reason is None:
            return path
        log(f"warning: skipping checkpoint {path}: {reason}")
    return None


@dataclass(frozen=True)
class ResumePlan:
    """Where a run starts: the newest checkpoint that verified (hashes included) and whose
    trainer state loads (weights_only), or nothing. `trainer_state` is that state, read once."""

    checkpoint: Path | None
    trainer_state: dict[str, Any] | None = field(default=None, compare=False, repr=False)

    @property
    def step(self) -> int:
        """The step training continues after (0: from scratch)."""
        return checkpoint_step(self.checkpoint) if self.checkpoint is not None else 0


def plan_resume(ckpt_root: Path, log=print, model: torch.nn.Module | None = None) -> ResumePlan:
    """Decide, once per run and process, which checkpoint the run resumes from: files are
    hashed here, so the loop restores exactly what the runner planned its record around. A
    checkpoint whose trainer state is refused by the safe loader (e.g. a pickle that would run
    code), or whose weights are named other than `model`'s parameters, is skipped like a
    damaged one, and the previous good checkpoint is used."""
    for step in reversed(checkpoint_steps(ckpt_root)):
        path = ckpt_root / f"step_{step}"
        reason = verify_checkpoint(path, deep=True)
        if reason is None and model is not None:
            reason = weights_mismatch(model, path)
        if reason is None:
            try:
                return ResumePlan(path, load_trainer_state(path))
            except Exception as err:  # noqa: BLE001 - UnpicklingError, RuntimeError, EOFError alike
                reason = f"trainer state does not load safely ({type(err).__name__})"
        log(f"warning: skipping checkpoint {path}: {reason}")
    return ResumePlan(None)


def checkpoint_step(path: Path) -> int:
    """The step of a `step_<N>` checkpoint directory."""
    return int(Path(path).name.split("_")[1])


def weights_mismatch(model: torch.nn.Module, checkpoint: Path) -> str | None:
    """None when the tensors saved in `checkpoint` are exactly `model`'s (the tied head aside),
    else what differs. Reads the file's header only. Without this, tensors under other names
    (another transformers version's layout) would leave layers at their random init."""
    with safe_open(Path(checkpoint) / WEIGHTS, framework="pt") as fh:
        saved = set(fh.keys())
    expected = set(model.state_dict())
    may_lack = {TIED_HEAD} if getattr(model.config, "tie_word_embeddings", False) else set()
    missing = sorted(expected - saved - may_lack)
    unexpected = sorted(saved - expected)
    if not missing and not unexpected:
        return None
    parts = [
        f"{what} {len(keys)} tensor(s) (first: {keys[0]})"
        for what, keys in (("lacks", missing), ("has unexpected", unexpected))
        if keys
    ]
    return "weights do not match the model: " + "; ".join(parts)


def checked_weights(model: torch.nn.Module, checkpoint: Path) -> Path:
    """The weights file of `checkpoint`, once it is known to fit `model`: only the tied output
    matrix may be absent from the file; any other missing or unexpected tensor is a
    DataError."""
    problem = weights_mismatch(model, checkpoint)
    if problem is not None:
        raise DataError(f"checkpoint '{checkpoint}' does not load: {problem}")
    return Path(checkpoint) / WEIGHTS


def load_weights(model: PreTrainedModel, checkpoint: Path) -> PreTrainedModel:
    """Load the weights saved in `checkpoint` into `model` (built with the same config), checked
    by `checked_weights`. A model sharded by FSDP2 (DTensor parameters) is loaded by
    train.fsdp (`ShardedRun.restore`: each rank keeps its shard), never here."""
    weights = checked_weights(model, checkpoint)
    if _is_sharded(model):
        raise TypeError("load_weights: the model is sharded; train.fsdp loads sharded weights")
    # strict=False only for the tied head, which checked_weights allowed above
    model.load_state_dict(load_file(weights), strict=False)
    if model.config.tie_word_embeddings:
        model.tie_weights()
    return model


def _is_sharded(model: torch.nn.Module) -> bool:
    try:
        from torch.distributed.tensor import DTensor
    except ImportError:  # a torch built without distributed support cannot have shards
        return False
    return any(isinstance(p, DTensor) for p in model.parameters())


def load_trainer_state(path: Path) -> dict[str, Any]:
    # weights_only: a checkpoint from elsewhere can never run code when it is loaded.
    return torch.load(path / STATE, map_location="cpu", weights_only=True)


def prune_checkpoints(ckpt_root: Path, keep: int, protect: set[int]) -> None:
    """Delete all but the newest `keep` checkpoints, never those in `protect`."""
    if keep <= 0:
        return
    steps = checkpoint_steps(ckpt_root)
    for step in steps[:-keep]:
        if step not in protect:
            shutil.rmtree(ckpt_root / f"step_{step}", ignore_errors=True)
