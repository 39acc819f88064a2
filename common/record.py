"""`record.json`, the contract between a run and everything that reads it, as dataclasses.

harness/store.py is the only module that reads and writes the file; harness (runner,
backfill, status, tracking) and analysis/ingest/records.py hold a `RunRecord`, never raw keys.
It lives in `common/` because analysis reads it too and must not import the harness.

Schema versions:
  1  the first format: `compute` is `{}` until the run completes, and a block may lack keys
     that later code added (host, slurm_job_id, tasks_meta, compute.world_size, ...).
     Read leniently (a missing key becomes None); written back as the current version.
  2  the same fields, every key always present (None when unknown), `compute` null until the
     run completes. Validated strictly: a missing, unknown or mistyped key is a RecordError
     naming it, so a renamed field fails where it is read instead of silently elsewhere.
  3  each checkpoint entry also holds `protocol`: per task scored there, the evaluation
     protocol it was scored with ({setup, num_fewshot, n_samples, limit}), so a resume or a
     backfill under another `eval.limit` or shot count never passes for the same measurement.
     Schema 1 and 2 entries get the protocol those records claimed for every checkpoint:
     `tasks_meta` and the config's `eval.limit` (unknown fields None).
  Keys added to a block later are listed in its ADDED (compute.warmup_seconds,
  compute.warmup_steps, data.available_tokens, data.epochs): a record written before them
  lacks them and reads as None.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from common.errors import RecordError
from common.fields import field_kwargs

SCHEMA_VERSION = 3
READABLE_VERSIONS = (1, 2, 3)
# interrupted: stopped by a signal or Ctrl-C outside SLURM (or found dead by `harness status`);
# relaunching resumes it
STATUSES = ("running", "complete", "failed", "interrupted")

_NUM = (int, float)
# a record holds a few hundred checkpoint entries at most; anything far larger is not one (the
# readers, harness/store.py and analysis/ingest/records.py, skip it unread)
MAX_RECORD_BYTES = 64 << 20


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
    if strict:  # schema 1 blocks, and blocks older than a key in ADDED, may lack keys
        optional = getattr(cls, "ADDED", ())
        field_kwargs(cls, raw, f"record {where}", RecordError, require_all=True, optional=optional)
    # every record block class defines TYPES (field -> accepted types); `type` does not say so
    types: dict[str, tuple[type, ...]] = cls.TYPES  # type: ignore[attr-defined]
    return {n: _check(f"{where}.{n}", raw.get(n), types[n]) for n in names if n in types}


def _scores(where: str, raw: Any) -> dict[str, float | None]:
    _check(where, raw, (dict,), optional=False)
    return {str(k): _check(f"{where}.{k}", v, _NUM) for k, v in raw.items()}


# what a task's score depends on besides the model: its evaluation setup (variant), few-shot
# count, the number of items scored and the `eval.limit` that capped them
PROTOCOL_TYPES = {"setup": (str,), "num_fewshot": (int,), "n_samples": (int,), "limit": _NUM}


def task_protocol(meta: dict[str, Any], limit: int | float | None) -> dict[str, Any]:
    """The protocol of a task from its `tasks_meta` entry and the run's `eval.limit`."""
    return {
        "setup": meta.get("setup"),
        "num_fewshot": meta.get("num_fewshot"),
        "n_samples": meta.get("n_samples"),
        "limit": limit,
    }


def _or_none(value: Any, key: str) -> Any:
    """`value` if it has the protocol field's type, else None (unknown)."""
    ok = isinstance(value, PROTOCOL_TYPES[key]) and not isinstance(value, bool)
    return value if ok else None


