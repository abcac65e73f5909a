"""The plan: units, zone-failure headroom, expected p99 and $/month per option, from a bench and a price list.

Sizing, per option: the highest per-unit request rate whose predicted p99 meets the SLO (latency.py), capped at
``utilisation`` of the unit's measured capacity (the headroom the autoscaler needs while new units start);
``base = ceil(load / that rate)``. Zone-failure headroom is N+1 zones: the units are spread over ``azs``
zones so that any ``azs - 1`` of them carry the whole load, ``per_zone = ceil(base / (azs - 1))``,
``total = azs * per_zone``. p99 is predicted at the load each unit then sees, with every zone up and with
one zone down. A month is ``hours_per_month`` hours (730) at the stated load all the time.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from resnet_serving.bench.result import BenchReport
from resnet_serving.errors import InputError
from resnet_serving.plan.capacity import BenchCapacity, bench_capacity, forward_time_ms, sagemaker_invocations_target
from resnet_serving.plan.latency import LatencyModel
from resnet_serving.plan.prices import Prices, tiered_cost

# Node capacity kept back from pods for the kubelet, the OS and the DaemonSets (VPC CNI, kube-proxy, ...).
NODE_RESERVED_CPU = 0.5
NODE_RESERVED_GIB = 1.5
# Assumed sizes where the bench has no figure; rows that use them say so.
RESPONSE_BYTES = 1024  # top-5 JSON body
LOG_BYTES_PER_REQUEST = 300  # one access-log line
CLOUDWATCH_METRICS = 10
CLOUDWATCH_ALARMS = 5
MODEL_ARTIFACT_GB = 0.1


@dataclass(frozen=True)
class Load:
    rps: float
    how: str


def load_from_args(rps: float | None, users: float | None, think_time_s: float | None) -> Load:
    """Requests/s from ``--rps``, or from ``--users`` and ``--think-time`` (each user: one request per think time)."""
    if rps is not None:
        if not (math.isfinite(rps) and rps > 0):
            raise InputError(f"--rps must be a positive number of requests per second, got {rps:g}")
        return Load(rps, f"{rps:g} requests/s (given)")
    if users is None or think_time_s is None:
        raise InputError("give the load as --rps R, or as --users U with --think-time S")
    if not (math.isfinite(users) and users > 0):
        raise InputError(f"--users must be a positive number, got {users:g}")
    if not (math.isfinite(think_time_s) and think_time_s > 0):
        raise InputError(f"--think-time must be a positive number of seconds, got {think_time_s:g}")
    r = users / think_time_s
    return Load(
        r,
        f"{users:g} concurrent users × one request every {think_time_s:g} s of think time = {r:g} requests/s "
        "(response time not subtracted from the think time, which errs high)",
    )


@dataclass
class Row:
    option: str
    units: str
    base_units: int | None
    total_units: int | None
    headroom_units: int | None
    per_unit_rps: float | None
    p99_ms: float | None
    p99_zone_down_ms: float | None
    usd_month: float | None
    estimated: bool
    note: str = ""
    kind: str = "compute"  # compute (one row per way to serve) or line (shared service lines)


@dataclass
class Plan:
    load: Load
    p99_target_ms: float
    region: str
    prices_file: str
    bench_how: str
    forward_ms: float
    utilisation: float
    azs: int
    rows: list[Row] = field(default_factory=list)
    values: dict[str, Any] = field(default_factory=dict)
    #: per SageMaker instance type: the SageMakerVariantInvocationsPerInstance target and how it was derived
    sagemaker_targets: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types; an unbounded p99 becomes null."""

        def clean(x: Any) -> Any:
            if isinstance(x, float) and not math.isfinite(x):
                return None
            if isinstance(x, dict):
                return {k: clean(v) for k, v in x.items()}
            if isinstance(x, list):
                return [clean(v) for v in x]
            return x

        return dict(clean(asdict(self)))


def zone_spread(base: int, azs: int) -> int:
    """Units so that any ``azs - 1`` zones carry ``base`` units' load: N+1 zones."""
    if azs < 2:
        return max(1, base)
    return azs * max(1, math.ceil(base / (azs - 1)))


def _check_slo(model: LatencyModel, bench: BenchReport, p99_ms: float) -> None:
    if not (math.isfinite(p99_ms) and p99_ms > 0):
        raise InputError(f"--p99-ms must be a positive number of milliseconds, got {p99_ms:g}")
    fwd = forward_time_ms(bench)
    if p99_ms < fwd:
        raise InputError(
            f"--p99-ms {p99_ms:g} is impossible: the model's own forward pass takes {fwd:.1f} ms per image in "
            "one worker in this bench"
        )
    floor = model.p99_at_rate(1e-9)
    if p99_ms < floor:
        raise InputError(
            f"--p99-ms {p99_ms:g} is below the p99 of a single request with nothing queued ({floor:.1f} ms, "
            "measured at the bench's lowest concurrency): no number of units meets it"
        )


