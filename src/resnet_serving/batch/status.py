"""``batch status``: the state of every shard under a ``batch run`` output, read from what the shards wrote.

A shard is *finished* when its ``summary.json`` exists, *running or stopped* when only its ``checkpoint.json``
does (a run in progress, or one killed and not yet resumed: the two look the same from the output), and *not
started* when neither does. The shard count comes from the folder names (``shard-00003-of-00016``), so shards
that never wrote anything are still listed. Torch-free: it only reads JSON objects.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from resnet_serving.batch.run import CHECKPOINT, SUMMARY, _named
from resnet_serving.batch.shard import shard_name
from resnet_serving.errors import NotFound, StoreError
from resnet_serving.store.objects import Location

_SHARD_FILE = re.compile(r"^shard-(\d{5})-of-(\d{5})/(summary\.json|checkpoint\.json)$")
FINISHED, RUNNING, NOT_STARTED, UNREADABLE = "finished", "running or stopped", "not started", "unreadable"


@dataclass
class ShardState:
    index: int
    count: int
    state: str
    images: int = 0
    ok: int = 0
    errors: int = 0
    images_per_s: float | None = None
    duration_s: float | None = None
    model_version: str | None = None
    problem: str = ""  # why a shard's file could not be read

    @property
    def name(self) -> str:
        return shard_name(self.index, self.count)


@dataclass
class BatchStatus:
    output: str
    counts: list[int]  # the shard counts found: more than one means runs with different --shards share the output
    shards: list[ShardState] = field(default_factory=list)

    @property
    def finished(self) -> int:
        return sum(s.state == FINISHED for s in self.shards)

    @property
    def complete(self) -> bool:
        return len(self.counts) == 1 and self.finished == len(self.shards)

    def totals(self) -> dict[str, int]:
        return {k: sum(getattr(s, k) for s in self.shards) for k in ("images", "ok", "errors")}

    def to_dict(self) -> dict[str, Any]:
        return {
            "output": self.output,
            "shard_counts": self.counts,
            "complete": self.complete,
            "finished": self.finished,
            "totals": self.totals(),
            "shards": [{"shard": s.name, **asdict(s)} for s in self.shards],
        }


def _read(sink: Location, key: str) -> tuple[dict[str, Any] | None, str]:
    """The JSON object at ``key``, or ``(None, why)`` when it is not one: a bad file is a row, not a crash."""
    try:
        data = json.loads(sink.get_bytes(key))
    except NotFound:
        return None, "deleted while reading"
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        return None, f"{key} is not JSON ({e})"
    if not isinstance(data, dict):
        return None, f"{key} is not a JSON object"
    return data, ""


def _number(data: dict[str, Any], key: str) -> int:
    v = data.get(key)
    return v if isinstance(v, int) and not isinstance(v, bool) and v >= 0 else 0


def _seconds(v: Any) -> float | None:
    """A positive finite number of seconds (or images per second), else None: a field a table can print."""
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v < float("inf")
    return float(v) if ok else None


def batch_status(sink: Location) -> BatchStatus:
    """Every shard of every shard count found under ``sink``; :class:`NotFound` when no shard wrote anything."""
    found: dict[tuple[int, int], set[str]] = {}
    try:
        for obj in sink.iter_objects():
            m = _SHARD_FILE.match(obj.key)
            if m:
                found.setdefault((int(m[1]), int(m[2])), set()).add(m[3])
    except StoreError as e:
        raise _named(e, "--output", sink.uri) from None
    counts = sorted({count for _, count in found})
    if not counts:
        raise NotFound(f"--output {sink.uri}: no batch run has written a shard there (check the bucket and prefix)")
    status = BatchStatus(sink.uri, counts)
    for count in counts:
        for index in range(count):
            status.shards.append(_shard(sink, index, count, found.get((index, count), set())))
    return status


def _shard(sink: Location, index: int, count: int, files: set[str]) -> ShardState:
    name = shard_name(index, count)
    if SUMMARY in files:
        state, key, images = FINISHED, f"{name}/{SUMMARY}", "images"
    elif CHECKPOINT in files:
        state, key, images = RUNNING, f"{name}/{CHECKPOINT}", "done"  # the checkpoint's count of inputs done
    else:
        return ShardState(index, count, NOT_STARTED)
    data, why = _read(sink, key)
    if data is None:
        return ShardState(index, count, UNREADABLE, problem=why)
    s = ShardState(index, count, state, _number(data, images), _number(data, "ok"), _number(data, "errors"))
    if state == FINISHED:
        s.images_per_s, s.duration_s = _seconds(data.get("images_per_s")), _seconds(data.get("duration_s"))
        s.model_version = str(data["model_version"]) if data.get("model_version") is not None else None
    else:
        s.duration_s = _seconds(data.get("elapsed"))
        s.images_per_s = round(s.images / s.duration_s, 2) if s.duration_s else None
    return s
