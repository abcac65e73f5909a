"""Each CloudWatch alarm watches what its failure changes: metric, statistic, threshold and, above all, what missing
data means. An alarm whose metric goes silent when the service is down must treat missing data as breaching;
one whose metric goes silent when the service is idle must not. Read from the committed observability template
(held equal to a synth by tests/infra/test_policy_checks.py) and the chart's EKS example, and the budget's filter
against the tag the stacks carry.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from resnet_serving import naming
from resnet_serving.plan import limits as capacity
from tests.helpers import REPO
from tests.helpers.cloudwatch import EXAMPLE
from tests.helpers.infra import Synth

TEMPLATES = REPO / "infra" / "templates"
CONFIG = json.loads((REPO / "infra" / "config.json").read_text(encoding="utf-8"))
ENDPOINT = CONFIG["sagemaker"]["endpoint_name"]


class CfnLoader(yaml.SafeLoader):
    """YAML with CloudFormation's short-form intrinsics kept as {"Fn": value}."""


for _tag in ("Ref", "Sub", "GetAtt"):
    CfnLoader.add_constructor(
        f"!{_tag}",
        lambda loader, node, tag=_tag: {tag: loader.construct_scalar(node)},  # type: ignore[misc]
    )


def stack_alarms() -> dict[str, dict[str, Any]]:
    template = json.loads((TEMPLATES / "resnet-serving-observability.json").read_text(encoding="utf-8"))
    return {
        r["Properties"]["AlarmName"]: r["Properties"]
        for r in template["Resources"].values()
        if r["Type"] == "AWS::CloudWatch::Alarm"
    }


def eks_alarms() -> dict[str, dict[str, Any]]:
    template = yaml.load((EXAMPLE / "alarms.yaml").read_text(encoding="utf-8"), Loader=CfnLoader)
    return {
        r["Properties"]["AlarmName"]["Sub"].replace("${Endpoint}", ENDPOINT): r["Properties"]
        for r in template["Resources"].values()
        if r["Type"] == "AWS::CloudWatch::Alarm"
    }


def metric_of(props: dict[str, Any]) -> tuple[str, str, str]:
    """(namespace, metric, statistic) of a single-metric alarm."""
    return props["Namespace"], props["MetricName"], props.get("Statistic") or props["ExtendedStatistic"]


al = CONFIG["alarms"]

#: name → (namespace, metric, statistic), comparison, threshold, missing data.
STACK = {
    "api-errors": (
        ("AWS/ApiGateway", "5XXError", "Average"),
        "GreaterThanThreshold",
        al["error_5xx_percent"] / 100,
        "notBreaching",  # no requests: idle
    ),
    "api-latency": (
        ("AWS/ApiGateway", "Latency", "p99"),
        "GreaterThanThreshold",
        al["p99_latency_ms"],
        "notBreaching",
    ),
    "unavailable": (
        ("/aws/sagemaker/Endpoints", "CPUUtilization", "SampleCount"),
        "LessThanThreshold",
        1,
        "breaching",  # every running instance reports each minute: silence means none runs
    ),
    "p99-latency": (
        ("AWS/SageMaker", "ModelLatency", "p99"),
        "GreaterThanThreshold",
        al["p99_latency_ms"] * 1000,
        "notBreaching",
    ),
}


@pytest.mark.parametrize("kind", sorted(STACK))
def test_stack_alarm(kind: str) -> None:
    alarms = stack_alarms()
    name = naming.alarm_name(ENDPOINT, kind)
    assert name in alarms, f"no alarm {name}; the stack has {sorted(alarms)}"
    props = alarms[name]
    metric, comparison, threshold, missing = STACK[kind]
    assert metric_of(props) == metric
    assert (props["ComparisonOperator"], props["Threshold"], props["TreatMissingData"]) == (
        comparison,
        threshold,
        missing,
    )
    assert props["EvaluationPeriods"] == al["evaluation_periods"] and props["Period"] == 60


def test_api_gateway_alarms_watch_the_deployed_stage() -> None:
    alarms = stack_alarms()
    for kind in ("api-errors", "api-latency"):
        dims = {d["Name"]: d["Value"] for d in alarms[naming.alarm_name(ENDPOINT, kind)]["Dimensions"]}
        assert dims == {"ApiName": CONFIG["api"]["name"], "Stage": CONFIG["api"]["stage"]}
    dims = {d["Name"]: d["Value"] for d in alarms[naming.alarm_name(ENDPOINT, "unavailable")]["Dimensions"]}
    assert dims == {"EndpointName": ENDPOINT, "VariantName": CONFIG["sagemaker"]["variant_name"]}


