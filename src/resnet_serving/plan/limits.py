"""The capacity file: one set of limits for every consumer in the install, from ``plan`` or edited by hand.

``resnet-serving plan ... --emit-capacity FILE`` writes it from a stated load and the bench; the packaged
``capacity.json`` next to this module is the shipped one. Its readers: ``sagemaker deploy`` (instance type, min,
max and target when no flag gives them), infra/config.py (the throttle, burst, WAF rate, the
``instances-at-max`` alarm and the monthly budget), and the checks that k8s/values/prod.yaml's HPA and
k8s/eksctl/cluster.yaml's node groups agree with it (tests/unit/test_capacity_agrees.py).
:func:`contradictions` says where two limits contradict each other.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from resnet_serving.errors import InputError

#: The shipped capacity file: every default limit in the install comes from it.
PACKAGED = "capacity.json"
#: WAF's rate rule counts over this window, in seconds.
WAF_WINDOW_S = 300
#: The WAF blocks an API key only past this many times the throttle: API Gateway throttles first.
WAF_FACTOR = 2
#: Burst over rate: API Gateway's token bucket lets this many seconds' worth of requests through at once.
BURST_FACTOR = 2
#: Maximum over minimum (units): the autoscaler's room above the zone-spread minimum, as the chart values have.
MAX_FACTOR = 2
#: The budget is the plan's total rounded up to a multiple of this, in USD.
BUDGET_STEP_USD = 100


@dataclass(frozen=True)
class StatedLoad:
    rps: float
    p99_ms: float
    how: str
    bench: str  # the bench.json the rates come from, relative to the repository root
    region: str


@dataclass(frozen=True)
class FrontDoor:
    throttle_rate: int
    throttle_burst: int
    waf_rate_limit_per_5min: int  # per API key


@dataclass(frozen=True)
class SageMakerLimits:
    instance_type: str
    min_instances: int
    max_instances: int
    invocations_per_minute: int  # SageMakerVariantInvocationsPerInstance target


@dataclass(frozen=True)
class EksLimits:
    node_type: str
    zones: int
    min_replicas: int
    max_replicas: int
    nodes_per_zone_min: int
    nodes_per_zone_max: int


@dataclass(frozen=True)
class Budget:
    monthly_usd: int  # the AWS Budgets amount the observability stack creates
    how: str


@dataclass(frozen=True)
class Limits:
    load: StatedLoad
    front_door: FrontDoor
    sagemaker: SageMakerLimits
    eks: EksLimits
    budget: Budget

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, ensure_ascii=False) + "\n"


def from_plan(plan: Any, *, bench: str, instance_type: str, node_type: str, pods_per_node: int) -> Limits:
    """The limits a plan sizes: its zone-spread units as the minimum, ``MAX_FACTOR`` times that as the maximum,
    the stated load as the throttle."""
    rows = {r.option: r for r in plan.rows if r.kind == "compute"}
    sm = rows.get(f"SageMaker real-time {instance_type}")
    if sm is None or sm.total_units is None:
        raise InputError(f"the plan has no SageMaker row for {instance_type}: pass --instance-type {instance_type}")
    eks = rows["EKS on-demand"]
    assert eks.total_units is not None
    budget = budget_from_plan(plan, instance_type)
    rate = math.ceil(plan.load.rps)
    pods_min, pods_max = eks.total_units, MAX_FACTOR * eks.total_units
    return Limits(
        load=StatedLoad(plan.load.rps, plan.p99_target_ms, plan.load.how, bench, plan.region),
        front_door=FrontDoor(rate, BURST_FACTOR * rate, WAF_FACTOR * rate * WAF_WINDOW_S),
        sagemaker=SageMakerLimits(
            instance_type,
            sm.total_units,
            MAX_FACTOR * sm.total_units,
            int(plan.sagemaker_targets[instance_type]["invocations_per_minute"]),
        ),
        eks=EksLimits(
            node_type,
            plan.azs,
            pods_min,
            pods_max,
            math.ceil(pods_min / plan.azs / pods_per_node),
            math.ceil(pods_max / plan.azs / pods_per_node),
        ),
        budget=budget,
    )


def budget_from_plan(plan: Any, instance_type: str) -> Budget:
    """What the install costs a month at the stated load with both paths up, as the install page deploys them:
    EKS on-demand and SageMaker real-time on ``instance_type``, plus the front door and every shared line once."""
    rows = {r.option: r for r in plan.rows if r.kind == "compute"}
    eks, sm = rows["EKS on-demand"], rows[f"SageMaker real-time {instance_type}"]
    lines = [r for r in plan.rows if r.kind == "line"]
    assert eks.usd_month is not None and sm.usd_month is not None
    usd = eks.usd_month + sm.usd_month + sum(r.usd_month or 0.0 for r in lines)
    amount = math.ceil(usd / BUDGET_STEP_USD) * BUDGET_STEP_USD
    return Budget(
        amount,
        f"plan's $/month at {plan.load.rps:g} req/s in {plan.region} with both paths up: EKS on-demand "
        f"({eks.units}) ${eks.usd_month:,.0f} + SageMaker real-time {sm.units} of {instance_type} "
        f"${sm.usd_month:,.0f} + the front door and shared lines ${usd - eks.usd_month - sm.usd_month:,.0f}, "
        f"rounded up to ${BUDGET_STEP_USD}",
    )


class _Section:
    """One object of the file, remembering where it is for error messages."""

    def __init__(self, data: Any, path: str, source: str) -> None:
        self.source, self.path = source, path
        if not isinstance(data, dict):
            raise InputError(f"{source}: {path or 'the file'} must be a JSON object, got {type(data).__name__}")
        self.data = data

    def _name(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def fail(self, key: str, why: str) -> InputError:
        return InputError(f"{self.source}: {self._name(key)} {why}")

    def section(self, key: str, known: set[str]) -> _Section:
        if key not in self.data:
            raise self.fail(key, "is missing")
        s = _Section(self.data[key], self._name(key), self.source)
        extra = sorted(set(s.data) - known)
        if extra:
            raise InputError(f"{self.source}: {s.path}: unknown field(s) {', '.join(extra)}")
        return s

    def number(self, key: str) -> float:
        v = self.data.get(key)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
            raise self.fail(key, f"must be a positive number, got {v!r}")
        return float(v)

    def integer(self, key: str) -> int:
        v = self.data.get(key)
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise self.fail(key, f"must be a whole number of at least 1, got {v!r}")
        return v

    def string(self, key: str) -> str:
        v = self.data.get(key)
        if not isinstance(v, str) or not v.strip():
            raise self.fail(key, f"must be a non-empty string, got {v!r}")
        return v


def parse(data: Any, source: str) -> Limits:
    """Validate a decoded capacity file; :class:`InputError` names the first bad field and the file."""
    top = _Section(data, "", source)
    extra = sorted(set(top.data) - {"load", "front_door", "sagemaker", "eks", "budget"})
    if extra:
        raise InputError(f"{source}: unknown field(s) {', '.join(extra)}")
    ld = top.section("load", {"rps", "p99_ms", "how", "bench", "region"})
    fd = top.section("front_door", {"throttle_rate", "throttle_burst", "waf_rate_limit_per_5min"})
    sm = top.section("sagemaker", {"instance_type", "min_instances", "max_instances", "invocations_per_minute"})
    ek = top.section(
        "eks", {"node_type", "zones", "min_replicas", "max_replicas", "nodes_per_zone_min", "nodes_per_zone_max"}
    )
    bu = top.section("budget", {"monthly_usd", "how"})
    limits = Limits(
        load=StatedLoad(
            ld.number("rps"), ld.number("p99_ms"), ld.string("how"), ld.string("bench"), ld.string("region")
        ),
        front_door=FrontDoor(
            fd.integer("throttle_rate"), fd.integer("throttle_burst"), fd.integer("waf_rate_limit_per_5min")
        ),
        sagemaker=SageMakerLimits(
            sm.string("instance_type"),
            sm.integer("min_instances"),
            sm.integer("max_instances"),
            sm.integer("invocations_per_minute"),
        ),
        eks=EksLimits(
            ek.string("node_type"),
            ek.integer("zones"),
            ek.integer("min_replicas"),
            ek.integer("max_replicas"),
            ek.integer("nodes_per_zone_min"),
            ek.integer("nodes_per_zone_max"),
        ),
        budget=Budget(bu.integer("monthly_usd"), bu.string("how")),
    )
    problems = internal_contradictions(limits)
    if problems:
        raise InputError(f"{source}: " + "; ".join(problems))
    return limits


def internal_contradictions(limits: Limits) -> list[str]:
    """What the file contradicts within itself, without the bench: orders and the front door's own rules."""
    fd, sm, ek = limits.front_door, limits.sagemaker, limits.eks
    out = []
    if fd.throttle_burst < fd.throttle_rate:
        out.append(
            f"front_door.throttle_burst ({fd.throttle_burst}) is below front_door.throttle_rate ({fd.throttle_rate})"
        )
    if fd.waf_rate_limit_per_5min < fd.throttle_rate * WAF_WINDOW_S:
        out.append(
            f"front_door.waf_rate_limit_per_5min ({fd.waf_rate_limit_per_5min}) is below the throttle over 5 min "
            f"({fd.throttle_rate} × {WAF_WINDOW_S} = {fd.throttle_rate * WAF_WINDOW_S}): one API key could not use "
            "the whole throttle"
        )
    for where, lo, hi in (
        ("sagemaker.min_instances > sagemaker.max_instances", sm.min_instances, sm.max_instances),
        ("eks.min_replicas > eks.max_replicas", ek.min_replicas, ek.max_replicas),
        ("eks.nodes_per_zone_min > eks.nodes_per_zone_max", ek.nodes_per_zone_min, ek.nodes_per_zone_max),
    ):
        if lo > hi:
            out.append(f"{where} ({lo} > {hi})")
    return out


