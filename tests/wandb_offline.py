"""Read back what a W&B offline run logged, from its `run-<id>.wandb` file.

The file is a LevelDB-style log (7-byte file header ":W&B" + magic + version, then 32 KiB
blocks of records with a 7-byte header: crc32, length, type) of `wandb_internal_pb2.Record`
protobufs. wandb no longer ships a Python reader, so the tests carry this small one.
"""

from __future__ import annotations

import json
import struct
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
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        chunk = data[pos + 7:pos + 7 + length]
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


def read_offline_run(run_dir: Path) -> dict:
    """{"run": {...}, "history": [ {key: value} ], "config": {...}, "summary": {...}}."""
    from wandb.proto import wandb_internal_pb2 as pb

    path = next(Path(run_dir).glob("run-*.wandb"))
    data = path.read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B run file"
    out: dict = {"run": {}, "history": [], "config": {}, "summary": {}}
    for payload in _payloads(data):
        rec = pb.Record()
        rec.ParseFromString(payload)
        kind = rec.WhichOneof("record_type")
        if kind == "run":
            out["run"] = {"id": rec.run.run_id, "group": rec.run.run_group, "project": rec.run.project}
            out["config"].update({i.key: json.loads(i.value_json) for i in rec.run.config.update})
        elif kind == "history":
            out["history"].append({i.key or "/".join(i.nested_key): json.loads(i.value_json)
                                   for i in rec.history.item})
        elif kind == "config":
            out["config"].update({i.key: json.loads(i.value_json) for i in rec.config.update})
        elif kind == "summary":
            out["summary"].update({i.key or "/".join(i.nested_key): json.loads(i.value_json)
                                   for i in rec.summary.update})
    return out
