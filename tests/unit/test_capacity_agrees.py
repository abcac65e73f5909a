"""One capacity, everywhere (issue #29): every limit of the install, as its consumer applies it, agrees with the
capacity file and with every other limit.

The consumers: the committed front-door and observability templates (throttle, burst, WAF rate, the
instances-at-max alarm), `sagemaker deploy`'s defaults (instance type, min, max, target), k8s/values/prod.yaml's
HPA and k8s/eksctl/cluster.yaml's node groups. The rates at the p99 objective are the planner's own, from the
capacity file's bench.
"""

from __future__ import annotations

import json
import math
import shlex
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from resnet_serving.bench.result import BenchReport
from resnet_serving.cli import build_parser, main
from resnet_serving.cli.sagemaker import autoscaling_from_args
from resnet_serving.errors import InputError
from resnet_serving.plan import limits as capacity
from resnet_serving.plan.planner import Load, make_plan, pods_per_node
from resnet_serving.plan.prices import load_prices

ROOT = Path(__file__).resolve().parents[2]
TEMPLATES = ROOT / "infra" / "templates"
ROLE, IMAGE = "arn:aws:iam::123456789012:role/sm", "123456789012.dkr.ecr.eu-west-1.amazonaws.com/r:1"
DEPLOY = [
    "sagemaker",
    "deploy",
    "--store",
    "s3://b/p",
    "--version",
    "3",
    "--endpoint",
    "ep",
    "--role",
    ROLE,
    "--image",
    IMAGE,
]


def _cpu(q: str) -> float:
    return float(q[:-1]) / 1000 if q.endswith("m") else float(q)


def _gib(q: str) -> float:
    return float(q[:-2]) if q.endswith("Gi") else float(q[:-2]) / 1024


def _resources(template: str, kind: str) -> list[dict[str, Any]]:
    t = json.loads((TEMPLATES / template).read_text())
    return [r["Properties"] for r in t["Resources"].values() if r["Type"] == kind]


def shipped() -> dict[str, Any]:
    """Every consumer's limit as shipped; a consumer that cannot give one says why under "problems"."""
    out: dict[str, Any] = {"problems": []}
    (stage,) = _resources("resnet-serving-frontdoor.json", "AWS::ApiGateway::Stage")
    (method,) = stage["MethodSettings"]
    out["throttle_rate"], out["throttle_burst"] = method["ThrottlingRateLimit"], method["ThrottlingBurstLimit"]
    (acl,) = _resources("resnet-serving-frontdoor.json", "AWS::WAFv2::WebACL")
    (rate,) = [r for r in acl["Rules"] if "RateBasedStatement" in r["Statement"]]
    out["waf"] = rate["Statement"]["RateBasedStatement"]["Limit"]
    alarms = _resources("resnet-serving-observability.json", "AWS::CloudWatch::Alarm")
    (at_max,) = [a for a in alarms if a["AlarmName"].endswith("-instances-at-max")]
    out["at_max_alarm"] = at_max["Threshold"]
    (budget,) = _resources("resnet-serving-observability.json", "AWS::Budgets::Budget")
    out["budget"] = budget["Budget"]["BudgetLimit"]["Amount"]

    args = build_parser().parse_args(DEPLOY)
    try:
        a = autoscaling_from_args(args)
        assert a is not None
        out["sm_min"], out["sm_max"], out["sm_target"] = a.min, a.max, a.target
    except InputError as e:
        out["problems"].append(f"sagemaker deploy has no default target: {e.message}")
        out["sm_min"], out["sm_max"], out["sm_target"] = args.instance_count, 2 * args.instance_count, 0.0
    out["sm_type"] = args.instance_type

    prod = yaml.safe_load((ROOT / "k8s" / "values" / "prod.yaml").read_text())
    out["hpa_min"], out["hpa_max"] = prod["autoscaling"]["minReplicas"], prod["autoscaling"]["maxReplicas"]
    out["pod_requests"] = prod["resources"]["requests"]
    cluster = yaml.safe_load((ROOT / "k8s" / "eksctl" / "cluster.yaml").read_text())
    groups = [g for g in cluster["managedNodeGroups"] if g["labels"].get("resnet-serving.io/workload") == "cpu"]
    (node_type,) = {g["instanceType"] for g in groups}
    out["node_type"], out["zones"] = node_type, len(cluster["availabilityZones"])
    out["nodes_min"] = tuple(g["minSize"] for g in groups)
    out["nodes_max"] = tuple(g["maxSize"] for g in groups)
    return out