def make_plan(
    bench: BenchReport,
    prices: Prices,
    load: Load,
    *,
    p99_ms: float,
    utilisation: float = 0.7,
    azs: int = 3,
    node_type: str = "c5.2xlarge",
    instance_types: list[str] | None = None,
) -> Plan:
    if not (0 < utilisation <= 1):
        raise InputError(f"--utilisation must be in (0, 1], got {utilisation:g}")
    if azs < 1:
        raise InputError(f"--azs must be at least 1, got {azs}")
    cap = bench_capacity(bench)
    model = LatencyModel.from_bench(bench)
    _check_slo(model, bench, p99_ms)
    # per unit of the bench's size (its vCPUs): the SLO-bound rate, capped at the utilisation target
    per_unit = min(model.max_rate_for(p99_ms), utilisation * model.mu)
    if per_unit <= 0:
        raise InputError(f"no per-pod load meets p99 {p99_ms:g} ms in this bench")
    _, how = cap.scaled(cap.vcpus)
    plan = Plan(
        load=load,
        p99_target_ms=p99_ms,
        region=prices.region,
        prices_file=prices.file,
        bench_how=how,
        forward_ms=forward_time_ms(bench),
        utilisation=per_unit / model.mu,
        azs=azs,
    )
    hours = prices.hours_per_month
    plan.rows += _eks_rows(bench, cap, model, prices, load, per_unit, azs, node_type, hours)
    types = instance_types or prices.instance_types("sagemaker_realtime")
    for t in types:
        plan.rows.append(_sagemaker_row(bench, cap, model, prices, load, per_unit, azs, t, hours))
        target = sagemaker_invocations_target(
            bench, instance_vcpus=int(prices.entry("sagemaker_realtime", t)["vcpus"]), utilisation=plan.utilisation
        )
        plan.sagemaker_targets[t] = {"invocations_per_minute": target.invocations_per_minute, "how": target.how}
    plan.rows.append(_serverless_row(bench, model, prices, load))
    plan.rows += _service_lines(model, prices, load)
    plan.values = chart_values(bench, cap, model, per_unit, load, azs)
    return plan


def _est(*entries: Mapping[str, Any]) -> bool:
    return any(bool(e.get("estimated")) for e in entries)


def _eks_rows(
    bench: BenchReport,
    cap: BenchCapacity,
    model: LatencyModel,
    prices: Prices,
    load: Load,
    per_unit: float,
    azs: int,
    node_type: str,
    hours: float,
) -> list[Row]:
    node = prices.entry("ec2_on_demand", node_type)
    pod_cpu, pod_gib = cap.vcpus, pod_memory_gib(bench)
    per_node = pods_per_node(node["vcpus"], node["memory_gib"], pod_cpu, pod_gib)
    if per_node < 1:
        raise InputError(f"a {node_type} node cannot hold one pod of {pod_cpu} vCPU and {pod_gib} GiB")
    base = math.ceil(load.rps / per_unit)
    total = zone_spread(base, azs)
    nodes = azs * math.ceil(total / azs / per_node)
    base_nodes = min(nodes, math.ceil(base / per_node))
    cluster, alb = prices.entry("eks_cluster"), prices.entry("alb")
    gb_per_hour = load.rps * 3600 * (bench.environment.payload.bytes + RESPONSE_BYTES) / 1e9
    lcus = max(1.0, gb_per_hour / alb["processed_gb_per_lcu_hour"])
    fixed = cluster["usd_per_hour"] * hours + (alb["usd_per_hour"] + lcus * alb["usd_per_lcu_hour"]) * hours
    p99 = model.p99_at_rate(load.rps / total)
    p99_down = model.p99_at_rate(load.rps / (total * (azs - 1) / azs)) if azs > 1 else None
    units = f"{total} pods on {nodes} × {node_type} ({per_node} pods/node)"
    note = f"+ EKS control plane and ALB (${fixed:,.0f}/month); pod = {pod_cpu} vCPU, {pod_gib} GiB"
    on_demand = Row(
        option="EKS on-demand",
        units=units,
        base_units=base,
        total_units=total,
        headroom_units=total - base,
        per_unit_rps=per_unit,
        p99_ms=p99,
        p99_zone_down_ms=p99_down,
        usd_month=nodes * node["usd_per_hour"] * hours + fixed,
        estimated=_est(node, cluster, alb),
        note=note,
    )
    spot_nodes = nodes - base_nodes
    spot = Row(
        option="EKS on-demand base + spot headroom",
        units=f"{units}: {base_nodes} on-demand, {spot_nodes} spot",
        base_units=base,
        total_units=total,
        headroom_units=total - base,
        per_unit_rps=per_unit,
        p99_ms=p99,
        p99_zone_down_ms=p99_down,
        usd_month=(base_nodes * node["usd_per_hour"] + spot_nodes * node["spot_usd_per_hour"]) * hours + fixed,
        estimated=True,  # spot prices move hour by hour
        note=note + "; spot nodes can be reclaimed, so the zone headroom is not guaranteed",
    )
    return [on_demand, spot]


