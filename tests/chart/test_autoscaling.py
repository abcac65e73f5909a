"""Autoscaling: CPU by default, the saturation metric through the Prometheus adapter (engine hpa) or a KEDA
ScaledObject (engine keda, never beside the chart's HPA), the target's default, bad values, and the README's
way of reading the target off a bench run."""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from resnet_serving.bench.result import BenchReport
from resnet_serving.plan import limits as capacity
from resnet_serving.plan.capacity import bench_capacity
from tests.helpers.chart import CHART, CRD_SCHEMAS, ROOT, Helm, container, deployment, find, one, run
from tests.helpers.prometheus_rule import alerts, parse_errors, rule_doc

Docs = list[dict[str, Any]]
BENCH = ROOT / "tests" / "fixtures" / "bench-smoke.json"


def saturation_metric(hpa: dict[str, Any]) -> dict[str, Any]:
    (m,) = [
        m
        for m in hpa["spec"]["metrics"]
        if m["type"] == "Pods" and m["pods"]["metric"]["name"] == "resnet_serving_saturation"
    ]
    return dict(m)


def test_default_scales_on_cpu_only(rendered: dict[str, Docs]) -> None:
    """Saturation needs Prometheus and an adapter (or KEDA), and an HPA missing one metric never scales down."""
    docs = rendered["default"]
    assert [m["type"] for m in one(docs, "HorizontalPodAutoscaler")["spec"]["metrics"]] == ["Resource"]
    assert find(docs, "ScaledObject") == []
    assert find(docs, "ConfigMap", "resnet50-serving-adapter-rule") == []


def test_hpa_engine_adds_saturation_beside_cpu_and_requests_per_second(rendered: dict[str, Docs]) -> None:
    hpa = one(rendered["full"], "HorizontalPodAutoscaler")
    assert [m["type"] for m in hpa["spec"]["metrics"]] == ["Resource", "Pods", "Pods"]
    assert hpa["spec"]["metrics"][1]["pods"]["metric"]["name"] == "ts_inference_requests_per_second"
    # no target set: workers × batch size of the rendered server, the most requests its workers hold at once
    args = container(deployment(rendered["full"])["spec"]["template"]["spec"], "torchserve")["args"]
    held = int(args[args.index("--workers") + 1]) * int(args[args.index("--batch-size") + 1])
    assert saturation_metric(hpa)["pods"]["target"] == {"type": "AverageValue", "averageValue": str(held)}
    assert find(rendered["full"], "ScaledObject") == []


def test_adapter_rule_serves_the_metric_the_hpa_asks_for(rendered: dict[str, Docs], promql_parser: str) -> None:
    cm = one(rendered["full"], "ConfigMap", "resnet50-serving-adapter-rule")
    (rule,) = yaml.safe_load(cm["data"]["config.yaml"])["rules"]
    # the prometheus-adapter chart's values carry the same rule (the README's kubectl command reads this key)
    assert yaml.safe_load(cm["data"]["values.yaml"]) == {"rules": {"custom": [rule]}}
    assert set(rule) == {"seriesQuery", "resources", "name", "metricsQuery"}
    assert rule["resources"] == {"overrides": {"namespace": {"resource": "namespace"}, "pod": {"resource": "pod"}}}
    series = rule["seriesQuery"].split("{")[0]
    assert re.search(rule["name"]["matches"], series)
    assert rule["name"]["as"] == "resnet_serving_saturation"
    for placeholder in ("<<.Series>>", "<<.LabelMatchers>>", "<<.GroupBy>>"):
        assert placeholder in rule["metricsQuery"]
    filled = (
        rule["metricsQuery"]
        .replace("<<.Series>>", series)
        .replace("<<.LabelMatchers>>", 'namespace="resnet-serving", pod=~"a|b"')
        .replace("<<.GroupBy>>", "namespace, pod")
    )
    assert parse_errors([rule["seriesQuery"], filled]) == [None, None]
    assert "[1m]" in filled and "resnet_serving_queued_requests" in filled


def test_keda_engine_renders_a_scaled_object_and_no_hpa(rendered: dict[str, Docs], promql_parser: str) -> None:
    docs = rendered["keda"]
    assert find(docs, "HorizontalPodAutoscaler") == []
    assert find(docs, "ConfigMap", "resnet50-serving-adapter-rule") == []
    so = one(docs, "ScaledObject")["spec"]
    eks = capacity.load().eks  # prod.yaml's replicas are the capacity file's (tests/unit/test_capacity_agrees.py)
    assert (so["minReplicaCount"], so["maxReplicaCount"], so["pollingInterval"]) == (
        eks.min_replicas,
        eks.max_replicas,
        30,
    )
    cpu, prom = so["triggers"]
    assert cpu == {"type": "cpu", "metricType": "Utilization", "metadata": {"value": "60"}}
    assert prom["type"] == "prometheus" and prom["metricType"] == "AverageValue"
    assert prom["metadata"]["threshold"] == "8"
    assert prom["metadata"]["serverAddress"] == "https://prometheus.monitoring.svc:9090"
    assert prom["authenticationRef"] == {"name": "prometheus-auth"}
    query = prom["metadata"]["query"]
    assert parse_errors([query]) == [None]
    assert 'service="resnet50-serving-metrics"' in query and "[2m]" in query
    # the HPA-at-maximum alert follows the HPA KEDA creates
    hpa_alert = alerts(rule_doc(rendered, "keda"))["ResnetServingHPAAtMaximum"]["expr"]
    assert 'horizontalpodautoscaler="keda-hpa-resnet50-serving"' in hpa_alert
    assert (
        'horizontalpodautoscaler="resnet50-serving"'
        in alerts(rule_doc(rendered, "full"))["ResnetServingHPAAtMaximum"]["expr"]
    )