def effective(limits: capacity.Limits, s: dict[str, Any]) -> capacity.Effective:
    """The shipped limits with the planner's per-unit rates at the capacity file's objective."""
    bench = BenchReport.load(ROOT / limits.load.bench)
    prices = load_prices(None, limits.load.region)
    plan = make_plan(
        bench,
        prices,
        Load(limits.load.rps, ""),
        p99_ms=limits.load.p99_ms,
        node_type=s["node_type"],
        instance_types=[s["sm_type"]],
    )
    rows = {r.option: r for r in plan.rows}
    node = prices.entry("ec2_on_demand", s["node_type"])
    pod_cpu = _cpu(s["pod_requests"]["cpu"])
    # the planner's per-pod rate is for a pod of the bench's vCPUs: scaled linearly, as it scales instances
    per_pod = rows["EKS on-demand"].per_unit_rps * pod_cpu / bench.environment.cpus_available
    return capacity.Effective(
        throttle_rate=s["throttle_rate"],
        throttle_burst=s["throttle_burst"],
        waf_rate_limit_per_5min=s["waf"],
        at_max_alarm=s["at_max_alarm"],
        sm_min=s["sm_min"],
        sm_max=s["sm_max"],
        sm_target_per_minute=s["sm_target"],
        sm_rate_per_instance=rows[f"SageMaker real-time {s['sm_type']}"].per_unit_rps,
        hpa_min=s["hpa_min"],
        hpa_max=s["hpa_max"],
        rate_per_pod=per_pod,
        pods_per_node=pods_per_node(node["vcpus"], node["memory_gib"], pod_cpu, _gib(s["pod_requests"]["memory"])),
        zones=s["zones"],
        nodes_per_zone_min=s["nodes_min"],
        nodes_per_zone_max=s["nodes_max"],
    )


def drift(limits: capacity.Limits, s: dict[str, Any]) -> list[str]:
    """Each consumer's limit that is not the capacity file's."""
    fd, sm, ek = limits.front_door, limits.sagemaker, limits.eks
    pairs = [
        ("infra: API Gateway throttle rate", s["throttle_rate"], "front_door.throttle_rate", fd.throttle_rate),
        ("infra: API Gateway burst", s["throttle_burst"], "front_door.throttle_burst", fd.throttle_burst),
        (
            "infra: WAF rate per key per 5 min",
            s["waf"],
            "front_door.waf_rate_limit_per_5min",
            fd.waf_rate_limit_per_5min,
        ),
        ("infra: instances-at-max alarm", s["at_max_alarm"], "sagemaker.max_instances", sm.max_instances),
        ("infra: monthly budget", s["budget"], "budget.monthly_usd", limits.budget.monthly_usd),
        ("sagemaker deploy: --instance-type", s["sm_type"], "sagemaker.instance_type", sm.instance_type),
        ("sagemaker deploy: minimum", s["sm_min"], "sagemaker.min_instances", sm.min_instances),
        ("sagemaker deploy: maximum", s["sm_max"], "sagemaker.max_instances", sm.max_instances),
        ("sagemaker deploy: target", s["sm_target"], "sagemaker.invocations_per_minute", sm.invocations_per_minute),
        ("prod.yaml: autoscaling.minReplicas", s["hpa_min"], "eks.min_replicas", ek.min_replicas),
        ("prod.yaml: autoscaling.maxReplicas", s["hpa_max"], "eks.max_replicas", ek.max_replicas),
        ("cluster.yaml: CPU node groups' instanceType", s["node_type"], "eks.node_type", ek.node_type),
        ("cluster.yaml: availabilityZones", s["zones"], "eks.zones", ek.zones),
    ]
    out = [
        f"{what} is {mine!r}, the capacity file's {key} is {theirs!r}"
        for what, mine, key, theirs in pairs
        if mine != theirs
    ]
    for what, sizes, key, theirs in (
        ("minSize", s["nodes_min"], "eks.nodes_per_zone_min", ek.nodes_per_zone_min),
        ("maxSize", s["nodes_max"], "eks.nodes_per_zone_max", ek.nodes_per_zone_max),
    ):
        if set(sizes) != {theirs}:
            out.append(f"cluster.yaml: CPU node groups' {what} {list(sizes)}, the capacity file's {key} is {theirs}")
    return out