def pods_per_node(node_vcpus: float, node_gib: float, pod_cpu: float, pod_gib: float) -> int:
    """Pods of ``pod_cpu`` vCPU and ``pod_gib`` GiB (their requests) one node holds once the kubelet, the OS and the
    DaemonSets have their share; k8s/eksctl's node group sizes are checked with the same count."""
    return min(
        math.floor((node_vcpus - NODE_RESERVED_CPU) / pod_cpu),
        math.floor((node_gib - NODE_RESERVED_GIB) / pod_gib),
    )


def _sagemaker_row(
    bench: BenchReport,
    cap: BenchCapacity,
    model: LatencyModel,
    prices: Prices,
    load: Load,
    per_unit: float,
    azs: int,
    instance_type: str,
    hours: float,
) -> Row:
    inst = prices.entry("sagemaker_realtime", instance_type)
    vcpus = int(inst["vcpus"])
    scale = vcpus / cap.vcpus
    # an instance with `scale` times the bench's vCPUs is taken as `scale` bench machines side by side
    rate = per_unit * scale
    base = math.ceil(load.rps / rate)
    total = zone_spread(base, azs)
    target = sagemaker_invocations_target(bench, instance_vcpus=vcpus, utilisation=per_unit / model.mu)
    extrapolated = vcpus > cap.vcpus
    return Row(
        option=f"SageMaker real-time {instance_type}",
        units=f"{total} instances",
        base_units=base,
        total_units=total,
        headroom_units=total - base,
        per_unit_rps=rate,
        p99_ms=model.p99_at_rate(load.rps / total / scale),
        p99_zone_down_ms=model.p99_at_rate(load.rps / (total * (azs - 1) / azs) / scale) if azs > 1 else None,
        usd_month=total * inst["usd_per_hour"] * hours,
        estimated=_est(inst) or extrapolated,
        note=(
            f"SageMakerVariantInvocationsPerInstance target {target.invocations_per_minute}/min"
            + (f"; capacity EXTRAPOLATED from {cap.vcpus} to {vcpus} vCPUs" if extrapolated else "")
        ),
    )


def _serverless_row(bench: BenchReport, model: LatencyModel, prices: Prices, load: Load) -> Row:
    sv, lim = prices.entry("sagemaker_serverless"), prices.entry("sagemaker_serverless_limits")
    frontend_mb, workers_mb = _memory_mb(bench)
    need_mb = 1.2 * (frontend_mb + max(workers_mb or (0,)))
    sizes = sorted(int(m) for m in lim["memory_mb"])
    fits = [m for m in sizes if m >= need_mb]
    payload_mb = bench.environment.payload.bytes / 2**20
    lowest = model.points[0]
    latency_s = 1.0 / lowest.img_s * lowest.concurrency  # mean time per request with nothing queued
    concurrency = math.ceil(load.rps * latency_s)
    base = Row(
        option="SageMaker serverless",
        units="",
        base_units=None,
        total_units=None,
        headroom_units=None,
        per_unit_rps=None,
        p99_ms=None,
        p99_zone_down_ms=None,
        usd_month=None,
        estimated=True,
    )
    if not fits:
        base.units, base.note = "not possible", f"one worker needs {need_mb:.0f} MB, above {sizes[-1]} MB"
        return base
    if payload_mb > lim["max_payload_mb"]:
        base.units, base.note = "not possible", f"payload {payload_mb:.1f} MB is above {lim['max_payload_mb']} MB"
        return base
    if concurrency > lim["max_concurrency"]:
        base.units = "not possible"
        base.note = (
            f"needs {concurrency} concurrent invocations (load × {latency_s * 1000:.0f} ms per request), above "
            f"the endpoint's max concurrency {lim['max_concurrency']}"
        )
        return base
    gb = fits[0] / 1024
    per_month = load.rps * 3600 * prices.hours_per_month
    data_gb = per_month * (bench.environment.payload.bytes + RESPONSE_BYTES) / 1e9
    base.units = f"{concurrency} concurrent invocations at {fits[0]} MB"
    base.total_units = concurrency
    base.p99_ms = lowest.p99_ms  # every invocation has a container to itself: no queueing, no cold start
    base.usd_month = per_month * latency_s * gb * sv["usd_per_gb_second"] + data_gb * sv["data_processing_usd_per_gb"]
    base.note = "p99 without cold starts, on the bench's CPU; the serverless vCPU share is not published"
    return base


