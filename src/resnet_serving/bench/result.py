"""The bench's report, ``bench.json``: one typed object, written by ``bench`` and read by ``plan`` and
``sagemaker deploy``.

The file is the JSON ``resnet-serving bench`` has always written (``tests/fixtures/bench-*.json``).
:class:`BenchReport` names what is read outside the bench: the machine, the serving configuration, the raw
forward pass by batch size, the served levels with their rounds, and memory. Every field it does not name
stays in its section's ``extra``, and each section keeps its keys' order, so a report read and written again is
the same JSON.

:meth:`BenchReport.load` (and :meth:`BenchReport.parse` for parsed JSON) refuses a missing or malformed report
with an :class:`~resnet_serving.errors.InputError` (exit 2) that names the file and the field, and says how to
make one. This module imports neither torch nor boto3: ``plan`` and ``sagemaker deploy`` read reports with it.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from resnet_serving.errors import InputError
from resnet_serving.files import atomic_write_text

MAKE_ONE = "run `resnet-serving bench --out bench-results` to make one"

#: What every served level must have, each a positive number.
SERVED_FIELDS = ("concurrency", "img_s", "p50_ms", "p95_ms", "p99_ms")

Extra = Mapping[str, Any]


def _emit(order: Iterable[str], named: Mapping[str, Any], extra: Extra) -> dict[str, Any]:
    """A section's JSON object: its named fields (those that are set) and its extra ones, in ``order``."""
    values = {**extra, **{k: v for k, v in named.items() if v is not None}}
    keys = [k for k in order if k in values]
    return {k: values[k] for k in [*keys, *(k for k in values if k not in keys)]}


def _rest(data: Mapping[str, Any], named: Iterable[str]) -> dict[str, Any]:
    skip = set(named)
    return {k: v for k, v in data.items() if k not in skip}


