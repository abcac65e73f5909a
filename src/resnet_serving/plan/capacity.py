"""Per-pod and per-instance capacity from a ``bench.json`` written by ``resnet-serving bench``
(:class:`~resnet_serving.bench.result.BenchReport`).

Capacity is never invented: every figure here comes from the bench's ``served`` levels (one image per
request, so served img/s is requests/s; with ``--repeat``, a level's median over its rounds), or for a process
that does no HTTP from its ``raw`` forward pass at the best batch, and the machine they ran on. Throughput is
taken per vCPU of the bench machine (``environment.cpus_available``, which includes the load generator's share,
so it errs low) and scaled linearly to another CPU count. Scaling below the measured count stays inside what the
bench saw; scaling above it is an extrapolation, and the ``how`` text of every result says which one it is.

This module imports neither torch nor boto3: ``sagemaker deploy`` and ``plan`` both call it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from resnet_serving.bench.result import MAKE_ONE, BenchReport
from resnet_serving.errors import InputError


@dataclass(frozen=True)
class Target:
    """A SageMaker ``SageMakerVariantInvocationsPerInstance`` target (per minute) and where it came from."""

    invocations_per_minute: int
    how: str


@dataclass(frozen=True)
class _PerVcpu:
    """A throughput the bench measured on its machine, taken per vCPU and scaled linearly to another count."""

    machine: str
    vcpus: int
    best_img_s: float

    @property
    def img_s_per_vcpu(self) -> float:
        return self.best_img_s / self.vcpus

    def source(self) -> str:
        raise NotImplementedError

    def scaled(self, vcpus: int) -> tuple[float, str]:
        """The rate of one unit with ``vcpus`` vCPUs, and a sentence saying how that was derived."""
        if vcpus < 1:
            raise InputError(f"an instance needs at least 1 vCPU, got {vcpus}")
        rate, source = self.img_s_per_vcpu * vcpus, self.source()
        if vcpus == self.vcpus:
            return rate, f"{source}; same vCPU count, no scaling"
        if vcpus < self.vcpus:
            return rate, f"{source}; scaled down linearly to {vcpus} vCPU(s)"
        return rate, (
            f"{source}; EXTRAPOLATED linearly to {vcpus} vCPUs (the bench measured {self.vcpus}; "
            "run the bench on the target instance to confirm)"
        )


@dataclass(frozen=True)
class BenchCapacity(_PerVcpu):
    """What the bench measured, reduced to what capacity planning needs: the best served level, in requests/s."""

    config: str  # workers × threads, batch, delay: the serving configuration the figures belong to
    best_concurrency: int

    def source(self) -> str:
        return (
            f"bench on {self.machine}, {self.vcpus} vCPU(s), {self.config}: best served "
            f"{self.best_img_s:.1f} req/s at concurrency {self.best_concurrency} "
            f"= {self.img_s_per_vcpu:.2f} req/s per vCPU"
        )


@dataclass(frozen=True)
class RawCapacity(_PerVcpu):
    """The raw forward pass at its best batch (``raw.img_s_by_batch``, the serving layout's workers summed): what a
    process that does no HTTP, such as ``batch run``, can reach at most on the bench machine."""

    graph: str
    best_batch: int

    def source(self) -> str:
        return (
            f"bench on {self.machine}, {self.vcpus} vCPU(s), {self.graph}: raw model at its best batch "
            f"({self.best_batch}) {self.best_img_s:.1f} img/s = {self.img_s_per_vcpu:.2f} img/s per vCPU"
        )


def raw_capacity(bench: BenchReport) -> RawCapacity:
    """The raw model's best batch and its images/s, on the machine the bench ran on."""
    by_batch = bench.raw.img_s_by_batch
    best = max(by_batch, key=lambda bs: float(by_batch[bs]))
    return RawCapacity(
        machine=str(bench.environment.device or "unknown device"),
        vcpus=int(bench.environment.cpus_available),
        graph=bench.raw.graph or "eager",
        best_batch=int(best),
        best_img_s=float(by_batch[best]),
    )


def bench_capacity(bench: BenchReport) -> BenchCapacity:
    """The best served level without failed requests, with the machine and configuration it ran on."""
    clean = [r for r in bench.served if not r.failed]
    if not clean:
        raise InputError(f"every served level of the bench had failed requests: {MAKE_ONE} on a quiet machine")
    best = max(clean, key=lambda r: r.median_img_s)
    cfg = bench.serve_config
    delay = "?" if cfg.max_batch_delay_ms is None else cfg.max_batch_delay_ms
    config = (
        f"{cfg.workers} worker(s) × {cfg.torch_threads_per_worker} thread(s), batch {cfg.batch_size}, "
        f"max delay {delay} ms, {bench.raw.graph or 'eager'}"
    )
    return BenchCapacity(
        machine=str(bench.environment.device or "unknown device"),
        vcpus=int(bench.environment.cpus_available),
        config=config,
        best_concurrency=int(best.concurrency),
        best_img_s=best.median_img_s,
    )


def forward_time_ms(bench: BenchReport) -> float:
    """One image's raw forward pass in one worker, at the smallest batch the bench measured.

    ``raw.img_s_by_batch`` sums the serving layout's worker processes, so one process does ``rate / workers``
    images per second. No request can be answered faster than this: it bounds any p99 asked of the plan.
    """
    by_batch = bench.raw.img_s_by_batch
    per_worker = float(by_batch[min(by_batch)]) / int(bench.serve_config.workers)
    return 1000.0 / per_worker


def sagemaker_invocations_target(bench: BenchReport, *, instance_vcpus: int, utilisation: float = 0.7) -> Target:
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