def _service_lines(model: LatencyModel, prices: Prices, load: Load) -> list[Row]:
    per_month = load.rps * 3600 * prices.hours_per_month
    apigw, lam = prices.entry("api_gateway_rest"), prices.entry("lambda")
    dto, cw, s3 = prices.entry("data_transfer_out"), prices.entry("cloudwatch"), prices.entry("s3")
    lowest = model.points[0]
    lambda_s = lowest.concurrency / lowest.img_s  # the Lambda in front waits for the endpoint's answer
    logs_gb = per_month * LOG_BYTES_PER_REQUEST / 1e9

    def line(option: str, usd: float, estimated: bool, note: str) -> Row:
        return Row(
            option,
            f"{per_month / 1e6:,.0f} M requests",
            None,
            None,
            None,
            None,
            None,
            None,
            usd,
            estimated,
            note,
            "line",
        )

    return [
        line("API Gateway (REST)", tiered_cost(per_month, apigw["tiers"]), _est(apigw), "per-million tiers"),
        line(
            "Lambda (API Gateway → endpoint)",
            per_month / 1e6 * lam["usd_per_million_requests"] + per_month * lambda_s * 0.125 * lam["usd_per_gb_second"],
            _est(lam),
            f"128 MB, {lambda_s * 1000:.0f} ms per call (the endpoint's unqueued latency)",
        ),
        line(
            "Data transfer out",
            per_month * RESPONSE_BYTES / 1e9 * dto["usd_per_gb"],
            True,
            f"{RESPONSE_BYTES} B response per request (assumed); uploads are free",
        ),
        line(
            "CloudWatch",
            CLOUDWATCH_METRICS * cw["usd_per_metric_month"]
            + CLOUDWATCH_ALARMS * cw["usd_per_alarm_month"]
            + logs_gb * cw["logs_usd_per_gb_ingested"],
            True,
            f"{CLOUDWATCH_METRICS} metrics, {CLOUDWATCH_ALARMS} alarms, {LOG_BYTES_PER_REQUEST} B of logs per request "
            "(assumed)",
        ),
        line("S3 (model artifacts)", MODEL_ARTIFACT_GB * s3["usd_per_gb_month"], _est(s3), f"{MODEL_ARTIFACT_GB} GB"),
    ]


def pod_memory_gib(bench: BenchReport) -> int:
    """Whole GiB for one pod: the bench's front end plus workers RSS, with a quarter spare; the chart's 3 GiB
    when the bench has no memory figures."""
    frontend_mb, workers_mb = _memory_mb(bench)
    if not workers_mb:
        return 3
    mb = frontend_mb + sum(workers_mb)
    return max(1, math.ceil(mb * 1.25 / 1024))


def _memory_mb(bench: BenchReport) -> tuple[float, tuple[float, ...]]:
    """The bench's front-end RSS (0 when not measured) and each worker's, in MB."""
    mem = bench.memory
    if mem is None:
        return 0.0, ()
    return float(mem.frontend_rss_mb or 0), tuple(float(w) for w in mem.worker_rss_mb or ())


def chart_values(
    bench: BenchReport, cap: BenchCapacity, model: LatencyModel, per_unit: float, load: Load, azs: int
) -> dict[str, Any]:
    """Values for charts/resnet50-serving (`helm install -f`), with the chart's own value names."""
    base = math.ceil(load.rps / per_unit)
    total = zone_spread(base, azs)
    cfg = bench.serve_config
    gib = f"{pod_memory_gib(bench)}Gi"
    return {
        "autoscaling": {
            "enabled": True,
            "minReplicas": total,
            "maxReplicas": 2 * total,
            "targetCPUUtilizationPercentage": max(1, min(100, round(100 * per_unit / model.mu))),
        },
        "resources": {
            "requests": {"cpu": str(cap.vcpus), "memory": gib},
            "limits": {"cpu": str(cap.vcpus), "memory": gib},
        },
        "torchserve": {
            "workers": int(cfg.workers),
            "batchSize": int(cfg.batch_size),
            "maxBatchDelayMs": int(cfg.max_batch_delay_ms or 0),
        },
    }
