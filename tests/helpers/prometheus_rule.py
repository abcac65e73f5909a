"""The chart's PrometheusRule as the chart tests read it: its alerts, the series from outside this repository its
expressions use, and Prometheus's own PromQL parser run on them (tests/chart/promql_check.cjs on node, `make promql`).
"""

from __future__ import annotations

from typing import Any

from tests.helpers.chart import ROOT, find
from tests.helpers.series_check import node_promql

CHECKER = ROOT / "tests" / "chart" / "promql_check.cjs"

#: Series from outside this repository the rules use, with the labels they carry (kube-state-metrics v2).
EXTERNAL = {
    "kube_pod_start_time": {"namespace", "pod"},
    "kube_pod_container_status_restarts_total": {"namespace", "pod", "container"},
    "kube_horizontalpodautoscaler_status_current_replicas": {"namespace", "horizontalpodautoscaler"},
    "kube_horizontalpodautoscaler_spec_max_replicas": {"namespace", "horizontalpodautoscaler"},
    "kube_deployment_status_replicas_available": {"namespace", "deployment"},
    # Prometheus's own, one per target: the ServiceMonitor's target labels only
    "up": set(),
}
#: The operator's series (controller/metrics.py), scraped without honorLabels: its `namespace` becomes
#: `exported_namespace`.
OPERATOR = {"resnet_serving_operator_phase": {"exported_namespace", "name", "phase"}}


def rule_doc(rendered: dict[str, list[dict[str, Any]]], variant: str) -> dict[str, Any]:
    docs = find(rendered[variant], "PrometheusRule")
    assert len(docs) == 1, variant
    return docs[0]


def alerts(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["alert"]: r for g in doc["spec"]["groups"] for r in g["rules"]}


def parse_errors(exprs: list[str]) -> list[str | None]:
    return node_promql(CHECKER, exprs)
