"""Every query the chart ships names series a real `serve` exports: the Grafana dashboard, the PrometheusRule,
the Prometheus adapter rule and KEDA's saturation query.

A real `resnet-serving serve` (TorchServe, two workers, the session's archive) answers good images, a bad one
(400), a wrong content type (415) and a form-encoded binary body (the front end's 500: the guard, which would
answer it 415, is off), so every error series exists; a second serve, with the guard on, answers one image so
the guard's own series exists too. Both of its /metrics ports are scraped (TorchServe's on
8082's stand-in, ours on 8083's). Each query is parsed with Prometheus's grammar and every series it selects must
be in the scrape, or be one of the few kube-state-metrics, cAdvisor and operator series listed below, with the
labels the query matches on.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from tests.fixtures import images as fx
from tests.helpers import ServeCommand, running_serve, series_check, serve_command
from tests.helpers.chart import find, one
from tests.helpers.cloudwatch import metric_selectors
from tests.helpers.prometheus_rule import EXTERNAL, OPERATOR, alerts, rule_doc

pytestmark = pytest.mark.torchserve

#: Series from outside this repository that the dashboard reads (pods by zone, CPU and memory), with their labels:
#: kube-state-metrics v2 (the node's zone label allowlisted, chart README) and the kubelet's cAdvisor.
KUBE_DASHBOARD = {
    "kube_pod_info": {"namespace", "pod", "node", "created_by_kind", "created_by_name"},
    "kube_node_labels": {"node", "label_topology_kubernetes_io_zone"},
    "kube_pod_container_resource_limits": {"namespace", "pod", "container", "resource", "unit"},
    "container_cpu_usage_seconds_total": {"namespace", "pod", "container"},
    "container_memory_working_set_bytes": {"namespace", "pod", "container"},
}


@dataclass
class Scrape:
    torchserve: str  # serve's --metrics-port: TorchServe's own series
    ours: str  # serve's --model-metrics-port: the resnet_serving_* series
    guarded: str = ""  # ours again from a serve with its guard on (the default): the guard's own series

    @property
    def known(self) -> dict[str, set[str]]:
        return series_check.scraped(self.torchserve, self.ours, self.guarded)


@pytest.fixture(scope="module")
def scrape(archive_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scrape]:
    tmp = tmp_path_factory.mktemp("serve-series")
    cmd: ServeCommand = serve_command(archive_dir)
    # no guard (--retry-after 0): the form-encoded body below must reach the front end, the one 5xx a client causes
    argv = [*cmd.argv, "--workers", "2", "--threads", "1", "--retry-after", "0", "--run-dir", str(tmp / "run")]
    log = tmp / "serve.log"
    with running_serve(argv, log):
        url = f"http://127.0.0.1:{cmd.port}/predictions/resnet50"
        sent = [
            ("image/jpeg", fx.jpeg(160, 120), 200),
            ("image/jpeg", fx.jpeg(), 200),
            ("image/jpeg", b"not an image at all", 400),
            ("text/plain", fx.jpeg(), 415),
            # TorchServe's front end answers a binary form-encoded body with 500 before the handler.
            ("application/x-www-form-urlencoded", fx.jpeg(), 500),
        ]
        for content_type, body, status in sent:
            r = requests.post(url, data=body, headers={"Content-Type": content_type}, timeout=120)
            assert r.status_code == status, (content_type, r.status_code, r.text[:200])
        texts = [
            requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
            for port in (cmd.metrics_port, cmd.model_metrics_port)
        ]
    # then with the guard on, as the chart runs it: the guard's request histogram exists once it has answered
    argv = [*cmd.argv, "--workers", "1", "--threads", "1", "--run-dir", str(tmp / "run-guarded")]
    with running_serve(argv, tmp / "serve-guarded.log"):
        r = requests.post(url, data=fx.jpeg(), headers={"Content-Type": "image/jpeg"}, timeout=120)
        assert r.status_code == 200, r.text[:200]
        guarded = requests.get(f"http://127.0.0.1:{cmd.model_metrics_port}/metrics", timeout=10).text
        assert "resnet_serving_guard_request_seconds_bucket" in guarded, guarded[:2000]
    yield Scrape(*texts, guarded)


def dashboard(rendered: dict[str, list[dict[str, Any]]], variant: str = "full") -> dict[str, Any]:
    cm = one(rendered[variant], "ConfigMap", "resnet50-serving-dashboard")
    return dict(json.loads(cm["data"]["resnet50-serving.json"]))


def dashboard_queries(dash: dict[str, Any]) -> dict[str, str]:
    """Every PromQL query of the dashboard, Grafana variables replaced; a variable's label_values() selector too."""
    out = {}
    for p in dash["panels"]:
        for t in p["targets"]:
            out[f"panel {p['title']!r} {t['refId']}"] = series_check.grafana_to_promql(t["expr"])
    for var in dash["templating"]["list"]:
        if var["type"] == "query":
            inner = var["definition"].removeprefix("label_values(").rsplit(",", 1)[0]
            out[f"variable {var['name']}"] = series_check.grafana_to_promql(inner)
    return out


def test_the_scrape_has_both_ports_and_the_error_series(scrape: Scrape) -> None:
    known = scrape.known
    assert "ts_inference_requests_total" in series_check.scraped(scrape.torchserve)
    assert "resnet_serving_request_seconds_bucket" in series_check.scraped(scrape.ours)
    assert {
        "resnet_serving_errors_total",
        "resnet_serving_in_flight_requests",
        "resnet_serving_queued_requests",
    } <= set(known)
    assert any(name.startswith("Requests5XX") for name in known), sorted(known)