def _protocols(where: str, raw: Any) -> dict[str, dict[str, Any]]:
    _check(where, raw, (dict,), optional=False)
    out = {}
    for task, p in raw.items():
        _check(f"{where}.{task}", p, (dict,), optional=False)
        if set(p) != set(PROTOCOL_TYPES):
            raise RecordError(
                f"record {where}.{task}: keys {sorted(p)}, expected {list(PROTOCOL_TYPES)}"
            )
        out[str(task)] = {
            k: _check(f"{where}.{task}.{k}", p[k], t) for k, t in PROTOCOL_TYPES.items()
        }
    return out


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
    # per source of the mix: tokens in its train split, and the epochs train_tokens imply
    available_tokens: dict[str, int | None] | None = None
    epochs: dict[str, float | None] | None = None
    TYPES = {
        "mix": (str,),
        "weights": (dict,),
        "train_tokens": _NUM,
        "available_tokens": (dict,),
        "epochs": (dict,),
    }
    # keys added to schema 3 later: a record written before them lacks them (read as None)
    ADDED = ("available_tokens", "epochs")


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
    # key is written only when set, so records without failures keep the six keys
    failure: str | None = None
    # per task in `tasks`: the protocol it was scored with (task_protocol; schema 3)
    protocol: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def from_json(
        cls,
        raw: Any,
        where: str = "checkpoint",
        strict: bool = True,
        version: int = SCHEMA_VERSION,
    ) -> CheckpointEntry:
        """One entry; before schema 3 its `protocol` is left empty (the record fills it)."""
        _check(where, raw, (dict,), optional=False)
        keys: tuple[str, ...] = ("step", "tokens", "flops", "val_loss", "tasks")
        keys += ("protocol",) if version >= 3 else ()
        if strict and set(raw) - {"failure"} != set(keys):
            raise RecordError(f"record {where}: keys {sorted(raw)}, expected {list(keys)}")
        step = _check(f"{where}.step", raw.get("step"), (int,), optional=False)
        tasks = _check(f"{where}.tasks", raw.get("tasks") or {}, (dict,))
        protocol = _protocols(f"{where}.protocol", raw.get("protocol") or {})
        return cls(
            step,
            _check(f"{where}.tokens", raw.get("tokens"), _NUM),
            _check(f"{where}.flops", raw.get("flops"), _NUM),
            _scores(f"{where}.val_loss", raw.get("val_loss") or {}),
            {str(t): _scores(f"{where}.tasks.{t}", m) for t, m in tasks.items()},
            _check(f"{where}.failure", raw.get("failure"), (str,)),
            protocol,
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
        """Parse and validate a record.json object (schema 1, 2 or 3); RecordError names the
        first bad key."""
        _check("", raw, (dict,), optional=False)
        version = _check("schema_version", raw.get("schema_version", 1), (int,), optional=False)
        if version not in READABLE_VERSIONS:
            raise RecordError(
                f"record schema_version: {version} is not one this harness reads "
                f"({', '.join(map(str, READABLE_VERSIONS))}); upgrade the harness"
            )
        strict = version >= 2
        if strict and set(raw) != set(_TOP):
            missing, unknown = sorted(set(_TOP) - set(raw)), sorted(set(raw) - set(_TOP))
            raise RecordError(
                f"record: missing keys {missing}, unknown keys {unknown} (schema {version})"
            )
        top = {k: _check(k, raw.get(k), t) for k, t in _TOP.items()}
        for key in ("run_id", "status", "model"):
            if top[key] is None:
                raise RecordError(f"record {key}: required")
        if top["status"] not in STATUSES:
            raise RecordError(f"record status: {top['status']!r} (known: {', '.join(STATUSES)})")
        compute = top["compute"] or None  # schema 1 wrote {} until the run completed
        record = cls(
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
                CheckpointEntry.from_json(c, f"checkpoints[{i}]", strict, version)
                for i, c in enumerate(top["checkpoints"] or [])
            ],
        )
        if version < 3:
            record.fill_legacy_protocols()
        return record

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

    def fill_legacy_protocols(self) -> None:
        """Schema 1/2 entries: the protocol the record claimed for all of them (its tasks_meta
        and eval.limit); a task without metadata gets only its setup, from its name."""
        ev = self.config.get("eval")
        limit = ev.get("limit") if isinstance(ev, dict) else None
        for entry in self.checkpoints:
            for task in entry.tasks:
                meta = self.tasks_meta.get(task) or {"setup": task.partition("@")[2]}
                legacy = task_protocol(meta, limit)
                entry.protocol.setdefault(task, {k: _or_none(v, k) for k, v in legacy.items()})

    def protocol_changes(self, protocols: dict[str, dict[str, Any]]) -> list[str]:
        """One line per task whose entries were scored under another protocol than the one
        `protocols` gives it ("toy_facts: steps [4, 8] n_samples 20, limit 20; now 100, 100")."""
        lines = []
        for task, new in protocols.items():
            old = [e for e in self.checkpoints if e.protocol.get(task, new) != new]
            if not old:
                continue
            was = old[0].protocol[task]
            keys = [k for k in PROTOCOL_TYPES if was.get(k) != new.get(k)]
            lines.append(
                f"{task}: step(s) {[e.step for e in old]} scored with "
                + ", ".join(f"{k} {was.get(k)!r}" for k in keys)
                + "; now "
                + ", ".join(f"{new.get(k)!r}" for k in keys)
            )
        return lines

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
