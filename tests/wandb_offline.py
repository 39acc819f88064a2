"""Read back what a W&B offline run logged, from its `run-<id>.wandb` file.

The file is a LevelDB-style log (7-byte file header ":W&B" + magic + version, then 32 KiB
blocks of records with a 7-byte header: crc32, length, type) of `wandb_internal_pb2.Record`
protobufs. wandb no longer ships a Python reader, so the tests carry this small one.
"""

from __future__ import annotations

import json
import struct
import time
from pathlib import Path

BLOCK = 32768
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def _payloads(data: bytes):
    pos, buf = 7, b""
    while pos + 7 <= len(data):
        left = BLOCK - pos % BLOCK
        if left < 7:  # block trailer padding
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        chunk = data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind == FULL:
            yield chunk
        elif kind == FIRST:
            buf = chunk
        elif kind == MIDDLE:
            buf += chunk
        elif kind == LAST:
            yield buf + chunk
        elif length == 0:
            break


def read_offline_run(run_dir: Path, wait_s: float = 30.0) -> dict:
    """{"run": {...}, "history": [ {key: value} ], "config": {...}, "summary": {...},
    "artifacts": [{"type", "name", "files": {path: size}}]}.

    wandb's service process writes the file asynchronously and may still be flushing when
    `finish()` has returned on a loaded machine, so wait (bounded) until the run record and
    the final summary are both there.
    """
    deadline = time.time() + wait_s
    while True:
        out = _read(Path(run_dir))
        # a training run ends with a summary; an analysis run with its artifact
        if (out["run"] and (out["summary"] or out["artifacts"])) or time.time() > deadline:
            return out
        time.sleep(0.5)


def _read(run_dir: Path) -> dict:
    from wandb.proto import wandb_internal_pb2 as pb

    out: dict = {"run": {}, "history": [], "config": {}, "summary": {}, "artifacts": []}
    paths = list(run_dir.glob("run-*.wandb"))
    if not paths:
        return out
    path = paths[0]
    data = path.read_bytes()
    if data[:4] != b":W&B":
        return out
    for payload in _payloads(data):
        rec = pb.Record()
        rec.ParseFromString(payload)
        kind = rec.WhichOneof("record_type")
        if kind == "run":
            out["run"] = {
                "id": rec.run.run_id,
                "group": rec.run.run_group,
                "project": rec.run.project,
            }
            out["config"].update({i.key: json.loads(i.value_json) for i in rec.run.config.update})
        elif kind == "history":
            out["history"].append(
                {
                    i.key or "/".join(i.nested_key): json.loads(i.value_json)
                    for i in rec.history.item
                }
            )
        elif kind == "config":
            out["config"].update({i.key: json.loads(i.value_json) for i in rec.config.update})
        elif kind == "artifact":
            art = rec.artifact
            files = {e.path: e.size for e in art.manifest.contents}
            out["artifacts"].append({"type": art.type, "name": art.name, "files": files})
        elif kind == "summary":
            out["summary"].update(
                {
                    i.key or "/".join(i.nested_key): json.loads(i.value_json)
                    for i in rec.summary.update
                }
            )
    return out
