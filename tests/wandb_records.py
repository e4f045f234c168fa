"""Reading a W&B offline run file (`run-*.wandb`) back, to check what was logged.

The file is a LevelDB-style log (32 KiB blocks of records with a 7-byte header: crc32, length,
type FULL/FIRST/MIDDLE/LAST) after a 7-byte file header; each record is a `wandb.proto` Record.
wandb ships no Python reader for it any more, so the tests carry this small one.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

from wandb.proto import wandb_internal_pb2

BLOCK = 32768
HEADER = 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def read_records(path: Path) -> list:
    data = Path(path).read_bytes()
    ident, magic, version = struct.unpack("<4sHB", data[:HEADER])
    assert ident == b":W&B" and magic == 0xBEE1, "not a W&B run file"
    records, pending, offset = [], b"", HEADER
    while offset + HEADER <= len(data):
        left_in_block = BLOCK - offset % BLOCK
        if left_in_block < HEADER:
            offset += left_in_block
            continue
        _, length, kind = struct.unpack("<IHB", data[offset : offset + HEADER])
        if kind == 0 and length == 0:
            break
        payload = data[offset + HEADER : offset + HEADER + length]
        offset += HEADER + length
        if kind == FULL:
            pending = payload
        elif kind == FIRST:
            pending = payload
            continue
        elif kind == MIDDLE:
            pending += payload
            continue
        elif kind == LAST:
            pending += payload
        record = wandb_internal_pb2.Record()
        record.ParseFromString(pending)
        records.append(record)
    return records


def history(path: Path) -> list[dict]:
    """Each logged row: {"_step": step, key: value, ...}."""
    rows = []
    for record in read_records(path):
        if record.WhichOneof("record_type") == "history":
            row = {item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in record.history.item}
            row["_step"] = record.history.step.num if record.history.HasField("step") else row.get("_step")
            rows.append(row)
    return rows
