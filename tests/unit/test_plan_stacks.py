"""The plan prices what the stacks create: every CloudFormation type in infra/templates/*.json is either priced by a
line of the plan or listed as free with a reason, the counts the plan assumes (keys, endpoints, alarms, WAF rules,
NAT gateways...) are the templates' and the cluster config's, and the cluster's region and node types are priced.
A stack that gains a priced resource the plan does not know fails here."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml

from resnet_serving.bench.result import BenchReport
from resnet_serving.plan import lines as plan_lines
from resnet_serving.plan.planner import Load, make_plan
from resnet_serving.plan.prices import load_prices
from tests.helpers import REPO

TEMPLATES = sorted((REPO / "infra" / "templates").glob("*.json"))
CLUSTER = REPO / "k8s" / "eksctl" / "cluster.yaml"
GPU_GROUP = REPO / "k8s" / "eksctl" / "gpu-nodegroup.yaml"
BENCH = REPO / "tests" / "fixtures" / "bench-2vcpu.json"


def _resources() -> list[tuple[str, str, dict[str, Any]]]:
    out = []
    for t in TEMPLATES:
        for name, r in json.loads(t.read_text())["Resources"].items():
            out.append((t.name, r["Type"], {"name": name, **r.get("Properties", {})}))
    return out


def _count(rtype: str, where: str | None = None) -> int:
    return sum(1 for f, t, _ in _resources() if t == rtype and (where is None or where in f))


def test_the_templates_are_there() -> None:
    assert len(TEMPLATES) == 5 and len(_resources()) > 40


def test_every_resource_type_is_priced_or_free_with_a_reason() -> None:
    unknown = sorted(
        {
            f"{t} ({f})"
            for f, t, _ in _resources()
            if t not in plan_lines.PRICED_TYPES and t not in plan_lines.FREE_TYPES
        }
    )
    assert not unknown, (
        "a stack creates resource types the plan does not know: price each in plan/lines.py (PRICED_TYPES and a "
        f"line) or list it in FREE_TYPES with the reason it costs nothing: {unknown}"
    )
    assert not set(plan_lines.PRICED_TYPES) & set(plan_lines.FREE_TYPES)
    assert all(len(reason) >= 10 for reason in plan_lines.FREE_TYPES.values())


def test_every_priced_type_in_the_stacks_has_a_line_in_the_plan() -> None:
    plan = make_plan(BenchReport.load(BENCH), load_prices(None, "eu-west-1"), Load(1000, ""), p99_ms=500)
    names = {r.option for r in plan.rows if r.kind == "line"}
    compute = {r.option for r in plan.rows if r.kind == "compute"}
    shipped = {t for _, t, _ in _resources()}
    for rtype in shipped & set(plan_lines.PRICED_TYPES):
        line = plan_lines.PRICED_TYPES[rtype]
        if line == plan_lines.SAGEMAKER_COMPUTE:
            assert any(o.startswith("SageMaker") for o in compute), rtype
        elif line == plan_lines.EKS_COMPUTE:
            assert any(o.startswith("EKS") for o in compute), rtype
        else:
            assert line in names, f"{rtype} is priced by {line!r}, which the plan does not print"
            row = next(r for r in plan.rows if r.option == line)
            assert rtype in row.resources, (rtype, row.resources)


def test_the_counts_the_plan_assumes_are_the_templates() -> None:
    s = plan_lines.SHIPPED
    res = _resources()
    (acl,) = [p for _, t, p in res if t == "AWS::WAFv2::WebACL"]
    assert s.waf_rules == len(acl["Rules"])
    (client,) = [p for _, t, p in res if t == "AWS::Cognito::UserPoolClient"]
    assert s.cognito_app_clients == 1 and s.cognito_token_minutes == client["AccessTokenValidity"]
    assert client["TokenValidityUnits"]["AccessToken"] == "minutes"
    (stage,) = [p for _, t, p in res if t == "AWS::ApiGateway::Stage"]
    assert stage["TracingEnabled"] is True, "X-Ray is priced because the stage traces"
    assert all(m["MetricsEnabled"] for m in stage["MethodSettings"])
    assert s.api_methods == _count("AWS::ApiGateway::Method")
    assert s.metric_filters == _count("AWS::Logs::MetricFilter")
    assert s.alarms == _count("AWS::CloudWatch::Alarm")
    assert s.dashboards == _count("AWS::CloudWatch::Dashboard")
    assert s.kms_keys == _count("AWS::KMS::Key")
    assert s.log_groups == _count("AWS::Logs::LogGroup")
    assert s.ecr_repositories == _count("AWS::ECR::Repository")
    kinds = Counter(p.get("VpcEndpointType", "Gateway") for _, t, p in res if t == "AWS::EC2::VPCEndpoint")
    assert (s.interface_endpoints, s.gateway_endpoints) == (kinds["Interface"], kinds["Gateway"])
    assert _count("AWS::ApiGateway::RestApi") == 1 and _count("AWS::WAFv2::LoggingConfiguration") == 1


def _cluster() -> dict[str, Any]:
    return yaml.safe_load(CLUSTER.read_text())


def test_the_cluster_configs_nat_and_logging_are_the_plans() -> None:
    c = _cluster()
    mode = c["vpc"]["nat"]["gateway"]
    assert mode == plan_lines.SHIPPED.nat_gateway, f"cluster.yaml's NAT mode {mode} is not the one the plan prices"
    azs = len(c["availabilityZones"])
    assert plan_lines.nat_gateways(mode, azs) == 3
    assert bool(c["cloudWatch"]["clusterLogging"]["enableTypes"]) == plan_lines.SHIPPED.control_plane_logging
    plan = make_plan(BenchReport.load(BENCH), load_prices(None, c["metadata"]["region"]), Load(1000, ""), p99_ms=500,
                     azs=azs)  # fmt: skip
    nat = next(r for r in plan.rows if r.option == plan_lines.NAT)
    assert nat.usd_month == pytest.approx(3 * load_prices(None, "eu-west-1").entry("nat_gateway")["usd_per_hour"] * 730)


@pytest.mark.parametrize("config", [CLUSTER, GPU_GROUP], ids=lambda p: Path(p).name)
def test_the_cluster_region_and_node_types_are_priced(config: Path) -> None:
    c = yaml.safe_load(config.read_text())
    for region in (c["metadata"]["region"], "us-east-1"):
        prices = load_prices(None, region)
        for group in c["managedNodeGroups"]:
            entry = prices.entry("ec2_on_demand", group["instanceType"])
            gpu = "resnet-serving.io/accelerator" in group.get("labels", {})
            assert bool(entry.get("accelerator")) == gpu, (region, group["name"])


def test_the_cluster_node_type_prices_an_eks_option() -> None:
    c = _cluster()
    (node_type,) = {g["instanceType"] for g in c["managedNodeGroups"]}
    plan = make_plan(BenchReport.load(BENCH), load_prices(None, c["metadata"]["region"]), Load(1000, ""),
                     p99_ms=500, node_type=node_type)  # fmt: skip
    assert f"× {node_type}" in plan.rows[0].units and plan.rows[0].usd_month > 0
