"""charts/resnet50-serving/examples/cloudwatch/: the CloudWatch agent's Prometheus ConfigMaps and the alarms.

Nothing runs in AWS here: the ConfigMaps are validated as Kubernetes objects, their scrape job is matched
against the metrics Service the chart renders, the agent's metric declarations against what a real `serve`
exports (tests/chart/test_series_exported.py), and the alarm template is linted by cfn-lint and its alarm
names held to the naming rule (resnet_serving.naming), apart from the infra stack's and sagemaker deploy's.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from resnet_serving import naming
from resnet_serving.sagemaker import spec as sagemaker_spec
from tests.helpers.chart import KUBE_VERSIONS_VALIDATED, NAMESPACE, RELEASE, ROOT, one, run
from tests.helpers.cloudwatch import EXAMPLE, agent_config, agent_objects, metric_selectors

ALARMS = EXAMPLE / "alarms.yaml"

#: The infra alarm kinds the EKS path has: throttles are the API Gateway front door's, whatever serves behind it.
EKS_KINDS = ("5xx", "p99-latency", "instances-at-max", "unavailable", "unhealthy-hosts", "lb-errors")
#: The kinds only the EKS ALB has: the stack's front door is API Gateway, whose alarms are its own kinds.
EKS_ONLY_KINDS = ("unhealthy-hosts", "lb-errors")


class CfnLoader(yaml.SafeLoader):
    """YAML with CloudFormation's short-form intrinsics (!Ref, !Sub) kept as {"Fn": value}."""


for _tag in ("Ref", "Sub", "GetAtt", "If", "Equals", "Not", "Join", "Select", "Split"):
    CfnLoader.add_constructor(
        f"!{_tag}",
        lambda loader, node, tag=_tag: {
            tag: loader.construct_scalar(node) if isinstance(node, yaml.ScalarNode) else loader.construct_sequence(node)
        },
    )


def scrape_config() -> dict[str, Any]:
    return dict(yaml.safe_load(agent_objects()["prometheus-config"]["data"]["prometheus.yaml"]))


def alarms() -> dict[str, dict[str, Any]]:
    template = yaml.load(ALARMS.read_text(), Loader=CfnLoader)
    return {k: r["Properties"] for k, r in template["Resources"].items() if r["Type"] == "AWS::CloudWatch::Alarm"}


def test_configmaps_are_valid_kubernetes_objects() -> None:
    objects = agent_objects()
    assert set(objects) == {"prometheus-config", "prometheus-cwagentconfig"}
    for doc in objects.values():
        kubernetes_validate.validate(doc, KUBE_VERSIONS_VALIDATED[-1], strict=True)
    assert agent_config()["logs"]["metrics_collected"]["prometheus"]["prometheus_config_path"].endswith(
        "/prometheus.yaml"
    )


def test_scrape_job_keeps_the_chart_metrics_service_on_both_ports(rendered: dict[str, list[dict[str, Any]]]) -> None:
    """The job's keep rule, applied to every port of every Service the chart renders, keeps exactly the metrics
    Service's two ports (8082 TorchServe's, 8083 ours), and the EMF declarations select on that job."""
    (job,) = scrape_config()["scrape_configs"]
    (sd,) = job["kubernetes_sd_configs"]
    assert sd["role"] == "endpoints" and sd["namespaces"]["names"] == [NAMESPACE]
    (keep,) = [r for r in job["relabel_configs"] if r.get("action") == "keep"]
    assert keep["source_labels"] == ["__meta_kubernetes_service_name", "__meta_kubernetes_endpoint_port_name"]
    kept = [
        (svc["metadata"]["name"], port["port"])
        for svc in rendered["prod"]
        if svc["kind"] == "Service"
        for port in svc["spec"]["ports"]
        if re.fullmatch(keep["regex"], f"{svc['metadata']['name']};{port['name']}")
    ]
    assert kept == [(f"{RELEASE}-metrics", 8082), (f"{RELEASE}-metrics", 8083)]
    # the Service is rendered with the ServiceMonitor, and its ports are the container's named ports
    metrics_svc = one(rendered["prod"], "Service", f"{RELEASE}-metrics")
    assert {p["targetPort"] for p in metrics_svc["spec"]["ports"]} == {"metrics", "model-metrics"}
    emf = agent_config()["logs"]["metrics_collected"]["prometheus"]["emf_processor"]
    for declaration in emf["metric_declaration"]:
        assert declaration["source_labels"] == ["job"] and re.fullmatch(declaration["label_matcher"], job["job_name"])
        for dims in declaration["dimensions"]:
            # every dimension is a label the relabelling or the agent (ClusterName) sets, or one the series has
            assert set(dims) <= {"ClusterName", "Namespace", "Service", "pod_name", "code"}


