"""`record.json`, the contract between a run and everything that reads it, as dataclasses.

harness/store.py is the only module that reads and writes the file; harness (runner,
backfill, status, tracking) and analysis/records.py hold a `RunRecord`, never raw keys.
It lives in `common/` because analysis reads it too and must not import the harness.

Schema versions:
  1  the first format: `compute` is `{}` until the run completes, and a block may lack keys
     that later code added (host, slurm_job_id, tasks_meta, compute.world_size, ...).
     Read leniently (a missing key becomes None); written back as the current version.
  2  the same fields, every key always present (None when unknown), `compute` null until the
     run completes. Validated strictly: a missing, unknown or mistyped key is a RecordError
     naming it, so a renamed field fails where it is read instead of silently elsewhere.
     Keys added to a block later are listed in its ADDED (compute.warmup_seconds,
     compute.warmup_steps): a record written before them lacks them and reads as None.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from common.errors import RecordError

SCHEMA_VERSION = 2
# interrupted: stopped by a signal or Ctrl-C outside SLURM (or found dead by `harness status`);
# relaunching resumes it
STATUSES = ("running", "complete", "failed", "interrupted")

_NUM = (int, float)


def _check(where: str, value: Any, types: tuple[type, ...], optional: bool = True) -> Any:
    """`value` if it has one of `types` (None allowed when optional); else a RecordError."""
    if value is None and optional:
        return None
    if isinstance(value, bool) and bool not in types or not isinstance(value, types):
        names = "/".join(t.__name__ for t in types)
        raise RecordError(f"record {where}: expected {names}, got {value!r}")
    return value


def _block(where: str, raw: Any, cls: type, strict: bool) -> dict[str, Any]:
    """The keyword arguments for dataclass `cls` from JSON object `raw`, type-checked."""
    _check(where, raw, (dict,), optional=False)
    names = {f.name: f for f in dataclasses.fields(cls)}
    if strict:
        missing = [n for n in names if n not in raw and n not in getattr(cls, "ADDED", ())]
        unknown = [k for k in raw if k not in names]
        if missing or unknown:
            what = "missing " + ", ".join(missing) if missing else "unknown " + ", ".join(unknown)
            raise RecordError(f"record {where}: {what} (schema {SCHEMA_VERSION})")
    types = cls.TYPES
    return {n: _check(f"{where}.{n}", raw.get(n), types[n]) for n in names if n in types}


def _scores(where: str, raw: Any) -> dict[str, float | None]:
    _check(where, raw, (dict,), optional=False)
    return {str(k): _check(f"{where}.{k}", v, _NUM) for k, v in raw.items()}


@dataclass
class ModelInfo:
    size: str | None = None
    n_params: int | float | None = None
    n_params_nonembedding: int | float | None = None
    d_model: int | None = None
    n_layers: int | None = None
    n_heads: int | None = None
    vocab_size: int | None = None
    seq_len: int | None = None
    TYPES = {
        "size": (str,),
        "n_params": _NUM,
        "n_params_nonembedding": _NUM,
        "d_model": (int,),
        "n_layers": (int,),
        "n_heads": (int,),
        "vocab_size": (int,),
        "seq_len": (int,),
    }


@dataclass
class DataInfo:
    mix: str | None = None
    weights: dict[str, float] | None = None
    train_tokens: int | float | None = None
    TYPES = {"mix": (str,), "weights": (dict,), "train_tokens": _NUM}


@dataclass
class Compute:
    """What training cost; written once, when the run completes."""

    flops: float | None = None
    flops_convention: str | None = None
    tokens: int | float | None = None
    steps: int | None = None
    wall_seconds: float | None = None
    train_seconds: float | None = None
    tokens_per_second: float | None = None  # steady state: after the warm-up steps
    warmup_seconds: float | None = None  # the first warmup_steps steps, compile included
    warmup_steps: int | None = None
    device: str | None = None
    torch_threads: int | None = None
    resumed_from_step: int | None = None
    peak_memory_bytes: int | None = None
    peak_memory_kind: str | None = None
    world_size: int | None = None
    TYPES = {
        "flops": _NUM,
        "flops_convention": (str,),
        "tokens": _NUM,
        "steps": (int,),
        "wall_seconds": _NUM,
        "train_seconds": _NUM,
        "tokens_per_second": _NUM,
        "warmup_seconds": _NUM,
        "warmup_steps": (int,),
        "device": (str,),
        "torch_threads": (int,),
        "resumed_from_step": (int,),
        "peak_memory_bytes": (int,),
        "peak_memory_kind": (str,),
        "world_size": (int,),
    }
    # keys added to schema 2 later: a record written before them lacks them (read as None)
    ADDED = ("warmup_seconds", "warmup_steps")


@dataclass
class CheckpointEntry:
    """One evaluated checkpoint: validation losses per set, task metrics per task."""

    step: int
    tokens: int | float | None
    flops: float | None
    val_loss: dict[str, float | None] = field(default_factory=dict)
    tasks: dict[str, dict[str, float | None]] = field(default_factory=dict)
    # why backfill could not score this checkpoint (it failed verification or loading); the
    # key is written only when set, so records without failures keep the five keys
    failure: str | None = None

    @classmethod
    def from_json(cls, raw: Any, where: str = "checkpoint", strict: bool = True) -> CheckpointEntry:
        _check(where, raw, (dict,), optional=False)
        keys = ("step", "tokens", "flops", "val_loss", "tasks")
        if strict and set(raw) - {"failure"} != set(keys):
            raise RecordError(f"record {where}: keys {sorted(raw)}, expected {list(keys)}")
        step = _check(f"{where}.step", raw.get("step"), (int,), optional=False)
        tasks = _check(f"{where}.tasks", raw.get("tasks") or {}, (dict,))
        return cls(
            step,
            _check(f"{where}.tokens", raw.get("tokens"), _NUM),
            _check(f"{where}.flops", raw.get("flops"), _NUM),
            _scores(f"{where}.val_loss", raw.get("val_loss") or {}),
            {str(t): _scores(f"{where}.tasks.{t}", m) for t, m in tasks.items()},
            _check(f"{where}.failure", raw.get("failure"), (str,)),
        )

    def to_json(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        if out["failure"] is None:
            del out["failure"]
        return out


_TOP = {
    "schema_version": (int,),
    "run_id": (str,),
    "sweep": (str,),
    "status": (str,),
    "failure": (str,),
    "config": (dict,),
    "git_sha": (str,),
    "seed": (int,),
    "host": (str,),
    "slurm_job_id": (str,),
    "model": (dict,),
    "data": (dict,),
    "compute": (dict,),
    "tasks_meta": (dict,),
    "checkpoints": (list,),
}


@dataclass
class RunRecord:
    """One run's record; `checkpoints` is in step order and its last entry is the final model
    once the run is complete."""

    run_id: str
    status: str
    model: ModelInfo
    data: DataInfo
    sweep: str | None = None
    failure: str | None = None
    config: dict[str, Any] = field(default_factory=dict)
    git_sha: str | None = None
    seed: int | None = None
    host: str | None = None
    slurm_job_id: str | None = None
    compute: Compute | None = None
    tasks_meta: dict[str, dict[str, Any]] = field(default_factory=dict)
    checkpoints: list[CheckpointEntry] = field(default_factory=list)
    schema_version: int = SCHEMA_VERSION

    @classmethod
    def from_json(cls, raw: Any) -> RunRecord:
        """Parse and validate a record.json object (schema 1 or 2); RecordError names the
        first bad key."""
        _check("", raw, (dict,), optional=False)
        version = _check("schema_version", raw.get("schema_version", 1), (int,), optional=False)
        if version not in (1, SCHEMA_VERSION):
            raise RecordError(
                f"record schema_version: {version} is not one this harness reads "
                f"(1, {SCHEMA_VERSION}); upgrade the harness"
            )
        strict = version == SCHEMA_VERSION
        if strict and set(raw) != set(_TOP):
            missing, unknown = sorted(set(_TOP) - set(raw)), sorted(set(raw) - set(_TOP))
            raise RecordError(f"record: missing keys {missing}, unknown keys {unknown} (schema 2)")
        top = {k: _check(k, raw.get(k), t) for k, t in _TOP.items()}
        for key in ("run_id", "status", "model"):
            if top[key] is None:
                raise RecordError(f"record {key}: required")
        if top["status"] not in STATUSES:
            raise RecordError(f"record status: {top['status']!r} (known: {', '.join(STATUSES)})")
        compute = top["compute"] or None  # schema 1 wrote {} until the run completed
        return cls(
            run_id=top["run_id"],
            status=top["status"],
            sweep=top["sweep"],
            failure=top["failure"],
            config=top["config"] or {},
            git_sha=top["git_sha"],
            seed=top["seed"],
            host=top["host"],
            slurm_job_id=top["slurm_job_id"],
            model=ModelInfo(**_block("model", top["model"], ModelInfo, strict)),
            data=DataInfo(**_block("data", top["data"] or {}, DataInfo, strict)),
            compute=Compute(**_block("compute", compute, Compute, strict)) if compute else None,
            tasks_meta={
                str(k): _check(f"tasks_meta.{k}", v, (dict,), optional=False)
                for k, v in (top["tasks_meta"] or {}).items()
            },
            checkpoints=[
                CheckpointEntry.from_json(c, f"checkpoints[{i}]", strict)
                for i, c in enumerate(top["checkpoints"] or [])
            ],
        )

    def to_json(self) -> dict[str, Any]:
        """The record.json object, always in the current schema, keys in a fixed order."""
        return {
            "schema_version": SCHEMA_VERSION,
            "run_id": self.run_id,
            "sweep": self.sweep,
            "status": self.status,
            "failure": self.failure,
            "config": self.config,
            "git_sha": self.git_sha,
            "seed": self.seed,
            "host": self.host,
            "slurm_job_id": self.slurm_job_id,
            "model": _plain(self.model),
            "data": _plain(self.data),
            "compute": _plain(self.compute) if self.compute else None,
            "tasks_meta": self.tasks_meta,
            "checkpoints": [c.to_json() for c in self.checkpoints],
        }

    # -- what the harness does to a record during a run --------------------------------

    @property
    def is_complete(self) -> bool:
        return self.status == "complete"

    @property
    def final(self) -> CheckpointEntry | None:
        return self.checkpoints[-1] if self.checkpoints else None

    def keep_until(self, step: int) -> None:
        """Drop entries after `step` (a resumed run evaluates them again)."""
        self.checkpoints = [c for c in self.checkpoints if c.step <= step]

    def put_checkpoint(self, entry: CheckpointEntry) -> None:
        """Add `entry`, replacing any entry at or after its step."""
        self.checkpoints = [c for c in self.checkpoints if c.step < entry.step] + [entry]

    def fail(self, reason: str) -> None:
        self.status, self.failure = "failed", reason

    def interrupt(self, reason: str) -> None:
        self.status, self.failure = "interrupted", reason

    def complete(self, compute: Compute) -> None:
        self.status, self.failure, self.compute = "complete", None, compute

    # -- what the record says about its config -----------------------------------------

    def config_block(self, key: str) -> dict[str, Any]:
        """A block of the resolved config (`sources`, `model`, ...); RecordError if absent."""
        block = self.config.get(key)
        if not isinstance(block, dict):
            raise RecordError(f"record config.{key}: missing (run {self.run_id})")
        return block


def _plain(block: Any) -> dict[str, Any]:
    return {f.name: getattr(block, f.name) for f in dataclasses.fields(block)}