@dataclass(frozen=True)
class Payload:
    """The image the load generator sent."""

    bytes: int
    file: str | None = None
    extra: Extra = field(default_factory=dict)
    order: tuple[str, ...] = field(default=(), compare=False, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return _emit(self.order, {"file": self.file, "bytes": self.bytes}, self.extra)


@dataclass(frozen=True)
class Environment:
    """The machine the bench ran on. ``cpus_available`` counts the load generator's share too."""

    cpus_available: int
    payload: Payload
    device: str | None = None
    extra: Extra = field(default_factory=dict)
    order: tuple[str, ...] = field(default=(), compare=False, repr=False)

    def to_dict(self) -> dict[str, Any]:
        named = {"device": self.device, "cpus_available": self.cpus_available, "payload": self.payload.to_dict()}
        return _emit(self.order, named, self.extra)


@dataclass(frozen=True)
class ServingConfig:
    """The serving configuration the served figures belong to (``serve_config``)."""

    workers: int
    torch_threads_per_worker: int
    batch_size: int
    max_batch_delay_ms: int | None = None
    extra: Extra = field(default_factory=dict)
    order: tuple[str, ...] = field(default=(), compare=False, repr=False)

    def to_dict(self) -> dict[str, Any]:
        named = {
            "workers": self.workers,
            "torch_threads_per_worker": self.torch_threads_per_worker,
            "batch_size": self.batch_size,
            "max_batch_delay_ms": self.max_batch_delay_ms,
        }
        return _emit(self.order, named, self.extra)


@dataclass(frozen=True)
class RawForward:
    """The raw forward pass in the serving layout (``raw``): images/s by batch size, summed over the workers."""

    img_s_by_batch: Mapping[int, float]
    graph: str | None = None  # what ran the forward pass; older reports do not say (eager)
    extra: Extra = field(default_factory=dict)
    order: tuple[str, ...] = field(default=(), compare=False, repr=False)

    def to_dict(self) -> dict[str, Any]:
        by_batch = {str(bs): rate for bs, rate in self.img_s_by_batch.items()}
        return _emit(self.order, {"graph": self.graph, "img_s_by_batch": by_batch}, self.extra)


@dataclass(frozen=True)
class Round:
    """One measuring window of a served level (``--repeat`` runs several)."""

    img_s: float
    p99_ms: float
    extra: Extra = field(default_factory=dict)
    order: tuple[str, ...] = field(default=(), compare=False, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return _emit(self.order, {"img_s": self.img_s, "p99_ms": self.p99_ms}, self.extra)


@dataclass(frozen=True)
class Level:
    """One served concurrency level (one image per request, so img/s is requests/s): the round with the median
    ratio to raw, with every round in ``rounds`` when the bench ran several."""

    concurrency: int
    img_s: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    failed: int | None = None
    ratio_to_raw: float | None = None
    rounds: tuple[Round, ...] | None = None
    extra: Extra = field(default_factory=dict)
    order: tuple[str, ...] = field(default=(), compare=False, repr=False)

    @property
    def median_img_s(self) -> float:
        """Throughput: the median over the rounds when the bench ran several (``--repeat``)."""
        return float(statistics.median(float(x.img_s) for x in (self.rounds or (self,))))

    @property
    def median_p99_ms(self) -> float:
        """p99: the median over the rounds (one round's p99 rests on its one or two slowest requests)."""
        return float(statistics.median(float(x.p99_ms) for x in (self.rounds or (self,))))

    def to_dict(self) -> dict[str, Any]:
        named = {
            "concurrency": self.concurrency,
            "img_s": self.img_s,
            "p50_ms": self.p50_ms,
            "p95_ms": self.p95_ms,
            "p99_ms": self.p99_ms,
            "failed": self.failed,
            "ratio_to_raw": self.ratio_to_raw,
            "rounds": None if self.rounds is None else [r.to_dict() for r in self.rounds],
        }
        return _emit(self.order, named, self.extra)


@dataclass(frozen=True)
class Memory:
    """Resident memory of the served processes, in MB."""

    frontend_rss_mb: float | None = None
    worker_rss_mb: tuple[float, ...] | None = None
    extra: Extra = field(default_factory=dict)
    order: tuple[str, ...] = field(default=(), compare=False, repr=False)

    def to_dict(self) -> dict[str, Any]:
        workers = None if self.worker_rss_mb is None else list(self.worker_rss_mb)
        return _emit(self.order, {"frontend_rss_mb": self.frontend_rss_mb, "worker_rss_mb": workers}, self.extra)


@dataclass(frozen=True)
class BenchReport:
    """A ``bench.json``. ``extra`` holds the sections only the bench's own reports read (pipeline, gap split,
    cold start, baseline, targets, ...)."""

    environment: Environment
    serve_config: ServingConfig
    raw: RawForward
    served: tuple[Level, ...]
    memory: Memory | None = None
    extra: Extra = field(default_factory=dict)
    order: tuple[str, ...] = field(default=(), compare=False, repr=False)

    @classmethod
    def load(cls, path: str | Path) -> BenchReport:
        """Read and check a ``bench.json``; refuses (InputError, exit 2) when it is missing or malformed."""
        p = Path(path)
        if not p.is_file():
            raise InputError(f"no bench file at {p}: {MAKE_ONE}")
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise InputError(f"{p} is not a readable JSON bench file ({e}): {MAKE_ONE}") from e
        return cls.parse(data, source=p)

    @classmethod
    def parse(cls, data: Any, source: str | Path | None = None) -> BenchReport:
        """A parsed ``bench.json`` (``source``: where it came from, for the message), checked field by field."""
        problem = _problem(data)
        if problem:
            where = f"{source} is not" if source is not None else "not"
            raise InputError(f"{where} a bench.json written by `resnet-serving bench` ({problem}): {MAKE_ONE}")
        return cls.of(data)

    @classmethod
    def of(cls, data: Mapping[str, Any]) -> BenchReport:
        """The report the bench has just measured, unchecked: it is written whatever it measured (a level whose
        requests all failed included); :meth:`parse` is what refuses such a report for planning."""
        env, cfg, raw = data["environment"], data["serve_config"], data["raw"]
        payload = env["payload"]
        memory = data.get("memory")
        return cls(
            environment=Environment(
                cpus_available=env["cpus_available"],
                payload=Payload(
                    bytes=payload["bytes"],
                    file=payload.get("file"),
                    extra=_rest(payload, ("file", "bytes")),
                    order=tuple(payload),
                ),
                device=env.get("device"),
                extra=_rest(env, ("device", "cpus_available", "payload")),
                order=tuple(env),
            ),
            serve_config=ServingConfig(
                workers=cfg["workers"],
                torch_threads_per_worker=cfg["torch_threads_per_worker"],
                batch_size=cfg["batch_size"],
                max_batch_delay_ms=cfg.get("max_batch_delay_ms"),
                extra=_rest(cfg, ("workers", "torch_threads_per_worker", "batch_size", "max_batch_delay_ms")),
                order=tuple(cfg),
            ),
            raw=RawForward(
                img_s_by_batch={int(bs): rate for bs, rate in raw["img_s_by_batch"].items()},
                graph=raw.get("graph"),
                extra=_rest(raw, ("img_s_by_batch", "graph")),
                order=tuple(raw),
            ),
            served=tuple(_level(r) for r in data["served"]),
            memory=None
            if memory is None
            else Memory(
                frontend_rss_mb=memory.get("frontend_rss_mb"),
                worker_rss_mb=None if memory.get("worker_rss_mb") is None else tuple(memory["worker_rss_mb"]),
                extra=_rest(memory, ("frontend_rss_mb", "worker_rss_mb")),
                order=tuple(memory),
            ),
            extra=_rest(data, ("environment", "serve_config", "raw", "served", "memory")),
            order=tuple(data),
        )

    def to_dict(self) -> dict[str, Any]:
        """The ``bench.json`` document."""
        named = {
            "environment": self.environment.to_dict(),
            "serve_config": self.serve_config.to_dict(),
            "raw": self.raw.to_dict(),
            "served": [r.to_dict() for r in self.served],
            "memory": None if self.memory is None else self.memory.to_dict(),
        }
        return _emit(self.order, named, self.extra)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, default=str) + "\n"

    def write(self, path: str | Path) -> None:
        """``bench.json`` at ``path``, complete or absent (:mod:`resnet_serving.files`)."""
        atomic_write_text(path, self.to_json())


def _level(r: Mapping[str, Any]) -> Level:
    named = ("concurrency", "img_s", "p50_ms", "p95_ms", "p99_ms", "failed", "ratio_to_raw", "rounds")
    rounds = r.get("rounds")
    return Level(
        concurrency=r["concurrency"],
        img_s=r["img_s"],
        p50_ms=r["p50_ms"],
        p95_ms=r["p95_ms"],
        p99_ms=r["p99_ms"],
        failed=r.get("failed"),
        ratio_to_raw=r.get("ratio_to_raw"),
        rounds=None
        if rounds is None
        else tuple(
            Round(img_s=x["img_s"], p99_ms=x["p99_ms"], extra=_rest(x, ("img_s", "p99_ms")), order=tuple(x))
            for x in rounds
        ),
        extra=_rest(r, named),
        order=tuple(r),
    )


def _number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _positive(x: Any) -> bool:
    return _number(x) and x > 0


def _problem(data: Any) -> str | None:
    """The first thing wrong with a parsed bench report, naming the field, or None."""
    if not isinstance(data, dict):
        return "the top level is not an object"
    env, cfg, raw, served = (data.get(k) for k in ("environment", "serve_config", "raw", "served"))
    if not isinstance(env, dict) or not _positive(env.get("cpus_available")):
        return "environment.cpus_available is missing or not a positive number"
    if not isinstance(env.get("payload"), dict) or not _positive(env["payload"].get("bytes")):
        return "environment.payload.bytes is missing or not a positive number"
    if not isinstance(cfg, dict) or not all(
        _positive(cfg.get(k)) for k in ("workers", "torch_threads_per_worker", "batch_size")
    ):
        return "serve_config.workers/torch_threads_per_worker/batch_size are missing or not positive"
    delay = cfg.get("max_batch_delay_ms")
    if delay is not None and not (_number(delay) and delay >= 0):
        return "serve_config.max_batch_delay_ms is not a number of milliseconds"
    by_batch = raw.get("img_s_by_batch") if isinstance(raw, dict) else None
    if not isinstance(by_batch, dict) or not by_batch:
        return "raw.img_s_by_batch is missing"
    for bs, rate in by_batch.items():
        if not str(bs).isdigit() or int(bs) < 1 or not _positive(rate):
            return f"raw.img_s_by_batch has a bad entry {bs!r}: {rate!r}"
    if not isinstance(served, list) or not served:
        return "served is missing or empty"
    seen = set()
    for i, r in enumerate(served):
        if not isinstance(r, dict) or not all(_positive(r.get(k)) for k in SERVED_FIELDS):
            return f"served[{i}] lacks a positive {', '.join(SERVED_FIELDS)}"
        if r["concurrency"] in seen:
            return f"served has concurrency {r['concurrency']} twice"
        seen.add(r["concurrency"])
        if not r["p50_ms"] <= r["p95_ms"] <= r["p99_ms"]:
            return f"served[{i}] has p50 > p95 > p99 out of order"
        if r.get("failed") is not None and not (_number(r["failed"]) and r["failed"] >= 0):
            return f"served[{i}].failed is not a count"
        rounds = r.get("rounds", [])
        if not isinstance(rounds, list) or not all(
            isinstance(x, dict) and _positive(x.get("img_s")) and _positive(x.get("p99_ms")) for x in rounds
        ):
            return f"served[{i}].rounds lacks a positive img_s and p99_ms in every round"
    memory = data.get("memory")
    if memory is not None:
        if not isinstance(memory, dict):
            return "memory is not an object"
        if memory.get("frontend_rss_mb") is not None and not _number(memory["frontend_rss_mb"]):
            return "memory.frontend_rss_mb is not a number"
        workers = memory.get("worker_rss_mb")
        if workers is not None and not (isinstance(workers, list) and all(_number(w) for w in workers)):
            return "memory.worker_rss_mb is not a list of numbers"
    return None
