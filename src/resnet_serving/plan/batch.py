"""The batch plan, ``plan --batch-images N --deadline D``: units, wall time and $ for one run that classifies N
images within a deadline, as an Indexed Job of ``batch run`` pods on EKS (on-demand or spot nodes) and as a
SageMaker Batch Transform job.

Sizing, per option: the fewest units whose rate × deadline covers the images, ``units = ceil(N / (rate × D))``;
the run then takes ``N / (units × rate)``, and each node or instance is billed for that long (EC2 and SageMaker
bill by the second). Start-up (nodes, image pull, model fetch) is not in it: leave room for it in the deadline.

Rates, per unit:

* a ``batch run`` pod does no HTTP: the raw model at its best batch per vCPU (:func:`~.capacity.raw_capacity`),
  scaled to the pod's vCPUs as the serving plan scales, times :data:`BATCH_EFFICIENCY`. A pod has the serving
  plan's size (the bench's vCPUs, :func:`~.planner.pod_memory_gib`) and one shard: shards = pods = the Job's
  completions and parallelism;
* Batch Transform sends each object to the container's ``/invocations``, one image per request: the bench's best
  served level per vCPU (:func:`~.capacity.bench_capacity`), scaled to the instance.

A GPU or Inferentia bench is priced only on types with its accelerator, one pod or instance per chip, and a CPU
bench only on CPU types (the serving plan's checks): a figure measured on one is never scaled to the other.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from resnet_serving.bench.result import BenchReport
from resnet_serving.errors import InputError
from resnet_serving.plan.capacity import bench_capacity, raw_capacity
from resnet_serving.plan.planner import (
    bench_accelerator,
    bench_provenance,
    capacity_vcpus,
    eks_node_type,
    node_pods,
    pod_memory_gib,
    sagemaker_types,
)
from resnet_serving.plan.prices import Prices

#: ``batch run``'s images/s as a share of the raw model's at its best batch: issue #30's target (decode and S3
#: reads overlap the forward pass), assumed until ``bench --batch`` measures ``batch run`` itself.
BATCH_EFFICIENCY = 0.95

_DURATION = re.compile(r"(?:(?P<h>\d+(?:\.\d+)?)h)?(?:(?P<m>\d+(?:\.\d+)?)m)?(?:(?P<s>\d+(?:\.\d+)?)s)?")
DURATION_FORMS = "like 90m, 2h, 1h30m, 45s or 7200 (seconds)"


def parse_duration(text: str, flag: str = "--deadline") -> float:
    """Seconds in ``text``: hours, minutes and seconds (``1h30m``, ``90m``, ``45s``) or a bare number of seconds."""
    t = text.strip().lower()
    m = _DURATION.fullmatch(t)
    if t and m and any(m.groupdict().values()):
        seconds = sum(float(m[u] or 0) * k for u, k in (("h", 3600), ("m", 60), ("s", 1)))
    else:
        try:
            seconds = float(t)
        except ValueError:
            raise InputError(f"{flag} must be a duration {DURATION_FORMS}, got {text!r}") from None
    if not (math.isfinite(seconds) and seconds > 0):
        raise InputError(f"{flag} must be a duration above zero ({DURATION_FORMS}), got {text!r}")
    return seconds


def parse_images(text: str, flag: str = "--batch-images") -> int:
    """A whole number of images above zero; ``_`` or ``,`` may group the digits (``1_000_000``)."""
    digits = text.strip().replace("_", "").replace(",", "")
    if not digits.isdigit() or int(digits) < 1:
        raise InputError(f"{flag} must be a whole number of images above zero, got {text!r}")
    return int(digits)


def duration_words(seconds: float) -> str:
    """``1h 52m 10s``, ``3m 5s``, ``40s``: whole seconds, rounded up."""
    s = math.ceil(seconds)
    h, rest = divmod(s, 3600)
    m, sec = divmod(rest, 60)
    parts = [f"{h}h"] if h else []
    parts += [f"{m}m"] if m or (h and sec) else []
    return " ".join([*parts, f"{sec}s"] if sec or not parts else parts)


@dataclass
class BatchRow:
    option: str
    units: str = ""
    unit_count: int | None = None  # None: the deadline cannot be met with this option
    shards: int | None = None  # EKS: one per pod, the Job's completions and parallelism
    nodes: int | None = None
    instance_type: str = ""  # the node type (EKS) or the SageMaker instance type
    per_unit_img_s: float = 0.0
    rate_source: str = ""  # "raw" (the raw model × BATCH_EFFICIENCY) or "served" (the best served level)
    wall_s: float | None = None
    billed_hours: float | None = None  # node-hours (EKS) or instance-hours (SageMaker)
    usd: float | None = None
    estimated: bool = False
    note: str = ""


@dataclass
class BatchPlan:
    images: int
    deadline_s: float
    needed_img_s: float
    region: str
    prices_file: str
    efficiency: float
    #: False until ``bench --batch`` measures ``batch run``: the EKS rate is the raw model's
    rate_verified: bool
    raw_how: str
    served_how: str
    rows: list[BatchRow] = field(default_factory=list)
    provenance: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _units(images: int, deadline_s: float, rate: float) -> int | None:
    """The fewest units at ``rate`` images/s each that classify ``images`` within ``deadline_s``; None when even one
    image per unit would take longer than the deadline."""
    if rate * deadline_s < 1:
        return None
    return math.ceil(images / (rate * deadline_s))


def _too_slow(rate: float) -> str:
    return f"not possible: one unit takes {1 / rate:.2f} s per image at {rate:.2f} img/s, longer than the deadline"


def make_batch_plan(
    bench: BenchReport,
    prices: Prices,
    *,
    images: int,
    deadline_s: float,
    node_type: str | None = None,
    instance_types: list[str] | None = None,
    bench_file: str = "",
) -> BatchPlan:
    if images < 1:
        raise InputError(f"--batch-images must be a whole number of images above zero, got {images}")
    if not (math.isfinite(deadline_s) and deadline_s > 0):
        raise InputError(f"--deadline must be a duration above zero, got {deadline_s:g} s")
    acc = bench_accelerator(bench)
    node = eks_node_type(prices, node_type, acc)
    types = sagemaker_types(prices, instance_types, acc)
    raw, served = raw_capacity(bench), bench_capacity(bench)
    pod_cpu, pod_gib = raw.vcpus, pod_memory_gib(bench)
    raw_rate, raw_how = raw.scaled(pod_cpu)
    _, served_how = served.scaled(served.vcpus)
    plan = BatchPlan(
        images=images,
        deadline_s=deadline_s,
        needed_img_s=images / deadline_s,
        region=prices.region,
        prices_file=prices.file,
        efficiency=BATCH_EFFICIENCY,
        rate_verified=False,
        raw_how=raw_how,
        served_how=served_how,
    )
    plan.rows += _eks_rows(prices, node, pod_cpu, pod_gib, raw_rate * BATCH_EFFICIENCY, images, deadline_s)
    for t in types:
        vcpus = capacity_vcpus(prices, t, served.vcpus, acc)
        rate, _ = served.scaled(vcpus)
        plan.rows.append(_transform_row(prices, t, rate, vcpus, served.vcpus, images, deadline_s))
    plan.provenance = {"prices": prices.provenance(), "bench": bench_provenance(bench, bench_file)}
    return plan


def _eks_rows(
    prices: Prices, node_type: str, pod_cpu: int, pod_gib: int, rate: float, images: int, deadline_s: float
) -> list[BatchRow]:
    node = prices.entry("ec2_on_demand", node_type)
    per_node = node_pods(node, node_type, pod_cpu, pod_gib)
    pods = _units(images, deadline_s, rate)
    rows = [
        BatchRow(option=f"EKS Indexed Job, {kind} nodes", instance_type=node_type, per_unit_img_s=rate)
        for kind in ("on-demand", "spot")
    ]
    if pods is None:
        for r in rows:
            r.units, r.note, r.rate_source = "not possible", _too_slow(rate), "raw"
        return rows
    nodes = math.ceil(pods / per_node)
    wall = images / (pods * rate)
    node_hours = nodes * wall / 3600
    pod = f"pod = {pod_cpu} vCPU, {pod_gib} GiB" + (f", one {node['accelerator']}" if node.get("accelerator") else "")
    free = nodes * per_node - pods
    note = (
        f"{pod}; shards = pods = the Job's completions and parallelism"
        + (f"; {free} pod slot(s) left free on the nodes" if free else "")
        + "; runs on the serving cluster: its control plane is not counted, S3 through the gateway endpoint is free"
    )
    for r, usd_per_hour in zip(rows, (node["usd_per_hour"], node["spot_usd_per_hour"]), strict=True):
        r.units = f"{pods} pods on {nodes} × {node_type} ({per_node} pods/node)"
        r.unit_count, r.shards, r.nodes, r.rate_source = pods, pods, nodes, "raw"
        r.wall_s, r.billed_hours, r.usd = wall, node_hours, node_hours * usd_per_hour
        r.estimated, r.note = bool(node.get("estimated")), note
    spot = rows[1]
    spot.estimated = True  # spot prices move hour by hour
    spot.note += (
        "; a reclaimed spot node's pods are retried without counting against the per-index limit and resume from "
        "their shard's checkpoint, so a reclaim adds time"
    )
    return rows


def _transform_row(
    prices: Prices,
    instance_type: str,
    rate: float,
    vcpus: int,
    bench_vcpus: int,
    images: int,
    deadline_s: float,
) -> BatchRow:
    section = "sagemaker_batch_transform"
    own = instance_type in prices.data.get(section, {})
    entry = prices.entry(section if own else "sagemaker_realtime", instance_type)
    row = BatchRow(
        option=f"SageMaker Batch Transform {instance_type}",
        instance_type=instance_type,
        per_unit_img_s=rate,
        rate_source="served",
        estimated=bool(entry.get("estimated")) or not own or vcpus > bench_vcpus,
    )
    notes = ["rate: the best served level, as each object is one /invocations request"]
    if not own:
        notes.append("priced at the type's real-time rate, estimated: the prices file has no Batch Transform entry")
    if vcpus > bench_vcpus:
        notes.append(f"capacity EXTRAPOLATED from {bench_vcpus} to {vcpus} vCPUs")
    if entry.get("accelerator"):
        notes.append(f"one {entry['accelerator']}, the bench's")
    instances = _units(images, deadline_s, rate)
    if instances is None:
        row.units, row.note = "not possible", "; ".join([_too_slow(rate), *notes])
        return row
    wall = images / (instances * rate)
    row.units, row.unit_count = f"{instances} instances", instances
    row.wall_s, row.billed_hours = wall, instances * wall / 3600
    row.usd = row.billed_hours * entry["usd_per_hour"]
    row.note = "; ".join(notes)
    return row