def test_every_dashboard_query_names_exported_series(
    scrape: Scrape, rendered: dict[str, list[dict[str, Any]]], promql_parser: str
) -> None:
    queries = dashboard_queries(dashboard(rendered))
    assert len(queries) >= 15
    assert series_check.problems(queries, {**scrape.known, **KUBE_DASHBOARD}) == []


def test_every_alert_expression_names_exported_series(
    scrape: Scrape, rendered: dict[str, list[dict[str, Any]]], promql_parser: str
) -> None:
    for variant in ("full", "keda"):
        exprs = {f"{variant} {name}": r["expr"] for name, r in alerts(rule_doc(rendered, variant)).items()}
        assert series_check.problems(exprs, {**scrape.known, **EXTERNAL, **OPERATOR}) == []


def adapter_rule(rendered: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    cm = one(rendered["full"], "ConfigMap", "resnet50-serving-adapter-rule")
    rules = yaml.safe_load(cm["data"]["config.yaml"])["rules"]
    assert len(rules) == 1
    return dict(rules[0])


def test_adapter_rule_and_keda_query_name_exported_series(
    scrape: Scrape, rendered: dict[str, list[dict[str, Any]]], promql_parser: str
) -> None:
    rule = adapter_rule(rendered)
    # The adapter's template placeholders, as it fills them for a Pods metric of two pods.
    metrics_query = (
        rule["metricsQuery"]
        .replace("<<.Series>>", rule["seriesQuery"].split("{")[0])
        .replace("<<.LabelMatchers>>", 'namespace="resnet-serving", pod=~"resnet50-serving-a|resnet50-serving-b"')
        .replace("<<.GroupBy>>", "namespace, pod")
    )
    keda = one(rendered["keda"], "ScaledObject")
    (trigger,) = [t for t in keda["spec"]["triggers"] if t["type"] == "prometheus"]
    exprs = {
        "adapter seriesQuery": rule["seriesQuery"],
        "adapter metricsQuery": metrics_query,
        "keda query": trigger["metadata"]["query"],
    }
    assert series_check.problems(exprs, scrape.known) == []


def test_the_dashboard_shows_what_an_sre_needs(rendered: dict[str, list[dict[str, Any]]]) -> None:
    queries = " ".join(dashboard_queries(dashboard(rendered)).values())
    for q in ("0.5", "0.95", "0.99"):
        assert f"histogram_quantile({q}, sum by (version, le) (rate(resnet_serving_request_seconds_bucket" in queries
    assert "sum by (version, code) (rate(resnet_serving_errors_total" in queries
    for series in ("resnet_serving_batch_size_bucket", "resnet_serving_stage_seconds_sum", "kube_node_labels"):
        assert series in queries, series
    assert "resnet_serving_in_flight_requests" in queries and "resnet_serving_queued_requests" in queries
    # the saturation target is the one the autoscaler uses: HPA in "full" (default workers x batch), KEDA's threshold
    for variant, kind in (("full", "HorizontalPodAutoscaler"), ("keda", "ScaledObject")):
        target = [
            t["expr"] for p in dashboard(rendered, variant)["panels"] for t in p["targets"] if "vector(" in t["expr"]
        ]
        scaler = one(rendered[variant], kind)["spec"]
        if kind == "ScaledObject":
            wanted = next(t["metadata"]["threshold"] for t in scaler["triggers"] if t["type"] == "prometheus")
        else:
            wanted = next(
                m["pods"]["target"]["averageValue"]
                for m in scaler["metrics"]
                if m["type"] == "Pods" and m["pods"]["metric"]["name"] == "resnet_serving_saturation"
            )
        assert target == [f"vector({wanted})"], variant
    assert all(
        "__" not in q.replace("__name__", "").replace("$__", "")
        for q in dashboard_queries(dashboard(rendered)).values()
    )
    assert find(rendered["default"], "ConfigMap", "resnet50-serving-adapter-rule") == []


def test_the_check_fails_on_a_made_up_series_or_label(promql_parser: str) -> None:
    """A control: the check is not a rubber stamp."""
    known = {"resnet_serving_batch_size_count": {"model", "version"}}
    assert series_check.problems({"ok": 'sum(rate(resnet_serving_batch_size_count{version="1"}[5m]))'}, known) == []
    assert series_check.problems({"ok": '{__name__=~"resnet_serving_batch.*"}'}, known) == []
    bad = {
        "typo": "rate(resnet_serving_batch_sizes_count[5m])",
        "label": 'rate(resnet_serving_batch_size_count{stage="forward"}[5m])',
        "regex": '{__name__=~"batch_size_count"}',  # anchored: matches nothing
        "syntax": "sum(rate(resnet_serving_batch_size_count[5m])",
    }
    found = series_check.problems(bad, known)
    assert [p.split(":")[0] for p in found] == ["typo", "label", "regex", "syntax"], found


def test_cloudwatch_agent_selects_exported_series_and_no_histogram(scrape: Scrape) -> None:
    """The CloudWatch agent drops Prometheus histograms: every metric it is told to emit must be a scraped
    series that is not part of one."""
    known = scrape.known
    histogram_parts = {n for n in known if n.endswith(("_bucket", "_sum", "_count"))}
    for selector in metric_selectors():
        matched = [n for n in known if re.search(selector, n)]
        assert matched, f"{selector} selects no series serve exports"
        assert not set(matched) & histogram_parts, selector
