"""The plan: units, zone-failure headroom, expected p99 and $/month per option, from a bench and a price list.

Sizing, per option: the highest per-unit request rate whose predicted p99 meets the SLO (latency.py), capped at
``utilisation`` of the unit's measured capacity (the headroom the autoscaler needs while new units start);
``base = ceil(load / that rate)``. Zone-failure headroom is N+1 zones: the units are spread over ``azs``
zones so that any ``azs - 1`` of them carry the whole load, ``per_zone = ceil(base / (azs - 1))``,
``total = azs * per_zone``. p99 is predicted at the load each unit then sees, with every zone up and with
one zone down. A month is ``hours_per_month`` hours (730) at the stated load all the time.

Each complete option's total is its compute row + the shipped front door (lines.py: REST API, WAF, X-Ray, logs,
Cognito) + the shared lines it carries (every option's, and its own path's: NAT gateways and VPC endpoints for
EKS). A bench from a GPU or Inferentia host is priced only on instance types with that accelerator, and a CPU
bench only on CPU types: a figure measured on one is never scaled to the other.
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
from resnet_serving.plan.lines import (
    RESPONSE_BYTES,
    TOKEN_HOLDERS,
    FrontDoor,
    Line,
    front_door_lines,
    front_doors,
    shared_lines,
)
from resnet_serving.plan.prices import Prices

# Node capacity kept back from pods for the kubelet, the OS and the DaemonSets (VPC CNI, kube-proxy, ...).
NODE_RESERVED_CPU = 0.5
NODE_RESERVED_GIB = 1.5
#: EKS node type for a CPU bench when --node-type is not given. The shipped cluster's (k8s/eksctl/cluster.yaml,
#: c7i.2xlarge in eu-west-1) is priced too: tests/unit/test_plan_stacks.py holds the price list to it.
DEFAULT_CPU_NODE_TYPE = "c5.2xlarge"


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
    units: str = ""
    # a line, or a way to serve that the plan cannot size (serverless), leaves these None
    base_units: int | None = None
    total_units: int | None = None
    headroom_units: int | None = None
    per_unit_rps: float | None = None
    p99_ms: float | None = None
    p99_zone_down_ms: float | None = None
    usd_month: float | None = None
    estimated: bool = False
    note: str = ""
    kind: str = "compute"  # compute (one row per way to serve) or line (front door and shared lines)
    scope: str = ""  # lines: "front door", "all", "EKS" or "SageMaker"
    resources: str = ""  # lines: what in infra/templates or k8s/eksctl they price


@dataclass
class Total:
    """One complete option: its compute row, the shipped front door and the shared lines it carries."""

    option: str
    compute: float | None
    front_door: float
    shared: float
    total: float | None
    estimated: bool


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
    #: the front-door comparison at this load: REST API (shipped), HTTP API, ALB only
    front_doors: list[FrontDoor] = field(default_factory=list)
    totals: list[Total] = field(default_factory=list)
    #: where the figures came from: the prices (file, region, each entry's source and date) and the bench
    provenance: dict[str, Any] = field(default_factory=dict)

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
    node_type: str | None = None,
    instance_types: list[str] | None = None,
    token_holders: int = TOKEN_HOLDERS,
    bench_file: str = "",
) -> Plan:
    if not (0 < utilisation <= 1):
        raise InputError(f"--utilisation must be in (0, 1], got {utilisation:g}")
    if azs < 1:
        raise InputError(f"--azs must be at least 1, got {azs}")
    if token_holders < 0:
        raise InputError(f"--token-holders must be 0 or more, got {token_holders}")
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
    acc = bench_accelerator(bench)
    node = eks_node_type(prices, node_type, acc)
    plan.rows += _eks_rows(bench, cap, model, prices, load, per_unit, azs, node, hours)
    for t in sagemaker_types(prices, instance_types, acc):
        plan.rows.append(_sagemaker_row(bench, cap, model, prices, load, per_unit, azs, t, hours))
        target = sagemaker_invocations_target(
            bench, instance_vcpus=capacity_vcpus(prices, t, cap.vcpus, acc), utilisation=plan.utilisation
        )
        plan.sagemaker_targets[t] = {"invocations_per_minute": target.invocations_per_minute, "how": target.how}
    plan.rows.append(_serverless_row(bench, model, prices, load))
    lines = front_door_lines(prices, load.rps, token_holders=token_holders) + shared_lines(prices, load.rps, azs)
    plan.rows += [_line_row(line, load, hours) for line in lines]
    lowest = model.points[0]
    plan.front_doors = front_doors(
        prices, load.rps, bench.environment.payload.bytes, lowest.concurrency / lowest.img_s,
        token_holders=token_holders,
    )  # fmt: skip
    plan.totals = totals(plan.rows, lines)
    plan.values = chart_values(bench, cap, model, per_unit, load, azs)
    plan.provenance = {"prices": prices.provenance(), "bench": bench_provenance(bench, bench_file)}
    return plan


def totals(rows: list[Row], lines: list[Line]) -> list[Total]:
    """Per compute row: compute + the front door + the lines of scope "all" and of its own path."""
    front = sum(line.usd_month for line in lines if line.scope == "front door")
    front_est = any(line.estimated for line in lines if line.scope == "front door")
    out = []
    for r in rows:
        if r.kind != "compute":
            continue
        path = "EKS" if r.option.startswith("EKS") else "SageMaker"
        mine = [line for line in lines if line.scope in ("all", path)]
        shared = sum(line.usd_month for line in mine)
        out.append(
            Total(
                option=r.option,
                compute=r.usd_month,
                front_door=front,
                shared=shared,
                total=None if r.usd_month is None else r.usd_month + front + shared,
                estimated=r.estimated or front_est or any(line.estimated for line in mine),
            )
        )
    return out


def _line_row(line: Line, load: Load, hours: float) -> Row:
    return Row(
        option=line.name,
        usd_month=line.usd_month,
        estimated=line.estimated,
        note=line.note,
        kind="line",
        scope=line.scope,
        resources=line.resources,
    )


def bench_accelerator(bench: BenchReport) -> str | None:
    """The accelerator the bench ran on (``environment.device``: torch's device name), or None for a CPU."""
    dev = (bench.environment.device or "cpu").strip()
    return None if dev.lower().startswith("cpu") or dev.lower() == "unknown device" else dev


def _accel_key(name: str) -> str:
    key = "".join(name.lower().split())
    for prefix in ("nvidia", "aws"):
        key = key.removeprefix(prefix)
    return {"neuron": "inferentia2", "neuronv2": "inferentia2", "inf2": "inferentia2"}.get(key, key)


def _same(prices: Prices, section: str, name: str, acc: str | None) -> bool:
    entry_acc = prices.data[section][name].get("accelerator")
    if acc is None or entry_acc is None:
        return acc is None and entry_acc is None
    return _accel_key(str(entry_acc)) == _accel_key(acc)


def _check_accelerator(prices: Prices, section: str, name: str, acc: str | None, flag: str) -> None:
    entry = prices.entry(section, name)
    if not _same(prices, section, name, acc):
        has = entry.get("accelerator") or "no accelerator (CPU only)"
        ran = acc or "a CPU"
        raise InputError(
            f"{flag} {name} has {has}, but the bench ran on {ran}: the plan never scales a figure measured on one "
            f"to the other; pick a type with the bench's hardware, or run the bench on {name}'s"
        )


def default_node_type(prices: Prices, acc: str | None) -> str:
    """``DEFAULT_CPU_NODE_TYPE`` for a CPU bench; for an accelerator, the cheapest priced type that has it."""
    if acc is None:
        return DEFAULT_CPU_NODE_TYPE
    same = [t for t in prices.instance_types("ec2_on_demand") if _same(prices, "ec2_on_demand", t, acc)]
    if not same:
        known = sorted({str(e["accelerator"]) for e in prices.data["ec2_on_demand"].values() if e.get("accelerator")})
        raise InputError(
            f"the bench ran on {acc}, and {prices.file} has no instance type with it in {prices.region} "
            f"(accelerators priced: {', '.join(known) or 'none'}); a figure is never scaled from one chip to another"
        )
    return min(same, key=lambda t: float(prices.data["ec2_on_demand"][t]["usd_per_hour"]))


def eks_node_type(prices: Prices, node_type: str | None, acc: str | None) -> str:
    """``--node-type``, checked against the bench's hardware, or the default for it (:func:`default_node_type`)."""
    node = node_type or default_node_type(prices, acc)
    _check_accelerator(prices, "ec2_on_demand", node, acc, "--node-type")
    return node


def sagemaker_types(prices: Prices, instance_types: list[str] | None, acc: str | None) -> list[str]:
    """The SageMaker types to price: each ``--instance-type``, checked against the bench's hardware, or every priced
    type with that hardware."""
    if instance_types:
        for t in instance_types:
            _check_accelerator(prices, "sagemaker_realtime", t, acc, "--instance-type")
        return list(instance_types)
    return [t for t in prices.instance_types("sagemaker_realtime") if _same(prices, "sagemaker_realtime", t, acc)]


def capacity_vcpus(prices: Prices, instance_type: str, bench_vcpus: int, acc: str | None) -> int:
    """vCPUs to scale the bench's per-vCPU capacity to: an accelerated instance is one bench host (its chip)."""
    if acc is not None:
        return bench_vcpus
    return int(prices.data["sagemaker_realtime"][instance_type]["vcpus"])


def bench_provenance(bench: BenchReport, bench_file: str) -> dict[str, Any]:
    """The bench's machine, date and payload, as the report records them (None where it does not)."""
    env = bench.environment
    cpu = env.extra.get("cpu")
    cpu_model = cpu.get("model") if isinstance(cpu, Mapping) else None
    date = None
    for where in (bench.extra, env.extra):
        for key in ("date", "started_at", "started", "finished_at", "created"):
            if isinstance(where.get(key), str):
                date = where[key]
                break
        if date:
            break
    size = env.payload.extra.get("size")
    return {
        "file": bench_file,
        "device": env.device or "unknown device",
        "cpu": cpu_model,
        "vcpus": env.cpus_available,
        "date": date,
        "payload": {"file": env.payload.file, "bytes": env.payload.bytes, "size": list(size) if size else None},
    }


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
    per_node = node_pods(node, node_type, pod_cpu, pod_gib)
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
    if node.get("accelerator"):
        note += f", one {node['accelerator']} (the bench's)"
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


def node_pods(node: Mapping[str, Any], node_type: str, pod_cpu: int, pod_gib: int) -> int:
    """Pods one node of ``node_type`` (its prices entry) holds: by vCPUs and memory (:func:`pods_per_node`), or one
    per chip on an accelerated node, where each pod is one bench host whatever the node's vCPUs."""
    per_node = pods_per_node(node["vcpus"], node["memory_gib"], pod_cpu, pod_gib)
    if node.get("accelerators"):
        per_node = min(int(node["accelerators"]), math.floor((node["memory_gib"] - NODE_RESERVED_GIB) / pod_gib))
    if per_node < 1:
        raise InputError(f"a {node_type} node cannot hold one pod of {pod_cpu} vCPU and {pod_gib} GiB")
    return per_node


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
    vcpus = capacity_vcpus(prices, instance_type, cap.vcpus, bench_accelerator(bench))
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
            + (f"; one {inst['accelerator']}, the bench's" if inst.get("accelerator") else "")
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
        estimated=True,
    )
    acc = bench_accelerator(bench)
    if acc is not None:
        base.units, base.note = "not possible", f"serverless endpoints run on CPUs only; this bench ran on {acc}"
        return base
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