def chart_alarm_names(endpoint: str | None = None) -> set[str]:
    """The template's alarm names for ``endpoint`` (default: its Endpoint parameter's default)."""
    template = yaml.load(ALARMS.read_text(), Loader=CfnLoader)
    endpoint = endpoint or template["Parameters"]["Endpoint"]["Default"]
    return {props["AlarmName"]["Sub"].replace("${Endpoint}", endpoint) for props in alarms().values()}


def stack_alarm_names_committed() -> set[str]:
    """Every alarm name in the committed infra templates (infra/templates/*.json, held equal to a synth by
    tests/infra/test_policy_checks.py)."""
    return {
        r["Properties"]["AlarmName"]
        for path in sorted((ROOT / "infra" / "templates").glob("*.json"))
        for r in json.loads(path.read_text(encoding="utf-8"))["Resources"].values()
        if r["Type"] == "AWS::CloudWatch::Alarm"
    }


def test_alarm_names_are_the_eks_owners_names() -> None:
    """The example names its alarms by the naming rule with an owner of its own (`-eks`)."""
    endpoint = yaml.load(ALARMS.read_text(), Loader=CfnLoader)["Parameters"]["Endpoint"]["Default"]
    assert chart_alarm_names() == {naming.alarm_name(endpoint, kind, naming.EKS) for kind in EKS_KINDS}
    assert set(EKS_KINDS) < set(naming.ALARM_KINDS)


def test_the_three_owners_never_share_an_alarm_name() -> None:
    """PutMetricAlarm replaces a whole alarm, so one name has one owner: the observability stack (its committed
    template), `sagemaker deploy` (its rule) and this example (its YAML), for the stack's endpoint, which is also
    the example's default."""
    endpoint = json.loads((ROOT / "infra" / "config.json").read_text(encoding="utf-8"))["sagemaker"]["endpoint_name"]
    stack = stack_alarm_names_committed()
    deploy = set(sagemaker_spec.alarm_names(endpoint))
    chart = chart_alarm_names(endpoint)
    assert len(stack) == len(naming.ALARM_KINDS) - len(EKS_ONLY_KINDS) and len(deploy) == 2
    assert len(chart) == len(EKS_KINDS)
    assert not stack & deploy and not stack & chart and not deploy & chart, (stack, deploy, chart)
    assert {naming.alarm_owner(n) for n in stack} == {naming.STACK}
    assert {naming.alarm_owner(n) for n in deploy} == {naming.DEPLOY}
    assert {naming.alarm_owner(n) for n in chart} == {naming.EKS}
    # what deploy reads as the stack's guardrails is what the stack creates
    assert set(sagemaker_spec.stack_alarm_names(endpoint)) < stack
    assert chart_alarm_names() == chart_alarm_names(endpoint)


def test_alarms_read_only_metrics_the_agent_emits() -> None:
    """Every ContainerInsights/Prometheus metric an alarm reads is one the agent's declarations select."""
    selectors = metric_selectors()
    used = []
    for props in alarms().values():
        stats = [m["MetricStat"]["Metric"] for m in props.get("Metrics", []) if "MetricStat" in m]
        stats += [props] if "MetricName" in props else []
        for metric in stats:
            if metric["Namespace"] == "ContainerInsights/Prometheus":
                used.append(metric["MetricName"])
                assert any(re.fullmatch(s.strip("^$"), metric["MetricName"]) for s in selectors), metric
            else:
                assert metric["Namespace"] == "AWS/ApplicationELB" and metric["MetricName"] in {
                    "TargetResponseTime",
                    "HealthyHostCount",
                    "UnHealthyHostCount",
                    "RequestCount",
                    "HTTPCode_ELB_5XX_Count",
                }, metric
    assert sorted(used) == ["Requests2XX", "Requests4XX", "Requests5XX", "resnet_serving_model_info"]


def test_alarm_template_passes_cfn_lint() -> None:
    cfn_lint = Path(sys.executable).with_name("cfn-lint")
    if not cfn_lint.exists():
        pytest.skip("cfn-lint not installed (the infra extra)")
    proc = run([str(cfn_lint), "--format", "json", str(ALARMS)])
    assert proc.returncode == 0, proc.stdout + proc.stderr
