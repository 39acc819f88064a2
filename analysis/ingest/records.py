"""Harness run records (`<root>/runs/<run_id>/record.json`) -> the analysis table.

One row per (run, checkpoint, measurement): every validation loss, and every task metric
(`acc`, `acc_norm`, `logprob`, `bpb`, ...) with its `<metric>_stderr` when recorded.
Only `status == "complete"` records are used; others and unparseable files are skipped
with a warning naming the file. Records are parsed and validated by `RunRecord`
(common/record.py), the schema's one definition.

A task's points are pooled only when scored under one protocol (setup, shots, items, limit:
the entry's `protocol`): where a task's points differ, those under the protocol most points
share are kept and the others are left out with a warning naming run, task and steps.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis.errors import AnalysisError, warn
from analysis.ingest.table import check_structure, from_rows, task_row, val_loss_row, validate
from common.files import read_regular
from common.record import MAX_RECORD_BYTES, RunRecord


def _num(x: Any) -> float:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return float("nan")
    return v if math.isfinite(v) else float("nan")


def record_rows(rec: RunRecord | dict[str, Any]) -> list[dict[str, Any]]:
    """Rows of one record, or of a record.json object (RecordError, a ValueError, when it does
    not match the schema)."""
    if not isinstance(rec, RunRecord):
        rec = RunRecord.from_json(rec)
    model, data = rec.model, rec.data
    n_params = _num(model.n_params)
    tokens_known = (
        data.train_tokens
        if data.train_tokens is not None
        else (rec.compute.tokens if rec.compute else None)
    )
    train_tokens = _num(tokens_known)
    meta = rec.tasks_meta
    checkpoints = rec.checkpoints
    if not checkpoints:
        raise ValueError("no checkpoints")
    base = {
        "run_id": rec.run_id,
        "source": "harness",
        "sweep": rec.sweep or "",
        "corpus": data.mix or "",
        "size": model.size or "",
        "seed": rec.seed,
        "n_params": n_params,
        "n_params_nonembedding": _num(model.n_params_nonembedding),
        "train_tokens": train_tokens,
        "multiplier": train_tokens / (20.0 * n_params),
    }
    rows: list[dict[str, Any]] = []
    for i, ck in enumerate(checkpoints):
        tokens = _num(ck.tokens)
        flops = _num(ck.flops)
        if not math.isfinite(flops):
            flops = 6.0 * n_params * tokens
        cbase = {
            **base,
            "step": ck.step,
            "tokens": tokens,
            "flops": flops,
            "final": i == len(checkpoints) - 1,
        }
        for vname, loss in ck.val_loss.items():
            rows.append(val_loss_row(cbase, vname, _num(loss)))
        for tname, metrics in ck.tasks.items():
            tm = meta.get(tname) or {}
            task, _, setup = tname.partition("@")
            protocol = ck.protocol.get(tname) or {}
            n_samples = protocol.get("n_samples", tm.get("n_samples"))
            for metric, value in metrics.items():
                if metric.endswith("_stderr"):
                    continue
                rows.append(
                    {
                        **task_row(
                            cbase,
                            tname,
                            metric,
                            _num(value),
                            task=tm.get("task", task),
                            setup=tm.get("setup", setup),
                            stderr=_num(metrics.get(f"{metric}_stderr")),
                            n_samples=_num(n_samples),
                            chance=_num(tm.get("chance")),
                        ),
                        "protocol": json.dumps(protocol, sort_keys=True),  # not a column
                    }
                )
    return rows


def load_records(root: Path | str) -> pd.DataFrame:
    """All complete runs under `root/runs/*/record.json` as the analysis table."""
    root = Path(root)
    paths = sorted((root / "runs").glob("*/record.json"))
    rows: list[dict[str, Any]] = []
    for path in paths:
        where = path.relative_to(root)  # warnings land in report.md: no local path there
        try:
            raw = read_regular(path, MAX_RECORD_BYTES)  # a FIFO or /dev/zero link never hangs
            if raw is None:
                continue
            rec = RunRecord.from_json(json.loads(raw))
            if not rec.is_complete:
                warn(f"skipping {where}: status is {rec.status!r}, not 'complete'")
                continue
            these = record_rows(rec)
            # a record with two entries for one step stops itself, not the whole sweep
            check_structure(from_rows(these), str(where))
            rows.extend(these)
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            warn(f"skipping unreadable record {where}: {exc!r}")
        except AnalysisError as exc:
            warn(f"skipping record: {exc}")
    rows = one_protocol_per_task(rows)
    if not rows:
        raise AnalysisError(f"no usable run records under {root / 'runs'} ({len(paths)} found)")
    table = from_rows(rows)
    bad = table["value"].isna()
    if bad.any():
        for (run, name), _ in table[bad].groupby(["run_id", "name"]):
            warn(f"run {run}: non-numeric value for {name}; dropped")
        table = table[~bad].reset_index(drop=True)
    table["stderr"] = table["stderr"].astype(float).where(np.isfinite(table["stderr"]))
    return validate(table, "runs")  # names land in report.md: no local path


def one_protocol_per_task(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`rows` without the task points scored under another protocol than most points of their
    task (ties: the protocol of more final checkpoints, then the larger key), each left-out
    run and task said once."""
    points: dict[str, dict[str, set]] = {}
    for r in rows:
        if r["kind"] == "task":
            points.setdefault(r["name"], {}).setdefault(r.get("protocol", ""), set()).add(
                (r["run_id"], r["step"], r["final"])
            )
    keep: dict[str, str] = {}
    for name, by_protocol in points.items():
        if len(by_protocol) < 2:
            continue
        keep[name] = max(
            by_protocol,
            key=lambda k: (len(by_protocol[k]), sum(f for *_, f in by_protocol[k]), k),
        )
        for protocol, pts in sorted(by_protocol.items()):
            if protocol == keep[name]:
                continue
            for run in sorted({run for run, *_ in pts}):
                steps = sorted(step for r, step, _ in pts if r == run)
                warn(
                    f"run {run}: {name} at step(s) {steps} was scored under another protocol "
                    f"({_describe(protocol)}) than its other points ({_describe(keep[name])}); "
                    "left out: two protocols are never pooled"
                )
    return [
        r
        for r in rows
        if r["kind"] != "task" or r["name"] not in keep or r.get("protocol", "") == keep[r["name"]]
    ]


def _describe(protocol: str) -> str:
    fields = json.loads(protocol) if protocol else {}
    return ", ".join(f"{k} {v!r}" for k, v in fields.items()) or "unknown"
