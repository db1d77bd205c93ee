"""Read back an offline wandb run (the .wandb file) so tests can check what was logged.

The file is wandb's transaction log: a 7-byte header (":W&B", magic, version), then
LevelDB-log records (crc32, length, type) in 32 KiB blocks, each record a protobuf
`wandb.proto.wandb_internal_pb2.Record`.
"""

import json
import struct
from pathlib import Path

BLOCK = 32768
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def records(path: Path):
    from wandb.proto import wandb_internal_pb2

    data = Path(path).read_bytes()
    assert data[:4] == b":W&B", "not a wandb transaction log"
    pos, pending = 7, b""
    while pos + 7 <= len(data):
        left = BLOCK - pos % BLOCK
        if left < 7:  # block trailer
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        chunk = data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind == 0 and length == 0:
            continue
        pending = chunk if kind in (FULL, FIRST) else pending + chunk
        if kind in (FULL, LAST):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            yield record


def _items(items) -> dict:
    return {(i.key or "/".join(i.nested_key)): json.loads(i.value_json) for i in items}


def read_run(run_dir: Path) -> dict:
    """{'config': {...}, 'summary': {...}, 'history': [{...}, ...], 'tags': [...],
    'deprecated': [...]} of one offline run; `deprecated` names the deprecated wandb
    features the run used, as wandb's telemetry recorded them."""
    run = {"config": {}, "summary": {}, "history": [], "tags": [], "deprecated": []}
    for record in records(next(Path(run_dir).glob("*.wandb"))):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run["config"].update(_items(record.run.config.update))
            run["tags"] = list(record.run.tags)
            run["id"] = record.run.run_id
        elif kind == "config":
            run["config"].update(_items(record.config.update))
        elif kind == "summary":
            run["summary"].update(_items(record.summary.update))
        elif kind == "history":
            run["history"].append(_items(record.history.item))
        elif kind == "telemetry":
            run["deprecated"] += [field.name for field, used in record.telemetry.deprecated.ListFields() if used]
    return run