def test_keda_schema_rejects_what_keda_would(rendered: dict[str, Docs]) -> None:
    """The vendored ScaledObject schema the validate test uses is not a rubber stamp."""
    good = one(rendered["keda"], "ScaledObject")
    schema = json.loads(CRD_SCHEMAS[("keda.sh/v1alpha1", "ScaledObject")].read_text())
    validator = jsonschema.Draft202012Validator(schema)
    assert list(validator.iter_errors(good)) == []
    typo = copy.deepcopy(good)
    typo["spec"]["minReplicas"] = 3
    no_query = copy.deepcopy(good)
    del no_query["spec"]["triggers"][1]["metadata"]["query"]
    words = copy.deepcopy(good)
    words["spec"]["triggers"][1]["metadata"]["threshold"] = "eight"
    cpu_value = copy.deepcopy(good)
    cpu_value["spec"]["triggers"][0]["metadata"]["value"] = 60
    for broken in (typo, no_query, words, cpu_value):
        assert list(validator.iter_errors(broken))


def test_target_defaults_to_workers_times_batch_size(helm: Helm) -> None:
    sets = ["autoscaling.saturation.enabled=true", "metrics.serviceMonitor.enabled=true"]
    docs = helm.template([], sets=[*sets, "torchserve.workers=3", "torchserve.batchSize=4"])
    assert saturation_metric(one(docs, "HorizontalPodAutoscaler"))["pods"]["target"]["averageValue"] == "12"
    docs = helm.template([], sets=[*sets, "autoscaling.saturation.targetPerPod=2.5"])
    assert saturation_metric(one(docs, "HorizontalPodAutoscaler"))["pods"]["target"]["averageValue"] == "2.5"


BAD = [
    ("engine", "autoscaling:\n  engine: kubernetes\n", ["at '/autoscaling/engine'", "'hpa', 'keda'"]),
    (
        "negative-target",
        "autoscaling:\n  saturation:\n    targetPerPod: -1\n",
        ["at '/autoscaling/saturation/targetPerPod'"],
    ),
    (
        "zero-target",
        "autoscaling:\n  saturation:\n    targetPerPod: 0\n",
        ["at '/autoscaling/saturation/targetPerPod'"],
    ),
    (
        "word-target",
        "autoscaling:\n  saturation:\n    targetPerPod: four\n",
        ["at '/autoscaling/saturation/targetPerPod'"],
    ),
    ("window", "autoscaling:\n  saturation:\n    window: 60\n", ["at '/autoscaling/saturation/window'"]),
    (
        "keda-typo",
        "autoscaling:\n  keda:\n    pollInterval: 15\n",
        ["additional properties 'pollInterval' not allowed"],
    ),
    (
        "keda-address",
        "autoscaling:\n  keda:\n    serverAddress: prometheus:9090\n",
        ["at '/autoscaling/keda/serverAddress'"],
    ),
    (
        "keda-with-custom-metric",
        "autoscaling:\n  engine: keda\n  customMetric:\n    enabled: true\n",
        ["with autoscaling.engine=keda set autoscaling.customMetric.enabled=false"],
    ),
    (
        "saturation-without-scrape",
        "autoscaling:\n  saturation:\n    enabled: true\n",
        ["autoscaling.saturation.enabled needs metrics.serviceMonitor.enabled=true"],
    ),
]


@pytest.mark.parametrize(("case", "content", "expected"), BAD, ids=[c[0] for c in BAD])
def test_bad_autoscaling_values_fail_with_a_clear_error(
    helm: Helm, tmp_path: Path, case: str, content: str, expected: list[str]
) -> None:
    bad = tmp_path / f"{case}.yaml"
    bad.write_text(content)
    proc = run(helm.template_cmd([bad]))
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, f"helm template accepted {case}"
    for text in expected:
        assert text in output, f"{case}: {text!r} not in:\n{output}"


def readme_target_command() -> str:
    """The README's command that reads the target per pod off a bench.json."""
    text = (CHART / "README.md").read_text()
    block = text.split("<!-- saturation-target:begin -->", 1)[1].split("<!-- saturation-target:end -->", 1)[0]
    (command,) = re.findall(r"```sh\n(.*?)\n```", block, flags=re.S)
    return str(command)


def test_readme_reads_the_target_the_planner_uses_off_a_bench_run() -> None:
    command = readme_target_command().replace("bench-results/bench.json", str(BENCH))
    command = command.replace("resnet-serving ", f"{sys.executable} -m resnet_serving ", 1)
    proc = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=120, cwd=ROOT, check=False)
    assert proc.returncode == 0, proc.stderr
    expected = bench_capacity(BenchReport.load(BENCH)).best_concurrency
    assert proc.stdout.strip() == f"at concurrency {expected}", proc.stdout