def test_every_stack_alarm_says_what_missing_data_means() -> None:
    for name, props in stack_alarms().items():
        assert props["TreatMissingData"] in {"breaching", "notBreaching"}, name
    # the one alarm whose silence means down is the one that breaches on it
    breaching = {n for n, p in stack_alarms().items() if p["TreatMissingData"] == "breaching"}
    assert breaching == {naming.alarm_name(ENDPOINT, "unavailable")}


EKS = {
    "unavailable": (
        ("AWS/ApplicationELB", "HealthyHostCount", "Minimum"),
        "LessThanThreshold",
        1,
        "breaching",  # the ALB reports the count every minute while the target group exists
    ),
    "unhealthy-hosts": (
        ("AWS/ApplicationELB", "UnHealthyHostCount", "Maximum"),
        "GreaterThanThreshold",
        0,
        "notBreaching",
    ),
}


@pytest.mark.parametrize("kind", sorted(EKS))
def test_eks_alb_alarm(kind: str) -> None:
    alarms = eks_alarms()
    name = naming.alarm_name(ENDPOINT, kind, naming.EKS)
    assert name in alarms, f"no alarm {name}; the example has {sorted(alarms)}"
    props = alarms[name]
    metric, comparison, threshold, missing = EKS[kind]
    assert metric_of(props) == metric
    assert (props["ComparisonOperator"], props["Threshold"], props["TreatMissingData"]) == (
        comparison,
        threshold,
        missing,
    )
    assert {d["Name"] for d in props["Dimensions"]} == {"TargetGroup", "LoadBalancer"}


def test_eks_alb_5xx_ratio() -> None:
    props = eks_alarms()[naming.alarm_name(ENDPOINT, "lb-errors", naming.EKS)]
    metrics = {m["Id"]: m for m in props["Metrics"]}
    assert metrics["ratio"]["Expression"] == "IF(requests > 0, 100 * FILL(elb5, 0) / requests, 0)"
    stats = {
        i: (m["MetricStat"]["Metric"]["MetricName"], m["MetricStat"]["Stat"])
        for i, m in metrics.items()
        if i != "ratio"
    }
    assert stats == {"requests": ("RequestCount", "Sum"), "elb5": ("HTTPCode_ELB_5XX_Count", "Sum")}
    assert (props["ComparisonOperator"], props["Threshold"], props["TreatMissingData"]) == (
        "GreaterThanThreshold",
        {"Ref": "Error5xxPercent"},
        "notBreaching",
    )


def budget() -> dict[str, Any]:
    template = json.loads((TEMPLATES / "resnet-serving-observability.json").read_text(encoding="utf-8"))
    (b,) = [r["Properties"]["Budget"] for r in template["Resources"].values() if r["Type"] == "AWS::Budgets::Budget"]
    return dict(b)


def test_budget_counts_only_the_projects_tagged_cost(synth: Synth) -> None:
    """Filtered on the tag every stack applies (app.py; CloudFormation copies stack tags onto the resources), read
    from the cloud assembly's manifest."""
    manifest = json.loads((synth.outdir / "manifest.json").read_text(encoding="utf-8"))
    stacks = {
        a["properties"]["stackName"]: a
        for a in manifest["artifacts"].values()
        if a["type"] == "aws:cloudformation:stack"
    }
    assert set(stacks) == set(synth.stack_names.values())
    tags = {k: v for a in stacks.values() for k, v in a["properties"].get("tags", {}).items()}
    assert all(a["properties"].get("tags", {}).get("project") == naming.PROJECT for a in stacks.values())
    assert tags == {"project": naming.PROJECT}
    assert budget()["CostFilters"] == {"TagKeyValue": [f"user:project${naming.PROJECT}"]}


def test_budget_is_the_capacity_files_amount() -> None:
    """The amount is the capacity file's (plan's total at its load; tests/unit/test_capacity_agrees.py holds it to
    the plan), never a second figure in config.json."""
    assert "monthly_usd" not in CONFIG["budget"]
    assert budget()["BudgetLimit"] == {"Amount": capacity.load().budget.monthly_usd, "Unit": "USD"}