def load(path: Path | None = None) -> Limits:
    """The capacity file at ``path``, or the packaged one."""
    if path is None:
        ref = resources.files("resnet_serving.plan").joinpath(PACKAGED)
        text, source = ref.read_text(encoding="utf-8"), f"the packaged {PACKAGED}"
    else:
        source = str(path)
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as e:
            raise InputError(f"{path}: cannot read the capacity file ({e.strerror})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(f"{source}: not valid JSON (line {e.lineno}, column {e.colno}: {e.msg})") from None
    return parse(data, source)


@dataclass(frozen=True)
class Effective:
    """Every limit as its consumer applies it: what the agreement check compares."""

    throttle_rate: float
    throttle_burst: float
    waf_rate_limit_per_5min: float
    at_max_alarm: float  # the infra's instances-at-max alarm threshold
    sm_min: int
    sm_max: int
    sm_target_per_minute: float
    sm_rate_per_instance: float  # req/s one instance carries at the p99 objective (the planner's rate)
    hpa_min: int
    hpa_max: int
    rate_per_pod: float  # req/s one pod carries at the p99 objective
    pods_per_node: int
    zones: int
    nodes_per_zone_min: tuple[int, ...]  # per node group, one group per zone
    nodes_per_zone_max: tuple[int, ...]


def contradictions(e: Effective, p99_ms: float) -> list[str]:
    """Each pair of limits that contradict each other, in a sentence naming both."""
    out = []
    sm_cap = e.sm_max * e.sm_rate_per_instance
    eks_cap = e.hpa_max * e.rate_per_pod
    if e.throttle_rate > sm_cap:
        out.append(
            f"throttle {e.throttle_rate:g} req/s is above what SageMaker's maximum carries at p99 {p99_ms:g} ms: "
            f"{e.sm_max} instances × {e.sm_rate_per_instance:.1f} req/s = {sm_cap:.0f} req/s"
        )
    if e.throttle_rate > eks_cap:
        out.append(
            f"throttle {e.throttle_rate:g} req/s is above what the HPA's maximum carries at p99 {p99_ms:g} ms: "
            f"{e.hpa_max} pods × {e.rate_per_pod:.1f} req/s = {eks_cap:.0f} req/s"
        )
    if e.throttle_burst < e.throttle_rate:
        out.append(f"burst {e.throttle_burst:g} is below the throttle rate {e.throttle_rate:g}")
    if e.waf_rate_limit_per_5min < e.throttle_rate * WAF_WINDOW_S:
        out.append(
            f"WAF rate {e.waf_rate_limit_per_5min:g} per key per 5 min is below the throttle over 5 min "
            f"({e.throttle_rate * WAF_WINDOW_S:g}): one API key cannot use the whole throttle"
        )
    if e.at_max_alarm != e.sm_max:
        out.append(f"the instances-at-max alarm is at {e.at_max_alarm:g}, sagemaker deploy's maximum is {e.sm_max}")
    if e.sm_target_per_minute / 60 > e.sm_rate_per_instance:
        out.append(
            f"SageMaker's target {e.sm_target_per_minute:g} invocations/min per instance is above what one instance "
            f"carries at p99 {p99_ms:g} ms ({e.sm_rate_per_instance * 60:.0f}/min)"
        )
    for what, lo, hi in (("sagemaker deploy", e.sm_min, e.sm_max), ("the HPA", e.hpa_min, e.hpa_max)):
        if lo > hi:
            out.append(f"{what}: minimum {lo} is above maximum {hi}")
    for i, (lo, hi) in enumerate(zip(e.nodes_per_zone_min, e.nodes_per_zone_max, strict=True)):
        if lo > hi:
            out.append(f"node group {i}: minSize {lo} is above maxSize {hi}")
    per_zone_pods = math.ceil(e.hpa_max / e.zones)
    fits = min(e.nodes_per_zone_max) * e.pods_per_node
    if per_zone_pods > fits:
        out.append(
            f"the HPA's maximum {e.hpa_max} pods needs {per_zone_pods} per zone; a zone's node group holds "
            f"{min(e.nodes_per_zone_max)} nodes × {e.pods_per_node} pods = {fits}"
        )
    return out