def test_every_shipped_limit_agrees_with_the_capacity_file_and_each_other() -> None:
    limits = capacity.load()
    s = shipped()
    problems = s["problems"] + drift(limits, s) + capacity.contradictions(effective(limits, s), limits.load.p99_ms)
    assert not problems, "the shipped limits disagree:\n  " + "\n  ".join(problems)


def test_the_capacity_file_is_plans_output_for_the_command_the_page_shows(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The shipped numbers come from `plan`, never typed by hand: the command docs/how-to/capacity.md shows (its
    <!-- capacity-file:begin --> block) writes the shipped file byte for byte."""
    page = (ROOT / "docs" / "how-to" / "capacity.md").read_text(encoding="utf-8")
    block = page.split("<!-- capacity-file:begin -->", 1)[1].split("<!-- capacity-file:end -->", 1)[0]
    (command,) = [line for line in block.splitlines() if line.startswith("resnet-serving ")]
    argv = shlex.split(command)[1:]
    i = argv.index("--emit-capacity")
    assert (ROOT / argv[i + 1]).resolve() == (ROOT / "src" / "resnet_serving" / "plan" / capacity.PACKAGED).resolve()
    argv[i + 1] = str(tmp_path / "capacity.json")
    assert main(argv) == 0
    capsys.readouterr()
    packaged = (ROOT / "src" / "resnet_serving" / "plan" / capacity.PACKAGED).read_text(encoding="utf-8")
    assert (tmp_path / "capacity.json").read_text(encoding="utf-8") == packaged


# ---- the check can fail: each contradiction the issue names -------------------------------------------------
GOOD = capacity.Effective(
    throttle_rate=100, throttle_burst=200, waf_rate_limit_per_5min=60_000, at_max_alarm=12, sm_min=6, sm_max=12,
    sm_target_per_minute=2484, sm_rate_per_instance=41.4, hpa_min=9, hpa_max=18, rate_per_pod=20.7, pods_per_node=3,
    zones=3, nodes_per_zone_min=(1, 1, 1), nodes_per_zone_max=(2, 2, 2),
)  # fmt: skip


def test_a_consistent_set_has_no_contradiction() -> None:
    assert capacity.contradictions(GOOD, 500) == []


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"throttle_rate": 1000, "throttle_burst": 2000, "waf_rate_limit_per_5min": 600_000},
         "above what SageMaker's maximum carries at p99 500 ms: 12 instances × 41.4 req/s = 497 req/s"),
        ({"throttle_rate": 1000, "throttle_burst": 2000, "waf_rate_limit_per_5min": 600_000},
         "above what the HPA's maximum carries at p99 500 ms: 18 pods × 20.7 req/s = 373 req/s"),
        ({"throttle_burst": 99}, "burst 99 is below the throttle rate 100"),
        ({"waf_rate_limit_per_5min": 29_999}, "one API key cannot use the whole throttle"),
        ({"at_max_alarm": 4}, "the instances-at-max alarm is at 4, sagemaker deploy's maximum is 12"),
        ({"sm_target_per_minute": 2485}, "above what one instance carries at p99 500 ms (2484/min)"),
        ({"sm_min": 13}, "sagemaker deploy: minimum 13 is above maximum 12"),
        ({"hpa_min": 19}, "the HPA: minimum 19 is above maximum 18"),
        ({"nodes_per_zone_min": (1, 3, 1)}, "node group 1: minSize 3 is above maxSize 2"),
        ({"hpa_max": 30, "rate_per_pod": 20.7},
         "the HPA's maximum 30 pods needs 10 per zone; a zone's node group holds 2 nodes × 3 pods = 6"),
    ],
)  # fmt: skip
def test_each_contradiction_is_named(change: dict[str, Any], expected: str) -> None:
    problems = capacity.contradictions(replace(GOOD, **change), 500)
    assert any(expected in p for p in problems), problems


def test_the_budget_is_both_paths_at_the_stated_load() -> None:
    """The budget covers each complete option at the file's load (so deploying either path alone stays under it)
    and both at once, with the front door and shared lines counted once, not twice."""
    limits = capacity.load()
    plan = make_plan(
        BenchReport.load(ROOT / limits.load.bench),
        load_prices(None, limits.load.region),
        Load(limits.load.rps, ""),
        p99_ms=limits.load.p99_ms,
        node_type=limits.eks.node_type,
        instance_types=[limits.sagemaker.instance_type],
    )
    totals = {t.option: t for t in plan.totals}
    eks, sm = totals["EKS on-demand"], totals[f"SageMaker real-time {limits.sagemaker.instance_type}"]
    assert eks.total is not None and sm.total is not None and eks.compute is not None and sm.compute is not None
    both = eks.total + sm.compute + (sm.shared - sum(r.usd_month or 0 for r in plan.rows if r.scope == "all"))
    amount = limits.budget.monthly_usd
    assert both <= amount < both + capacity.BUDGET_STEP_USD, (amount, both)
    assert max(eks.total, sm.total) < amount < eks.total + sm.total
    assert f"{limits.load.rps:g} req/s" in limits.budget.how


# ---- the capacity file is user input: a bad one names the field -----------------------------------------------
def _packaged() -> dict[str, Any]:
    return dict(json.loads(capacity.load().to_json()))


@pytest.mark.parametrize(
    ("section", "key", "value", "message"),
    [
        ("front_door", "throttle_rate", 0, "front_door.throttle_rate must be a whole number of at least 1, got 0"),
        ("front_door", "throttle_burst", "200",
         "front_door.throttle_burst must be a whole number of at least 1, got '200'"),
        ("front_door", "throttle_burst", 50, "front_door.throttle_burst (50) is below front_door.throttle_rate (100)"),
        ("front_door", "waf_rate_limit_per_5min", 100,
         "front_door.waf_rate_limit_per_5min (100) is below the throttle"),
        ("sagemaker", "min_instances", 13, "sagemaker.min_instances > sagemaker.max_instances (13 > 12)"),
        ("sagemaker", "max_instances", None,
         "sagemaker.max_instances must be a whole number of at least 1, got None"),
        ("eks", "max_replicas", 8, "eks.min_replicas > eks.max_replicas (9 > 8)"),
        ("eks", "node_type", "", "eks.node_type must be a non-empty string, got ''"),
        ("load", "p99_ms", -1, "load.p99_ms must be a positive number, got -1"),
        ("load", "rps", True, "load.rps must be a positive number, got True"),
        ("eks", "pods", 3, "eks: unknown field(s) pods"),
        ("budget", "monthly_usd", 0.5, "budget.monthly_usd must be a whole number of at least 1, got 0.5"),
        ("budget", "how", None, "budget.how must be a non-empty string, got None"),
    ],
)  # fmt: skip
def test_a_bad_capacity_file_names_the_field(section: str, key: str, value: Any, message: str, tmp_path: Path) -> None:
    data = _packaged()
    data[section][key] = value
    path = tmp_path / "capacity.json"
    path.write_text(json.dumps(data))
    with pytest.raises(InputError) as e:
        capacity.load(path)
    assert e.value.message.startswith(f"{path}: ")
    assert message in e.value.message


def test_a_missing_or_broken_capacity_file_says_so(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="cannot read the capacity file"):
        capacity.load(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{"load": ')
    with pytest.raises(InputError, match=r"not valid JSON \(line 1"):
        capacity.load(bad)
    data = _packaged()
    del data["eks"]
    bad.write_text(json.dumps(data))
    with pytest.raises(InputError, match=r"bad.json: eks is missing"):
        capacity.load(bad)
    assert math.isfinite(capacity.load().load.rps)
