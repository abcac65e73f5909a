"""Per-pod and per-instance capacity from a ``bench.json`` written by ``resnet-serving bench``.

Capacity is never invented: every figure here comes from the bench's ``served`` levels (one image per
request, so served img/s is requests/s; with ``--repeat``, a level's median over its rounds) and the machine
they ran on. Throughput is taken per vCPU of the
bench machine (``environment.cpus_available``, which includes the load generator's share, so it errs low)
and scaled linearly to another CPU count. Scaling below the measured count stays inside what the bench saw;
scaling above it is an extrapolation, and the ``how`` text of every result says which one it is.

This module imports neither torch nor boto3: ``sagemaker deploy`` and ``plan`` both call it.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from resnet_serving.errors import InputError

MAKE_ONE = "run `resnet-serving bench --out bench-results` to make one"

_SERVED_KEYS = ("concurrency", "img_s", "p50_ms", "p95_ms", "p99_ms")


@dataclass(frozen=True)
class Target:
    """A SageMaker ``SageMakerVariantInvocationsPerInstance`` target (per minute) and where it came from."""

    invocations_per_minute: int
    how: str


@dataclass(frozen=True)
class BenchCapacity:
    """What the bench measured, reduced to what capacity planning needs."""

    machine: str
    vcpus: int
    config: str  # workers × threads, batch, delay: the serving configuration the figures belong to
    best_concurrency: int
    best_img_s: float

    @property
    def img_s_per_vcpu(self) -> float:
        return self.best_img_s / self.vcpus

    def scaled(self, vcpus: int) -> tuple[float, str]:
        """Requests/s one unit with ``vcpus`` vCPUs serves, and a sentence saying how that was derived."""
        if vcpus < 1:
            raise InputError(f"an instance needs at least 1 vCPU, got {vcpus}")
        rate = self.img_s_per_vcpu * vcpus
        source = (
            f"bench on {self.machine}, {self.vcpus} vCPU(s), {self.config}: best served "
            f"{self.best_img_s:.1f} req/s at concurrency {self.best_concurrency} "
            f"= {self.img_s_per_vcpu:.2f} req/s per vCPU"
        )
        if vcpus == self.vcpus:
            return rate, f"{source}; same vCPU count, no scaling"
        if vcpus < self.vcpus:
            return rate, f"{source}; scaled down linearly to {vcpus} vCPU(s)"
        return rate, (
            f"{source}; EXTRAPOLATED linearly to {vcpus} vCPUs (the bench measured {self.vcpus}; "
            "run the bench on the target instance to confirm)"
        )


def load_bench(path: str | Path) -> dict[str, Any]:
    """Read and check a ``bench.json``; refuses (InputError, exit 2) when it is missing or malformed."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"no bench file at {p}: {MAKE_ONE}")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"{p} is not a readable JSON bench file ({e}): {MAKE_ONE}") from e
    problem = _bench_problem(data)
    if problem:
        raise InputError(f"{p} is not a bench.json written by `resnet-serving bench` ({problem}): {MAKE_ONE}")
    return dict(data)


def _positive(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and x > 0


def _bench_problem(data: Any) -> str | None:
    """The first thing wrong with a parsed bench report, or None."""
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
        if not isinstance(r, dict) or not all(_positive(r.get(k)) for k in _SERVED_KEYS):
            return f"served[{i}] lacks a positive {', '.join(_SERVED_KEYS)}"
        if r["concurrency"] in seen:
            return f"served has concurrency {r['concurrency']} twice"
        seen.add(r["concurrency"])
        if not r["p50_ms"] <= r["p95_ms"] <= r["p99_ms"]:
            return f"served[{i}] has p50 > p95 > p99 out of order"
        rounds = r.get("rounds", [])
        if not isinstance(rounds, list) or not all(
            isinstance(x, dict) and _positive(x.get("img_s")) and _positive(x.get("p99_ms")) for x in rounds
        ):
            return f"served[{i}].rounds lacks a positive img_s and p99_ms in every round"
    return None


def level_img_s(level: Mapping[str, Any]) -> float:
    """A served level's throughput: the median over its rounds when the bench ran several (``--repeat``)."""
    rounds = level.get("rounds") or [level]
    return float(statistics.median(float(x["img_s"]) for x in rounds))


def bench_capacity(bench: Mapping[str, Any]) -> BenchCapacity:
    """The best served level without failed requests, with the machine and configuration it ran on."""
    problem = _bench_problem(bench)
    if problem:
        raise InputError(f"not a bench.json written by `resnet-serving bench` ({problem}): {MAKE_ONE}")
    clean = [r for r in bench["served"] if not r.get("failed")]
    if not clean:
        raise InputError(f"every served level of the bench had failed requests: {MAKE_ONE} on a quiet machine")
    best = max(clean, key=level_img_s)
    env, cfg = bench["environment"], bench["serve_config"]
    config = (
        f"{cfg['workers']} worker(s) × {cfg['torch_threads_per_worker']} thread(s), batch {cfg['batch_size']}, "
        f"max delay {cfg.get('max_batch_delay_ms', '?')} ms, {bench.get('raw', {}).get('graph', 'eager')}"
    )
    return BenchCapacity(
        machine=str(env.get("device", "unknown device")),
        vcpus=int(env["cpus_available"]),
        config=config,
        best_concurrency=int(best["concurrency"]),
        best_img_s=level_img_s(best),
    )


def forward_time_ms(bench: Mapping[str, Any]) -> float:
    """One image's raw forward pass in one worker, at the smallest batch the bench measured.

    ``raw.img_s_by_batch`` sums the serving layout's worker processes, so one process does ``rate / workers``
    images per second. No request can be answered faster than this: it bounds any p99 asked of the plan.
    """
    by_batch = bench["raw"]["img_s_by_batch"]
    smallest = min(by_batch, key=int)
    per_worker = float(by_batch[smallest]) / int(bench["serve_config"]["workers"])
    return 1000.0 / per_worker


def sagemaker_invocations_target(bench: Mapping[str, Any], *, instance_vcpus: int, utilisation: float = 0.7) -> Target:
    """``SageMakerVariantInvocationsPerInstance`` target for an instance with ``instance_vcpus`` vCPUs.

    The best served throughput per vCPU in ``bench``, scaled to the instance (see :meth:`BenchCapacity.scaled`),
    times 60 (the metric is per minute) times ``utilisation``: the headroom left for bursts while new
    instances start.
    """
    if not (isinstance(utilisation, (int, float)) and 0 < utilisation <= 1):
        raise InputError(f"utilisation must be in (0, 1], got {utilisation!r}")
    cap = bench_capacity(bench)
    rate, how = cap.scaled(instance_vcpus)
    per_minute = max(1, math.floor(rate * 60 * utilisation))
    return Target(
        invocations_per_minute=per_minute,
        how=f"{how}; × 60 s × utilisation {utilisation:g} = {per_minute} invocations/min per instance",
    )
